//! The signing secret of the Standard Webhooks destinations that `--webhook URL` makes
//! (`DATA/webhook-secret`, a `whsec_` key made on first use): the one `pyramid serve` has
//! signed webhooks with since before destinations, kept so receivers need no new key.

use crate::files::{os_random, write_private};
use base64::Engine as _;
use std::path::Path;

/// The signing secret of a data directory (`whsec_…`, made on first use).
pub fn secret(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("webhook-secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim().to_string();
        // An empty or short key would sign with (almost) nothing: refused, as a short token is.
        let key = base64::engine::general_purpose::STANDARD
            .decode(text.trim_start_matches("whsec_"))
            .unwrap_or_default();
        let least = engagement_deliver::MIN_WEBHOOK_KEY_BYTES;
        if key.len() < least {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} does not hold a whsec_ key of at least {least} bytes; delete it to make a new one",
                    path.display()
                ),
            ));
        }
        return Ok(text);
    }
    let bytes = os_random::<32>()?;
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    write_private(&path, secret.as_bytes())?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_or_empty_signing_secret_is_refused_and_a_made_one_is_kept() {
        let dir = std::env::temp_dir().join(format!("pyramid-secret-{}-{}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(&dir).expect("a directory");
        let made = secret(&dir).expect("made");
        assert_eq!(secret(&dir).expect("read again"), made);
        for short in ["", "whsec_", "whsec_c2hvcnQ="] {
            std::fs::write(dir.join("webhook-secret"), short).expect("written");
            assert!(secret(&dir).is_err(), "{short:?} was accepted");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
