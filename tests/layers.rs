//! The layers of `src/` (see `src/lib.rs`), checked from the `use crate::...` lines: a module
//! imports only from its own layer and the layers below it, and no modules import each other
//! around a cycle. clippy's `absolute_paths` lint keeps the crate's paths out of the code
//! itself, and this test also refuses them there (and `super::` paths outside test modules), so
//! the `use` lines are every edge there is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first; a module's layer is the first part of its path. `error` is the
/// base every layer may use.
const LAYERS: [&str; 6] = ["error", "model", "render", "host", "ops", "cli"];

/// A module path such as `model::config`, from its file's path under `src/`.
fn module_of(file: &str) -> String {
    let path = file.trim_end_matches(".rs").trim_end_matches("/mod");
    path.replace('/', "::")
}

/// The code of a source file without its comments and with its string and character
/// literals emptied, so that only code can match what the checks look for.
fn code_of(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        match rest {
            ['/', '/', ..] => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ['/', '*', ..] => {
                let mut depth = 0;
                while i < chars.len() {
                    match &chars[i..] {
                        ['/', '*', ..] => (depth, i) = (depth + 1, i + 2),
                        ['*', '/', ..] => (depth, i) = (depth - 1, i + 2),
                        _ => i += 1,
                    }
                    if depth == 0 {
                        break;
                    }
                }
            }
            ['r', '#' | '"', ..] if !out.ends_with(|c: char| c.is_alphanumeric() || c == '_') => {
                let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
                if rest.get(1 + hashes) != Some(&'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close: String = std::iter::once('"')
                    .chain("#".repeat(hashes).chars())
                    .collect();
                let body: String = rest[2 + hashes..].iter().collect();
                let len = body.find(&close).map_or(body.len(), |e| e + close.len());
                out.push_str("\"\"");
                i += 2 + hashes + body[..len].chars().count();
            }
            ['"', ..] => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            ['\'', '\\', ..] => {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            }
            ['\'', _, '\'', ..] => {
                i += 3;
                out.push_str("' '");
            }
            [c, ..] => {
                out.push(*c);
                i += 1;
            }
            [] => break,
        }
    }
    out
}

/// `code` without its `use` declarations.
fn without_uses(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let starts_word = !rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        if starts_word {
            rest = rest[at..].find(';').map_or("", |end| &rest[at + end + 1..]);
        } else {
            out.push_str("use ");
            rest = &rest[at + 4..];
        }
    }
    out.push_str(rest);
    out
}

/// The paths a `use` tree stands for: `a::{b, c::{d, self}}` is `a::b`, `a::c::d` and `a::c`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or("").trim();
        return vec![path.trim_end_matches("::self").to_string()];
    };
    let close = tree.rfind('}').expect("a use tree's braces are balanced");
    let (head, inner) = (&tree[..open], &tree[open + 1..close]);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p {
            "self" => vec![head.trim_end_matches("::").to_string()],
            p => expand(&format!("{head}{p}")),
        })
        .collect()
}

/// The module a path leads into: the longest of `modules` that starts it.
fn target<'a>(path: &str, modules: &'a BTreeSet<String>) -> Option<&'a String> {
    modules
        .iter()
        .filter(|m| path == m.as_str() || path.starts_with(&format!("{m}::")))
        .max_by_key(|m| m.len())
}

fn rank(module: &str) -> Option<usize> {
    let layer = module.split("::").next().unwrap_or("");
    LAYERS.iter().position(|l| *l == layer)
}

/// The import graph of `files` (path under `src/`, text) and everything wrong with it.
fn check(files: &[(String, String)]) -> (BTreeMap<String, BTreeSet<String>>, Vec<String>) {
    let modules: BTreeSet<String> = files.iter().map(|(f, _)| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (file, text) in files {
        let from = module_of(file);
        let code = code_of(text);
        let mut rest = code.as_str();
        while let Some(at) = rest.find("use crate::") {
            let stmt_end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
            for path in expand(&rest[at + "use crate::".len()..stmt_end]) {
                let Some(to) = target(&path, &modules) else {
                    problems.push(format!("{file}: `use crate::{path}` names no module"));
                    continue;
                };
                if rank(to) > rank(&from) {
                    problems.push(format!(
                        "{file}: `use crate::{path}` goes up from {from} to {to}; imports go \
                         down only, through the layers {LAYERS:?}: move what it needs down"
                    ));
                }
                if *to != from {
                    graph.entry(from.clone()).or_default().insert(to.clone());
                }
            }
            rest = &rest[stmt_end..];
        }
        if without_uses(&code).contains("crate::") {
            problems.push(format!("{file}: a `crate::` path outside a use line"));
        }
        // A test module's `super` is the module it tests; any other is a path around the check.
        let before_tests = code.split("#[cfg(test)]").next().unwrap_or("");
        if before_tests.contains("super::") {
            problems.push(format!(
                "{file}: a `super::` path outside a test module; write `use crate::...` instead"
            ));
        }
    }
    problems.extend(cycles(&graph));
    (graph, problems)
}

/// Every cycle in `graph`, each as `a -> b -> a`.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        found: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|n| *n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node);
            found.push(format!("import cycle: {}", cycle.join(" -> ")));
            return;
        }
        if !done.insert(node) {
            return;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, found);
        }
        path.pop();
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            // The crate root declares the layers; main.rs is the binary, above them all.
            if rel != "lib.rs" && rel != "main.rs" {
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
}

#[test]
fn imports_go_down_the_layers_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    let (graph, problems) = check(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check saw the code: the create step imports from every layer below it.
    let create = &graph["ops::create"];
    for to in ["error", "model::plan", "render::seed", "host::hypervisor"] {
        assert!(
            create.contains(to),
            "ops::create -> {to} not seen: {create:?}"
        );
    }
}

#[test]
fn a_backwards_import_or_a_cycle_is_refused() {
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let (_, problems) = check(&[
        file(
            "model/plan.rs",
            "use crate::model::config::{self, Config};\n",
        ),
        file(
            "model/config.rs",
            "/*! Docs may say crate::ops. */\nuse crate::{ops::session::Session, model::plan};",
        ),
        file("ops/session.rs", "fn f() { crate::model::plan::x(); }\n"),
        file(
            "ops/mod.rs",
            "use super::x;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        ),
    ]);
    let expected = [
        "model/config.rs: `use crate::ops::session::Session` goes up from model::config to ops::session",
        "ops/session.rs: a `crate::` path outside a use line",
        "ops/mod.rs: a `super::` path outside a test module",
        "import cycle: model::config -> model::plan -> model::config",
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for want in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "{want} not among {problems:#?}"
        );
    }
}
