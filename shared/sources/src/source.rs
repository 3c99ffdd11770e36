//! A source file checked and compiled: every pointer, template, header name and time format is
//! validated at load, so a bad file fails at start rather than at its first delivery.

use crate::format::{EmitFile, MappingFile, SourceFile, VerificationFile};
use crate::pointer::{Pointer, Template};
use crate::{DefinitionError, Scheme};
use http::HeaderName;
use serde_json::Value;

/// At most this many properties per emitted interaction.
pub const MAX_PROPERTIES: usize = 16;
/// Property strings are cut to this many characters.
pub const MAX_PROPERTY_CHARS: usize = 256;

/// One channel's webhook: how its deliveries are verified and what they mean.
#[derive(Clone, Debug)]
pub struct Source {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) channel: String,
    pub(crate) verification: Verification,
    pub(crate) delivery_id: Option<DeliveryIdAt>,
    pub(crate) bots: Bots,
    pub(crate) mappings: Vec<Mapping>,
}

#[derive(Clone, Debug)]
pub(crate) enum Verification {
    Github,
    HmacSha256 {
        header: HeaderName,
        encoding: Encoding,
        prefix: String,
    },
    Stripe,
    Slack,
    Zendesk,
    StandardWebhooks,
    SecretInUrl {
        parameter: String,
    },
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Hex,
    Base64,
}

