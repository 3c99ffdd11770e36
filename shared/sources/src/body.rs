//! Bodies: JSON, or form-encoded (Mailchimp) read as a JSON object of strings.

use crate::{BadBody, Delivery};
use serde_json::{Map, Value};

/// The body as JSON; a form-encoded body (by its content type) as nested objects of strings:
/// `data[merges][FNAME]=Ann` → `{"data":{"merges":{"FNAME":"Ann"}}}`.
pub(crate) fn parse(delivery: &Delivery) -> Result<Value, BadBody> {
    let form = delivery
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if form {
        return Ok(parse_form(delivery.body));
    }
    serde_json::from_slice(delivery.body).map_err(|error| BadBody {
        reason: format!("the body is not valid JSON ({error})"),
    })
}

fn parse_form(body: &[u8]) -> Value {
    let mut root = Map::new();
    for (key, value) in form_urlencoded::parse(body) {
        let path = key_path(&key);
        insert(&mut root, &path, Value::String(value.into_owned()));
    }
    Value::Object(root)
}

/// `data[merges][FNAME]` → `["data", "merges", "FNAME"]`.
fn key_path(key: &str) -> Vec<String> {
    match key.find('[') {
        Some(open) if key.ends_with(']') => {
            let mut path = vec![key[..open].to_string()];
            path.extend(key[open + 1..key.len() - 1].split("][").map(str::to_string));
            path
        }
        _ => vec![key.to_string()],
    }
}

fn insert(object: &mut Map<String, Value>, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            object.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let child = object.entry(first.clone()).or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(child) = child {
                insert(child, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn form_bodies_nest_by_brackets() {
        let body = b"type=subscribe&fired_at=2009-03-26+21%3A35%3A57&data%5Bemail%5D=api%40mailchimp.com&data[merges][FNAME]=Ann&data[merges][LNAME]=Lee";
        assert_eq!(
            parse_form(body),
            json!({
                "type": "subscribe",
                "fired_at": "2009-03-26 21:35:57",
                "data": {"email": "api@mailchimp.com", "merges": {"FNAME": "Ann", "LNAME": "Lee"}}
            })
        );
    }
}
