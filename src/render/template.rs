/*!
A small XML template renderer on top of quick-xml's event reader and writer.

Templates are ordinary XML files under `xml-templates/`. Two things are filled in:
- `{{name}}` placeholders inside attribute values and text, replaced by a value that the
  writer escapes, so input can never add markup;
- `<mkheadnode-slot name="..."/>` elements, replaced by the events of another rendered
  fragment (such as one `<interface>`), which is parsed, not pasted.

An unknown placeholder or slot, or a value left unused, is an error: a template and the code
that fills it cannot drift apart silently. So is a value with a control character in an XML
template: XML 1.0 cannot carry most of them, and libvirt would refuse the document.
*/

use crate::model::text::control_problem;
use anyhow::{anyhow, bail, Context as _};
use quick_xml::events::{BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};
use std::collections::{BTreeMap, BTreeSet};

/// The element name that marks where a fragment goes.
pub const SLOT_ELEMENT: &str = "mkheadnode-slot";

/// Values and fragments for one rendering.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    values: BTreeMap<&'static str, String>,
    /// Values a template may use or not (names shared by a family of templates).
    optional: BTreeMap<&'static str, String>,
    slots: BTreeMap<&'static str, String>,
}

impl Vars {
    /// An empty context.
    pub fn new() -> Vars {
        Vars::default()
    }

    /// Set placeholder `{{name}}` to `value` (plain text; escaping is the writer's job).
    pub fn value(mut self, name: &'static str, value: impl ToString) -> Vars {
        self.values.insert(name, value.to_string());
        self
    }

    /// Offer placeholder `{{name}}` without requiring the template to use it: for names that a
    /// family of templates shares, such as the guest's file layout.
    pub fn optional(mut self, name: &'static str, value: impl ToString) -> Vars {
        self.optional.insert(name, value.to_string());
        self
    }

    /// Fill slot `name` with an already rendered XML fragment.
    pub fn slot(mut self, name: &'static str, fragment: String) -> Vars {
        self.slots.insert(name, fragment);
        self
    }
}

/// Fill the `{{name}}` placeholders of a text (non-XML) template. Values are inserted as
/// given, so the caller must pass them already encoded for the target format.
pub fn render_text(template: &str, origin: &str, ctx: &Vars) -> anyhow::Result<String> {
    let mut used = BTreeSet::new();
    let out =
        fill(template, ctx, &mut used).with_context(|| format!("rendering template {origin}"))?;
    check_all_used(ctx, &used, &BTreeSet::new(), origin)?;
    Ok(out)
}

/// Render the XML `template` (its file name is `origin`, for errors) with `ctx`.
pub fn render(template: &str, origin: &str, ctx: &Vars) -> anyhow::Result<String> {
    for (name, value) in ctx.values.iter().chain(&ctx.optional) {
        if let Some(problem) = control_problem(value) {
            bail!("rendering template {origin}: the value of `{{{{{name}}}}}` {problem}");
        }
    }
    let mut used_values = BTreeSet::new();
    let mut used_slots = BTreeSet::new();
    let mut writer = Writer::new(Vec::new());
    copy_events(
        template,
        ctx,
        &mut writer,
        &mut used_values,
        &mut used_slots,
    )
    .with_context(|| format!("rendering template {origin}"))?;
    check_all_used(ctx, &used_values, &used_slots, origin)?;
    String::from_utf8(writer.into_inner()).context("rendered XML is not UTF-8")
}

fn check_all_used(
    ctx: &Vars,
    used_values: &BTreeSet<&'static str>,
    used_slots: &BTreeSet<&'static str>,
    origin: &str,
) -> anyhow::Result<()> {
    let unused: Vec<&str> = ctx
        .values
        .keys()
        .filter(|k| !used_values.contains(*k))
        .chain(ctx.slots.keys().filter(|k| !used_slots.contains(*k)))
        .copied()
        .collect();
    if !unused.is_empty() {
        bail!("template {origin} does not use {}", unused.join(", "));
    }
    Ok(())
}

fn copy_events(
    xml: &str,
    ctx: &Vars,
    writer: &mut Writer<Vec<u8>>,
    used_values: &mut BTreeSet<&'static str>,
    used_slots: &mut BTreeSet<&'static str>,
) -> anyhow::Result<()> {
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    loop {
        let event = reader
            .read_event()
            .with_context(|| format!("malformed XML at byte {}", reader.buffer_position()))?;
        match &event {
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        match event {
            Event::Eof if depth > 0 => bail!("malformed XML: {depth} element(s) left open"),
            Event::Eof => return Ok(()),
            Event::Empty(e) if e.name().as_ref() == SLOT_ELEMENT => {
                let name = slot_name(&e)?;
                let (key, fragment) = ctx
                    .slots
                    .get_key_value(name.as_str())
                    .ok_or_else(|| anyhow!("slot `{name}` has no fragment"))?;
                used_slots.insert(key);
                copy_events(
                    fragment,
                    &Vars::new(),
                    writer,
                    &mut BTreeSet::new(),
                    &mut BTreeSet::new(),
                )
                .with_context(|| format!("in the fragment for slot `{name}`"))?;
            }
            Event::Start(e) => {
                writer.write_event(Event::Start(fill_attributes(&e, ctx, used_values)?))?
            }
            Event::Empty(e) => {
                writer.write_event(Event::Empty(fill_attributes(&e, ctx, used_values)?))?
            }
            Event::Text(t) => {
                let raw: &str = &t;
                let filled = fill(raw, ctx, used_values)?;
                writer.write_event(Event::Text(BytesText::new(&filled)))?;
            }
            other => writer.write_event(other)?,
        }
    }
}

fn slot_name(e: &BytesStart) -> anyhow::Result<String> {
    for attr in e.attributes() {
        let attr = attr?;
        if attr.key.as_ref() == "name" {
            return Ok(attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)?
                .into_owned());
        }
    }
    bail!("<{SLOT_ELEMENT}> without a name attribute")
}

