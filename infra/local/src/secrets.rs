//! Destination secrets on one machine: `PYRAMID_DESTINATION_SECRET_<NAME>` in the environment,
//! else `DATA/destinations/<name>.secret`, a file only its owner may read. All are read at start,
//! so a missing or exposed secret stops `pyramid serve` there, naming the destination, rather
//! than dead-lettering its first delivery.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("destination {name:?} has no secret: set {variable} or write it to {} (mode 0600)", path.display())]
    Missing { name: String, variable: String, path: PathBuf },
    #[error("destination {name:?}: {} is readable by others (mode {mode:o}); run `chmod 600` on it", path.display())]
    Exposed { name: String, path: PathBuf, mode: u32 },
    #[error("destination {name:?}: {} is empty", path.display())]
    Empty { name: String, path: PathBuf },
    #[error("destination {name:?}: cannot read {}: {source}", path.display())]
    Unreadable {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The environment variable that holds a destination's secret: `PYRAMID_DESTINATION_SECRET_`
/// and the name in capitals, anything but letters and digits as `_` (`crm-eu` → `…_CRM_EU`).
pub fn variable(name: &str) -> String {
    let suffix: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect();
    format!("PYRAMID_DESTINATION_SECRET_{suffix}")
}

/// The file that holds a destination's secret.
pub fn file(data: &Path, name: &str) -> PathBuf {
    data.join("destinations").join(format!("{name}.secret"))
}

/// A destination's secret, from the environment (`env`, `std::env::var` outside tests) or its file.
pub fn read(data: &Path, name: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, SecretFileError> {
    let variable = variable(name);
    if let Some(value) = env(&variable).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
        return Ok(value);
    }
    let path = file(data, name);
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(SecretFileError::Missing {
                name: name.to_string(),
                variable,
                path,
            })
        }
        Err(source) => {
            return Err(SecretFileError::Unreadable {
                name: name.to_string(),
                path,
                source,
            })
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretFileError::Exposed {
                name: name.to_string(),
                path,
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    let text = std::fs::read_to_string(&path).map_err(|source| SecretFileError::Unreadable {
        name: name.to_string(),
        path: path.clone(),
        source,
    })?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(SecretFileError::Empty {
            name: name.to_string(),
            path,
        });
    }
    Ok(text)
}

/// The secrets of the configured destinations, by destination name (held in memory only).
#[derive(Clone, Default)]
pub struct LocalSecrets {
    by_name: BTreeMap<String, String>,
}

impl std::fmt::Debug for LocalSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: a secret never reaches a log.
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl LocalSecrets {
    pub fn insert(&mut self, name: &str, secret: String) {
        self.by_name.insert(name.to_string(), secret);
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }
}

/// The deliver handler's port: every secret was read at start.
impl deliver::DestinationSecrets for LocalSecrets {
    async fn secret(&self, destination: &str) -> Result<String, deliver::SecretError> {
        self.get(destination)
            .map(str::to_string)
            .ok_or_else(|| deliver::SecretError::Missing {
                destination: destination.to_string(),
                hint: format!(
                    "set {} or write {}",
                    variable(destination),
                    format_args!("DATA/destinations/{destination}.secret")
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_comes_from_the_environment_or_a_private_file_and_an_exposed_one_is_refused() {
        let data = std::env::temp_dir().join(format!("pyramid-secrets-{}-{}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(data.join("destinations")).expect("a dir");
        let none = |_: &str| None;
        let missing = read(&data, "crm-eu", none).expect_err("no secret");
        assert!(
            missing.to_string().contains("PYRAMID_DESTINATION_SECRET_CRM_EU") && missing.to_string().contains("crm-eu.secret"),
            "{missing}"
        );
        let from_env = |name: &str| (name == "PYRAMID_DESTINATION_SECRET_CRM_EU").then(|| "pat-eu1-x\n".to_string());
        assert_eq!(read(&data, "crm-eu", from_env).expect("from the environment"), "pat-eu1-x");
        crate::files::write_private(&file(&data, "crm-eu"), b"pat-na1-y\n").expect("written");
        assert_eq!(read(&data, "crm-eu", none).expect("from the file"), "pat-na1-y");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(file(&data, "crm-eu"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let exposed = read(&data, "crm-eu", none).expect_err("readable by others");
            assert!(exposed.to_string().contains("chmod 600"), "{exposed}");
        }
        let _ = std::fs::remove_dir_all(&data);
    }
}
