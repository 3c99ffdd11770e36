//! Page cursors as clients see them: the store's cursor, sealed with an HMAC so that a cursor
//! that was edited or made up is refused (400) instead of reading from an arbitrary key.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const TAG_BYTES: usize = 16;

#[derive(Clone)]
pub struct CursorSigner {
    key: Vec<u8>,
}

impl CursorSigner {
    /// `key` is the deployment's cursor key: a secret of its own, never the identity salt (a
    /// leak of either must not expose the other, and only this one can be replaced).
    pub fn new(key: &str) -> CursorSigner {
        CursorSigner {
            key: format!("cursor|{key}").into_bytes(),
        }
    }

    fn tag(&self, listing: &str, payload: &[u8]) -> Vec<u8> {
        // Keys of any length are accepted by HMAC; this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return Vec::new();
        };
        mac.update(listing.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac.finalize().into_bytes()[..TAG_BYTES].to_vec()
    }

    /// Seals a store cursor for one listing (a cursor of one listing is refused by another).
    pub fn seal(&self, listing: &str, cursor: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut bytes = self.tag(listing, cursor.as_bytes());
        bytes.extend_from_slice(cursor.as_bytes());
        engine.encode(bytes)
    }

    /// The store cursor inside a sealed one, or `None` if it was not sealed here for `listing`.
    pub fn open(&self, listing: &str, sealed: &str) -> Option<String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < TAG_BYTES {
            return None;
        }
        let (tag, payload) = bytes.split_at(TAG_BYTES);
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        mac.update(listing.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac.verify_truncated_left(tag).ok()?;
        String::from_utf8(payload.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_cursor_opens_only_unchanged_and_for_its_listing() {
        let signer = CursorSigner::new("secret");
        let sealed = signer.seal("level:endorsing", "store-cursor");
        assert_eq!(signer.open("level:endorsing", &sealed).as_deref(), Some("store-cursor"));
        assert_eq!(signer.open("level:leading", &sealed), None);
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(signer.open("level:endorsing", &String::from_utf8(tampered).expect("ascii")), None);
        assert_eq!(CursorSigner::new("other").open("level:endorsing", &sealed), None);
        assert_eq!(signer.open("level:endorsing", "not base64!"), None);
    }
}
