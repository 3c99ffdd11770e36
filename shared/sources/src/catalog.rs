//! The sources a deployment knows: the built-in files, overridden by name by the user's own.

use crate::{DefinitionError, Source};
use std::collections::BTreeMap;

/// The built-in source files, embedded (one line per shipped source).
const BUILTIN: &[(&str, &str)] = &[
    ("discourse.toml", include_str!("../builtin/discourse.toml")),
    ("github.toml", include_str!("../builtin/github.toml")),
    ("mailchimp.toml", include_str!("../builtin/mailchimp.toml")),
    ("slack.toml", include_str!("../builtin/slack.toml")),
];

/// Sources by name.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    sources: BTreeMap<String, Source>,
}

impl Catalog {
    /// The shipped sources.
    pub fn builtin() -> Catalog {
        Catalog::with_files(std::iter::empty::<(String, String)>()).expect("the built-in source files are valid (tested)")
    }

    /// The shipped sources, then each user file (`(path, text)`) in turn; a user file replaces a
    /// built-in source of the same name. Two user files of one name are an error.
    pub fn with_files<P: AsRef<str>, T: AsRef<str>>(files: impl IntoIterator<Item = (P, T)>) -> Result<Catalog, DefinitionError> {
        let mut sources = BTreeMap::new();
        for (file, text) in BUILTIN {
            let source = Source::from_file(&format!("builtin/{file}"), text)?;
            sources.insert(source.name().to_string(), source);
        }
        let mut from_user: BTreeMap<String, String> = BTreeMap::new();
        for (path, text) in files {
            let path = path.as_ref();
            let source = Source::from_file(path, text.as_ref())?;
            if let Some(earlier) = from_user.insert(source.name().to_string(), path.to_string()) {
                return Err(DefinitionError {
                    file: path.to_string(),
                    reason: format!("source {:?} is also defined in {earlier}", source.name()),
                });
            }
            sources.insert(source.name().to_string(), source);
        }
        Ok(Catalog { sources })
    }

    pub fn get(&self, name: &str) -> Option<&Source> {
        self.sources.get(name)
    }

    /// The sources' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// The sources, sorted by name.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.sources.values()
    }
}
