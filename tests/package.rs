//! The Debian package (`make deb`, Cargo.toml's `[package.metadata.deb]`): the example
//! `/etc/mkheadnode/config.toml` it ships changes nothing and shows every key with its default.

use mkheadnode::model::config::Config;
use std::path::Path;

/// The example `/etc/mkheadnode/config.toml` the package ships.
const EXAMPLE_CONFIG: &str = include_str!("../packaging/config.toml");

/// `text` with every commented-out key and table header (`#key = ...`, `#[table]`) uncommented;
/// prose comments (`# ...`) stay.
fn uncommented(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => rest,
            _ => line,
        })
        .collect();
    lines.join("\n")
}

#[test]
fn example_config_changes_nothing_and_shows_every_key_with_its_default() {
    let origin = Path::new("packaging/config.toml");
    let shipped = Config::from_toml(EXAMPLE_CONFIG, origin).unwrap();
    assert_eq!(
        shipped,
        Config::default(),
        "the file as shipped changes settings"
    );
    let every_key = uncommented(EXAMPLE_CONFIG);
    let uncommented_config = Config::from_toml(&every_key, origin)
        .unwrap_or_else(|e| panic!("uncommented, the loader refuses it: {e:#}\n{every_key}"));
    assert_eq!(
        uncommented_config,
        Config::default(),
        "a default shown is not the default"
    );
    let shown: toml::Value = toml::from_str(&every_key).unwrap();
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    assert_eq!(shown, defaults, "the example does not show every key");
}
