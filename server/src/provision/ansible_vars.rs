//! The files that hand values to Ansible (the inventory and the extra
//! variables), written as YAML so that a value from a request or a tool's
//! output that could read as a template carries Ansible's `!unsafe` tag:
//! Ansible takes it as a literal string, whatever it holds (`{{`, `{%`,
//! `{#`). Plain JSON cannot say that: ansible-core templates every string
//! of an extra-vars file (2.14 to 2.18 when the variable is used; 2.19+
//! loads such files as trusted templates). The tag holds in all of them
//! (`server/tests/it/ansible_injection.rs` runs each).
//!
//! Only strings holding a `{` are tagged (every Jinja delimiter starts with
//! one; a string without it is no template in any release): ansible-core
//! 2.19's `!unsafe` gives a quoted scalar the type YAML would give it
//! unquoted (`!unsafe "123"` is the number 123, `!unsafe ""` null,
//! `!unsafe "="` a load error), which no string holding `{` can have.
//!
//! Every string is double-quoted with everything but printable ASCII
//! escaped, so no character a value holds can end the scalar, start a
//! comment, a tag or a key, or be one YAML's reader refuses.

use std::fmt::Write as _;

use serde_json::Value;

/// How Ansible may read a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Var {
    /// Data (from a request, a tool or the server): every string in it
    /// that holds a `{` is tagged `!unsafe`.
    Data(Value),
    /// The server's own configuration, written by the site's
    /// administrator, which may hold templates (`"{{ ansible_playbook_python }}"`).
    Config(Value),
    /// A mapping made by [`mapping`], its values tagged as they were there.
    Mapping(Yaml),
}

/// A YAML document made here.
#[derive(Debug, Clone, PartialEq)]
pub struct Yaml(String);

impl Yaml {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A YAML mapping of `entries` on one line; of two entries with one key,
/// the later one is written alone (YAML readers warn of duplicate keys).
pub fn mapping<'a>(entries: impl IntoIterator<Item = (&'a str, Var)>) -> Yaml {
    let entries: Vec<(&str, Var)> = entries.into_iter().collect();
    let mut out = String::from("{");
    let last = |key: &str| entries.iter().rposition(|(k, _)| *k == key);
    let kept = entries
        .iter()
        .enumerate()
        .filter(|(i, (key, _))| last(key) == Some(*i));
    for (n, (_, (key, var))) in kept.enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        quoted(key, &mut out);
        out.push_str(": ");
        match var {
            Var::Data(value) => value_to(value, true, &mut out),
            Var::Config(value) => value_to(value, false, &mut out),
            Var::Mapping(yaml) => out.push_str(&yaml.0),
        }
    }
    out.push('}');
    Yaml(out)
}

fn value_to(value: &Value, data: bool, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => number(n, out),
        Value::String(s) => {
            if data && s.contains('{') {
                out.push_str("!unsafe ");
            }
            quoted(s, out);
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                value_to(item, data, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                quoted(key, out);
                out.push_str(": ");
                value_to(item, data, out);
            }
            out.push('}');
        }
    }
}

/// A number as YAML 1.1 (PyYAML) reads it back: a float needs a dot, and
/// its exponent a sign.
fn number(n: &serde_json::Number, out: &mut String) {
    let text = n.to_string();
    if !n.is_f64() {
        out.push_str(&text);
        return;
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (text.as_str(), None),
    };
    out.push_str(mantissa);
    if !mantissa.contains('.') {
        out.push_str(".0");
    }
    if let Some(e) = exponent {
        let sign = if e.starts_with(['+', '-']) { "" } else { "+" };
        let _ = write!(out, "e{sign}{e}");
    }
}

/// A double-quoted YAML scalar holding exactly `s`: printable ASCII as is
/// (but `"` and `\`), everything else as `\uXXXX` or `\UXXXXXXXX`.
fn quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_is_tagged_and_escaped() {
        let yaml = mapping([
            (
                "session_user",
                Var::Data(json!("{{ lookup('pipe', 'id') }}")),
            ),
            ("rdp_port", Var::Data(json!(3389))),
            ("plain", Var::Data(json!("123"))),
            ("list", Var::Data(json!(["a\"b", "c\\d{", null, true]))),
            ("odd", Var::Data(json!("{é\n\u{7f}😀#: &x *y !t"))),
            ("python", Var::Config(json!("overridden"))),
            ("ratio", Var::Config(json!(1e300))),
            ("small", Var::Config(json!(1.5e-7))),
            (
                "python",
                Var::Config(json!("{{ ansible_playbook_python }}")),
            ),
        ]);
        assert_eq!(
            yaml.as_str(),
            r#"{"session_user": !unsafe "{{ lookup('pipe', 'id') }}", "rdp_port": 3389, "plain": "123", "list": ["a\"b", !unsafe "c\\d{", null, true], "odd": !unsafe "{\u00E9\u000A\u007F\U0001F600#: &x *y !t", "ratio": 1.0e+300, "small": 1.5e-7, "python": "{{ ansible_playbook_python }}"}"#
        );
        assert!(yaml.as_str().is_ascii() && !yaml.as_str().contains('\n'));
    }

    #[test]
    fn mappings_nest() {
        let host = mapping([("ansible_host", Var::Data(json!("{{ x }}")))]);
        let yaml = mapping([("hosts", Var::Mapping(host))]);
        assert_eq!(
            yaml.as_str(),
            r#"{"hosts": {"ansible_host": !unsafe "{{ x }}"}}"#
        );
    }
}
