//! What the fuzz targets check, one function a target: besides never panicking, each holds a
//! property of its input's parser or renderer. The main crate's tests include this file too
//! (`tests/fuzz_regressions.rs`) and replay every input kept in `fuzz/regressions/<target>/`.

use mkheadnode::error::{kind_of, Kind};
use mkheadnode::model::config::Config;
use mkheadnode::model::machines;
use mkheadnode::model::plan::{Plan, VirtType};
use mkheadnode::model::text::first_control;
use mkheadnode::model::vlan::{parse_list, Vlan};
use mkheadnode::render::domain_xml::{domain, live_facts, parse_metadata};
use mkheadnode::render::seed;
use mkheadnode::render::template::{render, render_text, Vars};
use std::path::Path;

/// What a fuzz target checks of one input: it panics if a property does not hold.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name (the names of their folders under `fuzz/regressions/`).
pub const TARGETS: [(&str, Check); 4] = [
    ("vlan_list", vlan_list),
    ("machines", machines),
    ("config", config),
    ("template", template),
];

/// The VLAN list parser: a list is sorted, free of duplicates, in 1..=4094 and not empty; an
/// error is a usage error that quotes some of the input.
pub fn vlan_list(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_list(text) {
        Ok(list) => {
            assert!(!list.is_empty(), "{text:?} gave no VLAN");
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{text:?}: {list:?}");
            assert!(list.iter().all(|v| (1..=4094).contains(&v.id())));
        }
        Err(e) => {
            assert_eq!(kind_of(&e), Kind::Usage, "{text:?}: {e:#}");
            assert!(format!("{e:#}").contains('`'), "{text:?}: {e:#}");
        }
    }
}

/// machines.txt: what parses renders back to text that parses to the same machines; an error
/// is a usage error that names the file and the line.
pub fn machines(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match machines::parse(text, "fuzz.txt") {
        Ok(list) => {
            let again = machines::parse(&machines::render(&list), "rendered")
                .unwrap_or_else(|e| panic!("{text:?}: its rendering does not parse: {e:#}"));
            assert_eq!(again, list, "{text:?}");
        }
        Err(e) => {
            assert_eq!(kind_of(&e), Kind::Usage, "{text:?}: {e:#}");
            assert!(format!("{e:#}").contains("fuzz.txt, line "), "{e:#}");
        }
    }
}

/// The configuration loader: an error is a usage error; a configuration it accepts always
/// renders its domain XML (whose metadata reads back as planned) and its seed, and no seed file
/// carries a control character other than the line ends of its own templates.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::from_toml(text, Path::new("fuzz.toml")) {
        Ok(c) => c,
        Err(e) => {
            assert_eq!(kind_of(&e), Kind::Usage, "{text:?}: {e:#}");
            return;
        }
    };
    let id = u16::try_from(data.len() % 4094).unwrap_or(0) + 1;
    let vlan = Vlan::new(id).unwrap_or_else(|e| panic!("VLAN {id}: {e:#}"));
    let plan = Plan::new(&config, vlan, VirtType::Qemu);
    let xml = domain(&plan).unwrap_or_else(|e| panic!("{text:?}: no domain XML: {e:#}"));
    let start = xml.find("<mkheadnode:headnode").unwrap_or(0);
    let end = xml.find("</mkheadnode:headnode>").unwrap_or(0) + "</mkheadnode:headnode>".len();
    let meta = parse_metadata(&xml[start..end]).unwrap_or_else(|e| panic!("{xml}: {e:#}"));
    assert_eq!(
        (meta.vlan, &meta.pool, &meta.config_dir),
        (plan.vlan, &plan.pool, &plan.config_dir)
    );
    let facts = live_facts(&xml).unwrap_or_else(|e| panic!("{xml}: {e:#}"));
    assert_eq!(facts.disk_sources.len(), 2, "{xml}");
    let files = seed::files(&plan).unwrap_or_else(|e| panic!("{text:?}: no seed: {e:#}"));
    for (name, body) in files.entries() {
        let stray = body
            .chars()
            .find(|&c| c != '\n' && first_control(&c.to_string()).is_some());
        assert_eq!(stray, None, "{text:?}: seed file {name} carries {stray:?}");
    }
}

/// The template renderer: any template renders or fails without panicking; and any value
/// without control characters comes out of a fixed template escaped, so it adds no markup.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, value) = text.split_once('\u{0}').unwrap_or((text, ""));
    let vars = Vars::new().optional("v", value).optional("w", "7");
    let _ = render(template, "fuzz.xml", &vars);
    let _ = render_text(template, "fuzz.txt", &vars);
    let fixed = r#"<a x="{{v}}"><b>{{v}}</b></a>"#;
    match render(fixed, "fixed.xml", &Vars::new().value("v", value)) {
        Ok(out) => {
            let e = escaped(value);
            assert_eq!(out, format!(r#"<a x="{e}"><b>{e}</b></a>"#), "{value:?}");
        }
        Err(err) => assert!(
            first_control(value).is_some(),
            "{value:?} was refused: {err:#}"
        ),
    }
}

/// `value` with XML's five special characters as entities.
fn escaped(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}
