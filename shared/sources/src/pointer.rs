//! JSON pointers (RFC 6901) checked at load, and the `{/pointer}` / `{delivery}` templates of ids.

use serde_json::Value;

/// A JSON pointer whose syntax was checked when the file was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pointer(String);

impl Pointer {
    /// `/a/b~1c` etc.: starts with `/`, and `~` only as `~0` or `~1`.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if !text.starts_with('/') {
            return Err(format!(
                "{text:?} is not a JSON pointer: it must start with '/' (e.g. \"/sender/login\")"
            ));
        }
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!("{text:?} is not a JSON pointer: '~' must be followed by 0 or 1"));
            }
        }
        Ok(Pointer(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value at the pointer; `None` when absent or null.
    pub fn find<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        value.pointer(&self.0).filter(|found| !found.is_null())
    }
}

/// A scalar as text (`"42"`, `"true"`, the string itself); `None` for objects and arrays.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Pointer(Pointer),
    Delivery,
}

/// An id template: text with `{/pointer}` and `{delivery}` holes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template(pub Vec<Part>);

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("{text:?}: a '}}' without its '{{'"));
            }
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(format!("{text:?}: a '{{' without its '}}'"));
            };
            let hole = &after[..close];
            if hole == "delivery" {
                parts.push(Part::Delivery);
            } else if hole.starts_with('/') {
                parts.push(Part::Pointer(Pointer::parse(hole)?));
            } else {
                return Err(format!(
                    "{text:?}: {{{hole}}} is neither {{delivery}} nor a JSON pointer such as {{/pull_request/id}}"
                ));
            }
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if parts.is_empty() {
            return Err("an empty id template".into());
        }
        Ok(Template(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_are_checked() {
        assert!(Pointer::parse("/a/b~1c/~0").is_ok());
        assert!(Pointer::parse("a/b").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("/a~").is_err());
    }

    #[test]
    fn templates_have_pointer_and_delivery_holes() {
        let template = Template::parse("gh:{/pull_request/id}:merged:{delivery}").expect("valid");
        assert_eq!(
            template.0,
            vec![
                Part::Text("gh:".into()),
                Part::Pointer(Pointer("/pull_request/id".into())),
                Part::Text(":merged:".into()),
                Part::Delivery,
            ]
        );
        assert!(Template::parse("gh:{pull_request}").is_err());
        assert!(Template::parse("gh:{/id").is_err());
        assert!(Template::parse("gh:}").is_err());
        assert!(Template::parse("").is_err());
    }
}
