/*!
Which strings and paths may be carried into the documents mkheadnode writes: the cloud-init
seed (YAML), the domain XML, and the AppArmor abstraction.

One control character in user-data makes cloud-init reject the whole document, and XML 1.0
cannot carry most of them at all, so configuration values with one are refused when the
configuration is read, naming the key. An AppArmor rule is a line of AppArmor's own syntax, in
which white space, `#`, `,`, quotes and glob characters mean something: a path that goes into
one must have none of them.
*/

use std::path::Path;

/// Whether `c` is a control character: C0 (U+0000 to U+001F), DEL (U+007F) or C1 (U+0080 to
/// U+009F).
pub fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// The first control character of `s` and its position (in characters, from 0), if any.
pub fn first_control(s: &str) -> Option<(usize, char)> {
    s.chars().enumerate().find(|&(_, c)| is_control(c))
}

/// Why `value` cannot go into a seed or domain XML, if it cannot: a sentence naming the
/// offending character (as U+XXXX) and its position.
pub fn control_problem(value: &str) -> Option<String> {
    first_control(value).map(|(at, c)| {
        format!(
            "has the control character U+{:04X} at position {at} (counting from 0)",
            u32::from(c)
        )
    })
}

/// Characters that mean something in an AppArmor rule, beside white space and control
/// characters.
pub const APPARMOR_SPECIAL: &[char] = &['#', ',', '*', '?', '[', ']', '{', '}', '"', '^', '\\'];

/// Why `path` cannot be written into an AppArmor rule, if it cannot. It must be absolute, valid
/// UTF-8, free of `.` and `..` components, not `/` itself, and free of white space, control
/// characters and the characters of [`APPARMOR_SPECIAL`].
pub fn apparmor_path_problem(path: &Path) -> Option<String> {
    let Some(text) = path.to_str() else {
        return Some("is not valid UTF-8".into());
    };
    if !path.is_absolute() {
        return Some("must be an absolute path".into());
    }
    if text == "/" {
        return Some("must not be `/` itself: that would let qemu read everything".into());
    }
    let segments: Vec<&str> = text[1..].split('/').collect();
    if segments.iter().any(|s| matches!(*s, "." | "..")) {
        return Some("must not have `.` or `..` components: write the real path".into());
    }
    if segments.iter().any(|s| s.is_empty()) {
        return Some("must not have an empty component (`//` or a trailing `/`)".into());
    }
    if let Some(problem) = control_problem(text) {
        return Some(problem);
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_whitespace() || APPARMOR_SPECIAL.contains(c))
    {
        return Some(format!(
            "has `{c}`, which AppArmor rules give a meaning to (white space, `#`, `,`, quotes \
             and glob characters are not allowed)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_c0_del_and_c1() {
        for c in [
            '\0', '\t', '\n', '\r', '\u{1b}', '\u{1f}', '\u{7f}', '\u{80}', '\u{9f}',
        ] {
            assert!(is_control(c), "{c:?}");
        }
        for c in [' ', '~', 'a', '\u{a0}', 'é', '\u{2028}'] {
            assert!(!is_control(c), "{c:?}");
        }
        assert_eq!(first_control("ssh-rsa A\u{85}B"), Some((9, '\u{85}')));
        assert_eq!(first_control("ssh-ed25519 AAAA op@desk"), None);
        let why = control_problem("ab\u{7}").unwrap();
        assert!(
            why.contains("U+0007") && why.contains("position 2"),
            "{why}"
        );
    }

    #[test]
    fn apparmor_paths_are_plain_absolute_paths() {
        assert_eq!(
            apparmor_path_problem(Path::new("/var/lib/headnode-config")),
            None
        );
        assert_eq!(
            apparmor_path_problem(Path::new("/srv/head_node.d/x-1")),
            None
        );
        for (bad, why) in [
            ("relative/dir", "absolute"),
            ("/", "`/` itself"),
            ("/var/../etc", "`..`"),
            ("/var/./lib", "`.`"),
            ("/var//lib", "`//`"),
            ("/var/lib/", "trailing"),
            ("/var/lib/a b", "` `"),
            ("/var/lib/a\tb", "U+0009"),
            ("/var/lib/a\nb", "U+000A"),
            ("/var/lib/a#b", "`#`"),
            ("/var/lib/a,b", "`,`"),
            ("/var/lib/*", "`*`"),
            ("/var/lib/a?", "`?`"),
            ("/var/lib/[ab]", "`[`"),
            ("/var/lib/{a,b}", "`{`"),
            ("/var/lib/\"x\"", "`\"`"),
            ("/var/lib/a\u{a0}b", "`\u{a0}`"),
        ] {
            let got = apparmor_path_problem(Path::new(bad));
            assert!(
                got.as_deref().is_some_and(|g| g.contains(why)),
                "{bad:?}: {got:?}"
            );
        }
    }
}
