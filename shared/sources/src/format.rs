//! The source file as written (TOML), before it is checked and compiled into a `Source`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub channel: String,
    pub verification: VerificationFile,
    #[serde(default)]
    pub delivery_id: Option<DeliveryIdFile>,
    #[serde(default)]
    pub bots: Option<BotsFile>,
    #[serde(default)]
    pub mappings: Vec<MappingFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerificationFile {
    pub scheme: String,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub parameter: Option<String>,
    #[serde(default)]
    pub unverified: bool,
    /// Written after `[verification]` (as the design's example places it), TOML puts the
    /// top-level `delivery_id` here: accepted in either place.
    #[serde(default)]
    pub delivery_id: Option<DeliveryIdFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryIdFile {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub pointer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BotsFile {
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub actor_type: Option<String>,
    #[serde(default)]
    pub logins: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MappingFile {
    pub name: String,
    #[serde(rename = "match", default)]
    pub matching: MatchFile,
    #[serde(default)]
    pub emit: Vec<EmitFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MatchFile {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub equals: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub present: Vec<String>,
    #[serde(default)]
    pub one_of: BTreeMap<String, Vec<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmitFile {
    pub kind: Option<String>,
    pub id: Option<String>,
    pub occurred_at: Option<String>,
    #[serde(default)]
    pub time_format: Option<String>,
    pub handle: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub also: Vec<AlsoFile>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlsoFile {
    pub channel: String,
    pub handle: String,
}
