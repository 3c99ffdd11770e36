//! The channels' own webhooks on one machine (`POST /v1/sources/{source}`): which source files
//! are loaded (the shipped ones, `DATA/sources/*.toml`, `--sources DIR`) and where each source's
//! signing secret comes from (`PYRAMID_SOURCE_SECRET_<NAME>`, else `DATA/sources/<name>.secret`).
//! Secrets are read once, at start, as the cloud function reads its secret at cold start.

use anyhow::Context as _;
use engagement_sources::{Catalog, Scheme, SecretsError, SourceSecrets};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variables that hold secrets start with this.
pub const SECRET_VARIABLE_PREFIX: &str = "PYRAMID_SOURCE_SECRET_";

/// Where a source's secret is set in the environment: `PYRAMID_SOURCE_SECRET_<NAME>`, upper
/// case, `-` → `_` (a shell variable name cannot hold a dash).
pub fn secret_variable(source: &str) -> String {
    format!("{SECRET_VARIABLE_PREFIX}{}", source.to_ascii_uppercase().replace('-', "_"))
}

/// The directory of user source files and secret files inside the data directory.
pub fn sources_dir(data: &Path) -> PathBuf {
    data.join("sources")
}

/// The shipped sources, then `DATA/sources/*.toml`, then `--sources DIR`'s (a user file replaces
/// a shipped source of the same name). A file that does not parse stops the start, naming it.
pub fn load_catalog(data: &Path, extra: Option<&Path>) -> anyhow::Result<Catalog> {
    let mut files = toml_files(&sources_dir(data), false)?;
    if let Some(extra) = extra {
        files.extend(toml_files(extra, true)?);
    }
    let texts = files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read the source file {}", path.display()))?;
            Ok((path, text))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Catalog::with_files(texts.iter().map(|(path, text)| (path.to_string_lossy(), text.as_str())))
        .map_err(|error| anyhow::anyhow!("{error}"))
}