#[derive(Clone, Debug)]
pub(crate) enum DeliveryIdAt {
    Header(HeaderName),
    Pointer(Pointer),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Bots {
    pub actor: Option<Pointer>,
    pub actor_type: Option<Pointer>,
    /// Lowercase.
    pub logins: Vec<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Mapping {
    pub name: String,
    /// (header, expected value, the name as the file spells it).
    pub headers: Vec<(HeaderName, String, String)>,
    pub equals: Vec<(Pointer, Value)>,
    pub present: Vec<Pointer>,
    pub one_of: Vec<(Pointer, Vec<Value>)>,
    pub emits: Vec<Emit>,
}

#[derive(Clone, Debug)]
pub(crate) struct Emit {
    pub kind: String,
    pub id: Template,
    pub occurred_at: When,
    pub time_format: TimeFormat,
    pub handle: Pointer,
    pub channel: String,
    pub name: Option<Pointer>,
    pub also: Vec<(String, Pointer)>,
    pub properties: Vec<(String, Pointer)>,
}

#[derive(Clone, Debug)]
pub(crate) enum When {
    /// The delivery's arrival (payloads without a time of their own).
    Received,
    At(Pointer),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TimeFormat {
    Rfc3339,
    /// Seconds since the epoch (a number, or text such as Slack's `"1360782804.083113"`).
    Unix,
    UnixMs,
    /// A chrono strftime pattern, read as UTC unless it carries an offset.
    Strftime(String),
}

impl Source {
    /// A source from a file's text (its name in errors is the source's own, or `source file`).
    pub fn from_toml(text: &str) -> Result<Source, DefinitionError> {
        Source::from_file("source file", text)
    }

    /// A source from a file's text; `file` names the file in errors.
    pub fn from_file(file: &str, text: &str) -> Result<Source, DefinitionError> {
        let error = |reason: String| DefinitionError {
            file: file.to_string(),
            reason,
        };
        let parsed: SourceFile = toml::from_str(text).map_err(|e| error(e.to_string().trim_end().to_string()))?;
        compile(parsed).map_err(error)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// The identity channel of emitted customers (unless an emit overrides it).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn scheme(&self) -> Scheme {
        match self.verification {
            Verification::Github => Scheme::Github,
            Verification::HmacSha256 { .. } => Scheme::HmacSha256,
            Verification::Stripe => Scheme::Stripe,
            Verification::Slack => Scheme::Slack,
            Verification::Zendesk => Scheme::Zendesk,
            Verification::StandardWebhooks => Scheme::StandardWebhooks,
            Verification::SecretInUrl { .. } => Scheme::SecretInUrl,
            Verification::None => Scheme::None,
        }
    }

    /// Every kind this source can emit (for checking them against the rules at start).
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.mappings
            .iter()
            .flat_map(|mapping| mapping.emits.iter().map(|emit| emit.kind.as_str()))
    }

    /// The names of its mappings, in file order.
    pub fn mapping_names(&self) -> impl Iterator<Item = &str> {
        self.mappings.iter().map(|mapping| mapping.name.as_str())
    }
}

/// `[a-z0-9-]{1,64}`: the `{source}` of `/v1/sources/{source}`.
pub fn is_valid_source_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn compile(file: SourceFile) -> Result<Source, String> {
    if !is_valid_source_name(&file.name) {
        return Err(format!("name {:?} must be 1..64 characters of a-z, 0-9 and '-'", file.name));
    }
    check_channel(&file.channel, "channel")?;
    let verification = verification(&file.verification)?;
    let delivery_id = match (file.delivery_id, file.verification.delivery_id) {
        (Some(_), Some(_)) => return Err("delivery_id is given twice (at the top and under [verification])".into()),
        (top, under) => top.or(under),
    };
    let delivery_id = match delivery_id {
        None => None,
        Some(at) => Some(match (at.header, at.pointer) {
            (Some(header), None) => DeliveryIdAt::Header(header_name(&header, "delivery_id.header")?),
            (None, Some(pointer)) => DeliveryIdAt::Pointer(pointer_at(&pointer, "delivery_id.pointer")?),
            _ => return Err("delivery_id must name exactly one of `header` or `pointer`".into()),
        }),
    };
    let bots = match file.bots {
        None => Bots::default(),
        Some(bots) => Bots {
            actor: bots.actor.map(|p| pointer_at(&p, "bots.actor")).transpose()?,
            actor_type: bots.actor_type.map(|p| pointer_at(&p, "bots.actor_type")).transpose()?,
            logins: bots.logins.iter().map(|login| login.to_lowercase()).collect(),
        },
    };
    if file.mappings.is_empty() {
        return Err("no [[mappings]]: a source must map at least one event".into());
    }
    let mut mappings: Vec<Mapping> = Vec::with_capacity(file.mappings.len());
    for mapping in file.mappings {
        if mappings.iter().any(|m| m.name == mapping.name) {
            return Err(format!("two mappings are named {:?}", mapping.name));
        }
        mappings.push(compile_mapping(mapping, &file.channel)?);
    }
    Ok(Source {
        name: file.name,
        description: file.description,
        channel: file.channel,
        verification,
        delivery_id,
        bots,
        mappings,
    })
}

fn verification(file: &VerificationFile) -> Result<Verification, String> {
    let Some(scheme) = Scheme::from_name(&file.scheme) else {
        let known: Vec<&str> = Scheme::ALL.iter().map(|s| s.name()).collect();
        return Err(format!("verification.scheme {:?} is not one of {}", file.scheme, known.join(", ")));
    };
    let only_for = |field: &str, set: bool, allowed: Scheme| {
        if set && scheme != allowed {
            Err(format!("verification.{field} applies only to scheme \"{}\"", allowed.name()))
        } else {
            Ok(())
        }
    };
    only_for("header", file.header.is_some(), Scheme::HmacSha256)?;
    only_for("encoding", file.encoding.is_some(), Scheme::HmacSha256)?;
    only_for("prefix", file.prefix.is_some(), Scheme::HmacSha256)?;
    only_for("parameter", file.parameter.is_some(), Scheme::SecretInUrl)?;
    only_for("unverified", file.unverified, Scheme::None)?;
    Ok(match scheme {
        Scheme::Github => Verification::Github,
        Scheme::Stripe => Verification::Stripe,
        Scheme::Slack => Verification::Slack,
        Scheme::Zendesk => Verification::Zendesk,
        Scheme::StandardWebhooks => Verification::StandardWebhooks,
        Scheme::HmacSha256 => {
            let header = file
                .header
                .as_deref()
                .ok_or("verification.header is required for scheme \"hmac-sha256\" (the header carrying the signature)")?;
            let encoding = match file.encoding.as_deref() {
                Some("hex") => Encoding::Hex,
                Some("base64") => Encoding::Base64,
                Some(other) => return Err(format!("verification.encoding {other:?} must be \"hex\" or \"base64\"")),
                None => return Err("verification.encoding is required for scheme \"hmac-sha256\": \"hex\" or \"base64\"".into()),
            };
            Verification::HmacSha256 {
                header: header_name(header, "verification.header")?,
                encoding,
                prefix: file.prefix.clone().unwrap_or_default(),
            }
        }
        Scheme::SecretInUrl => match file.parameter.as_deref() {
            Some(parameter) if !parameter.is_empty() => Verification::SecretInUrl {
                parameter: parameter.to_string(),
            },
            _ => {
                return Err(
                    "verification.parameter is required for scheme \"secret-in-url\" (the query parameter holding the secret)".into(),
                )
            }
        },
        Scheme::None if !file.unverified => {
            return Err(
                "scheme \"none\" accepts anyone's deliveries: say so explicitly with `unverified = true` under [verification]".into(),
            )
        }
        Scheme::None => Verification::None,
    })
}

fn compile_mapping(file: MappingFile, source_channel: &str) -> Result<Mapping, String> {
    let name = file.name;
    if name.trim().is_empty() {
        return Err("a mapping has an empty name".into());
    }
    let at = |what: &str| format!("mapping {name:?}: {what}");
    let mut headers = Vec::new();
    for (header, value) in file.matching.headers {
        headers.push((header_name(&header, "match.headers").map_err(|e| at(&e))?, value, header));
    }
    let mut equals = Vec::new();
    for (pointer, value) in file.matching.equals {
        let value = scalar(&value).ok_or_else(|| at(&format!("match.equals {pointer:?} must be a string, number or boolean")))?;
        equals.push((pointer_at(&pointer, "match.equals").map_err(|e| at(&e))?, value));
    }
    let mut present = Vec::new();
    for pointer in file.matching.present {
        present.push(pointer_at(&pointer, "match.present").map_err(|e| at(&e))?);
    }
    let mut one_of = Vec::new();
    for (pointer, values) in file.matching.one_of {
        if values.is_empty() {
            return Err(at(&format!("match.one_of {pointer:?} lists no values")));
        }
        let values = values
            .iter()
            .map(|v| scalar(v).ok_or_else(|| at(&format!("match.one_of {pointer:?} must list strings, numbers or booleans"))))
            .collect::<Result<Vec<_>, _>>()?;
        one_of.push((pointer_at(&pointer, "match.one_of").map_err(|e| at(&e))?, values));
    }
    if file.emit.is_empty() {
        return Err(at("no [[mappings.emit]]: a mapping must emit at least one interaction"));
    }
    let emits = file
        .emit
        .into_iter()
        .enumerate()
        .map(|(index, emit)| compile_emit(emit, source_channel).map_err(|e| at(&format!("emit {}: {e}", index + 1))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Mapping {
        name,
        headers,
        equals,
        present,
        one_of,
        emits,
    })
}

fn compile_emit(file: EmitFile, source_channel: &str) -> Result<Emit, String> {
    let kind = file.kind.ok_or("`kind` is required")?;
    if !engagement::rules::is_valid_kind_name(&kind) {
        return Err(format!("kind {kind:?} must be 1..64 characters of a-z, 0-9, '_', '-' or '.'"));
    }
    let id = Template::parse(
        &file
            .id
            .ok_or("`id` is required (a template such as \"github:issue:{/issue/id}:opened\")")?,
    )
    .map_err(|e| format!("id {e}"))?;
    let occurred_at = match file
        .occurred_at
        .ok_or("`occurred_at` is required: a JSON pointer, or \"received\" for the delivery's arrival")?
        .as_str()
    {
        "received" => When::Received,
        pointer => When::At(pointer_at(pointer, "occurred_at")?),
    };
    let time_format = match file.time_format.as_deref() {
        None | Some("rfc3339") => TimeFormat::Rfc3339,
        Some("unix") => TimeFormat::Unix,
        Some("unix_ms") => TimeFormat::UnixMs,
        Some(pattern) => {
            let has_error = chrono::format::StrftimeItems::new(pattern).any(|item| matches!(item, chrono::format::Item::Error));
            if has_error || !pattern.contains('%') {
                return Err(format!(
                    "time_format {pattern:?} is not rfc3339, unix, unix_ms or a strftime pattern such as \"%Y-%m-%d %H:%M:%S\""
                ));
            }
            TimeFormat::Strftime(pattern.to_string())
        }
    };
    let handle = pointer_at(
        &file.handle.ok_or("`handle` is required: a JSON pointer to the customer's handle")?,
        "handle",
    )?;
    let channel = file.channel.unwrap_or_else(|| source_channel.to_string());
    check_channel(&channel, "channel")?;
    let name = file.name.map(|p| pointer_at(&p, "name")).transpose()?;
    let mut also = Vec::new();
    for identity in file.also {
        check_channel(&identity.channel, "also.channel")?;
        also.push((identity.channel, pointer_at(&identity.handle, "also.handle")?));
    }
    if file.properties.len() > MAX_PROPERTIES {
        return Err(format!("{} properties: at most {MAX_PROPERTIES}", file.properties.len()));
    }
    let mut properties = Vec::new();
    for (key, pointer) in file.properties {
        if key.is_empty() {
            return Err("a property has an empty name".into());
        }
        properties.push((key.clone(), pointer_at(&pointer, &format!("properties.{key}"))?));
    }
    Ok(Emit {
        kind,
        id,
        occurred_at,
        time_format,
        handle,
        channel,
        name,
        also,
        properties,
    })
}

fn check_channel(channel: &str, field: &str) -> Result<(), String> {
    engagement::Channel::parse(channel)
        .map(|_| ())
        .map_err(|_| format!("{field} {channel:?} must be 1..32 characters of a-z, 0-9, '_' and '-'"))
}

fn header_name(name: &str, field: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{field}: {name:?} is not a valid header name"))
}

fn pointer_at(text: &str, field: &str) -> Result<Pointer, String> {
    Pointer::parse(text).map_err(|e| format!("{field}: {e}"))
}

fn scalar(value: &toml::Value) -> Option<Value> {
    match value {
        toml::Value::String(text) => Some(Value::String(text.clone())),
        toml::Value::Integer(number) => Some(Value::from(*number)),
        toml::Value::Float(number) => serde_json::Number::from_f64(*number).map(Value::Number),
        toml::Value::Boolean(flag) => Some(Value::Bool(*flag)),
        _ => None,
    }
}