fn fill_attributes(
    e: &BytesStart,
    ctx: &Vars,
    used: &mut BTreeSet<&'static str>,
) -> anyhow::Result<BytesStart<'static>> {
    let name = e.name().as_ref().to_string();
    let mut out = BytesStart::new(name);
    for attr in e.attributes() {
        let attr = attr?;
        let key = attr.key.as_ref().to_string();
        let value = fill(
            &attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)?,
            ctx,
            used,
        )?;
        out.push_attribute((key.as_str(), value.as_str()));
    }
    Ok(out)
}

/// Replace every `{{name}}` in `text`.
fn fill(text: &str, ctx: &Vars, used: &mut BTreeSet<&'static str>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow!("unclosed `{{{{` in `{text}`"))?;
        let name = after[..end].trim();
        if let Some((key, value)) = ctx.values.get_key_value(name) {
            used.insert(key);
            out.push_str(value);
        } else {
            let value = ctx
                .optional
                .get(name)
                .ok_or_else(|| anyhow!("placeholder `{{{{{name}}}}}` has no value"))?;
            out.push_str(value);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_values_fill_but_need_not_be_used() {
        let ctx = Vars::new().value("a", 1).optional("b", 2).optional("c", 3);
        assert_eq!(render_text("{{a}}-{{b}}", "t", &ctx).unwrap(), "1-2");
        // A required value left unused is still an error; an unknown one too.
        let err = render_text("{{b}}", "t", &ctx).unwrap_err();
        assert!(format!("{err:#}").contains("does not use a"), "{err:#}");
        let err = render_text("{{a}}{{d}}", "t", &ctx).unwrap_err();
        assert!(format!("{err:#}").contains("`{{d}}`"), "{err:#}");
    }

    #[test]
    fn fills_text_and_attributes_with_escaping() {
        let t = r#"<a x="{{v}}"><b>{{v}} and {{w}}</b></a>"#;
        let out = render(t, "t.xml", &Vars::new().value("v", "<&\"'>").value("w", 7)).unwrap();
        assert_eq!(
            out,
            r#"<a x="&lt;&amp;&quot;&apos;&gt;"><b>&lt;&amp;&quot;&apos;&gt; and 7</b></a>"#
        );
    }

    #[test]
    fn injected_markup_stays_text() {
        let out = render(
            "<n>{{v}}</n>",
            "t.xml",
            &Vars::new().value("v", "</n><evil/>"),
        )
        .unwrap();
        assert!(!out.contains("<evil/>"), "{out}");
    }

    #[test]
    fn control_characters_in_values_are_refused() {
        for bad in ["a\u{1}b", "x\ny", "del\u{7f}", "c1\u{85}"] {
            let e = render("<n>{{v}}</n>", "t.xml", &Vars::new().value("v", bad)).unwrap_err();
            assert!(format!("{e:#}").contains("`{{v}}`"), "{bad:?}: {e:#}");
        }
    }

    #[test]
    fn slots_take_parsed_fragments() {
        let t = r#"<d><mkheadnode-slot name="nic"/></d>"#;
        let ctx = Vars::new().slot("nic", "<interface type='network'/>".into());
        assert_eq!(
            render(t, "t.xml", &ctx).unwrap(),
            r#"<d><interface type="network"/></d>"#
        );
        let bad = Vars::new().slot("nic", "<interface>".into());
        assert!(render(t, "t.xml", &bad).is_err());
    }

    #[test]
    fn unknown_and_unused_names_are_errors() {
        let e = render("<a>{{x}}</a>", "t.xml", &Vars::new()).unwrap_err();
        assert!(format!("{e:#}").contains("{{x}}"), "{e:#}");
        let e = render("<a/>", "t.xml", &Vars::new().value("y", 1)).unwrap_err();
        assert!(format!("{e:#}").contains("does not use y"), "{e:#}");
        let e = render(
            r#"<a><mkheadnode-slot name="s"/></a>"#,
            "t.xml",
            &Vars::new(),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("slot `s`"), "{e:#}");
    }
}