/// The `*.toml` files of a directory, by name (so a start is repeatable). A missing data
/// directory's `sources/` is no source; a missing `--sources DIR` is a mistake worth stopping for.
fn toml_files(dir: &Path, must_exist: bool) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !must_exist => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot read the sources directory {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read the sources directory {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Each connected source's signing secret, read at start (port `SourceSecrets`).
#[derive(Clone, Default)]
pub struct LocalSourceSecrets {
    secrets: Arc<BTreeMap<String, String>>,
}

impl LocalSourceSecrets {
    /// Reads the secret of every source of `catalog`: the environment variable wins over the
    /// file. Every `DATA/sources/*.secret` file must be readable by its owner only (mode 0600 or
    /// stricter): a signing secret others can read lets them record interactions as anyone.
    pub fn load(data: &Path, catalog: &Catalog, variable: impl Fn(&str) -> Option<String>) -> anyhow::Result<LocalSourceSecrets> {
        let files = secret_files(&sources_dir(data))?;
        let mut secrets = BTreeMap::new();
        for name in catalog.names() {
            let from_environment = variable(&secret_variable(name)).map(|v| v.trim().to_string());
            let secret = match (from_environment, files.get(name)) {
                (Some(secret), _) if !secret.is_empty() => secret,
                (_, Some(path)) => read_secret(path)?,
                _ => continue,
            };
            secrets.insert(name.to_string(), secret);
        }
        for (name, path) in &files {
            if catalog.get(name).is_none() {
                tracing::warn!(file = %path.display(), "a secret file names no source; it is not used");
            }
        }
        Ok(LocalSourceSecrets {
            secrets: Arc::new(secrets),
        })
    }

    /// The sources with a secret, by name.
    pub fn connected(&self) -> impl Iterator<Item = &str> {
        self.secrets.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for LocalSourceSecrets {
    // Names only: the secrets never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSourceSecrets")
            .field("connected", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SourceSecrets for LocalSourceSecrets {
    async fn secret(&self, source: &str) -> Result<Option<String>, SecretsError> {
        Ok(self.secrets.get(source).cloned())
    }
}

/// `DATA/sources/<name>.secret` by source name, each checked for its mode.
fn secret_files(dir: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot read the sources directory {}", dir.display())),
    };
    let mut files = BTreeMap::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read the sources directory {}", dir.display()))?
            .path();
        if path.extension().is_none_or(|e| e != "secret") {
            continue;
        }
        refuse_loose_mode(&path)?;
        if let Some(name) = path.file_stem().and_then(|s| s.to_str()) {
            files.insert(name.to_string(), path.clone());
        }
    }
    Ok(files)
}

#[cfg(unix)]
fn refuse_loose_mode(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "{} holds a signing secret but others may read it (mode {:o}); make it the owner's only: chmod 600 {}",
        path.display(),
        mode & 0o777,
        path.display()
    );
    Ok(())
}

#[cfg(not(unix))]
fn refuse_loose_mode(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let secret = text.trim();
    anyhow::ensure!(
        !secret.is_empty(),
        "{} is empty: put the source's signing secret in it, or delete it",
        path.display()
    );
    Ok(secret.to_string())
}

/// What the banner says about sources: the URL pattern, the connected ones and the rest, names
/// only. Sources that verify nothing (`scheme = "none"`) are warned about in the log too.
pub fn describe(catalog: &Catalog, secrets: &LocalSourceSecrets, url: &str) -> Vec<String> {
    let mut connected = Vec::new();
    let mut waiting = Vec::new();
    let mut unverified = Vec::new();
    let known: std::collections::BTreeSet<&str> = secrets.connected().collect();
    for name in catalog.names() {
        let Some(source) = catalog.get(name) else { continue };
        if source.scheme() == Scheme::None {
            unverified.push(name);
        } else if known.contains(name) {
            connected.push(name);
        } else {
            waiting.push(name);
        }
    }
    let list = |names: &[&str]| if names.is_empty() { "none".to_string() } else { names.join(", ") };
    let mut lines = vec![
        format!("sources: {url}/v1/sources/<name> (no token: the channel's signature authenticates)"),
        format!("  connected: {}", list(&connected)),
        format!(
            "  no signing secret yet: {} (DATA/sources/<name>.secret or {SECRET_VARIABLE_PREFIX}<NAME>)",
            list(&waiting)
        ),
    ];
    if !unverified.is_empty() {
        lines.push(format!("  UNVERIFIED (scheme none, anyone can post): {}", list(&unverified)));
    }
    lines
}

/// Warns once per source that accepts unsigned deliveries.
pub fn warn_unverified(catalog: &Catalog) {
    for name in catalog.names() {
        if catalog.get(name).is_some_and(|s| s.scheme() == Scheme::None) {
            tracing::warn!(
                source = name,
                "source {name} verifies nothing (scheme none): anyone who can reach this port can record interactions through it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_data_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pyramid-channels-{}-{}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(sources_dir(&dir)).expect("a directory");
        dir
    }

    #[tokio::test]
    async fn the_environment_wins_over_the_file_and_only_catalogued_sources_connect() {
        let data = temp_data_dir();
        for (name, secret) in [("github", "from-the-file\n"), ("mailchimp", "mailchimp-file"), ("nosuch", "x")] {
            crate::files::write_private(&sources_dir(&data).join(format!("{name}.secret")), secret.as_bytes()).expect("a file");
        }
        let catalog = Catalog::builtin();
        let environment = |variable: &str| (variable == "PYRAMID_SOURCE_SECRET_GITHUB").then(|| "from-the-environment".to_string());
        let secrets = LocalSourceSecrets::load(&data, &catalog, environment).expect("loaded");
        assert_eq!(secrets.secret("github").await, Ok(Some("from-the-environment".into())));
        assert_eq!(secrets.secret("mailchimp").await, Ok(Some("mailchimp-file".into())));
        assert_eq!(secrets.secret("stripe").await, Ok(None));
        assert_eq!(secrets.connected().collect::<Vec<_>>(), ["github", "mailchimp"]);
        assert!(!format!("{secrets:?}").contains("from-the"), "secrets in Debug");
        let _ = std::fs::remove_dir_all(&data);
    }

    #[test]
    fn an_empty_secret_file_is_refused() {
        let data = temp_data_dir();
        let path = sources_dir(&data).join("github.secret");
        crate::files::write_private(&path, b" \n").expect("a file");
        let error = LocalSourceSecrets::load(&data, &Catalog::builtin(), |_| None).expect_err("refused");
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        let _ = std::fs::remove_dir_all(&data);
    }

    /// The README's worked example ("A channel we don't ship") is a valid source file.
    #[test]
    fn the_readme_example_source_file_loads() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("A channel we don't ship").expect("the section")..];
        let start = section.find("```toml\n").expect("a TOML block") + "```toml\n".len();
        let text = &section[start..start + section[start..].find("```").expect("its end")];
        let catalog = Catalog::with_files([("README.md", text)]).expect("the example loads");
        assert!(catalog.get("typeform").is_some());
    }

    #[test]
    fn the_variable_is_the_name_in_upper_case_with_underscores() {
        assert_eq!(secret_variable("github"), "PYRAMID_SOURCE_SECRET_GITHUB");
        assert_eq!(secret_variable("my-forum-2"), "PYRAMID_SOURCE_SECRET_MY_FORUM_2");
    }
}
