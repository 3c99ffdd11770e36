//! The sealed contact of `Customer Erased`: what the marketing tools need to find an erased
//! person (their email address), encrypted so that the bus, the queues, the journals and the
//! dead letters hold only ciphertext, readable with the contact key alone.
//!
//! XChaCha20-Poly1305: `sealed_contact` is base64 of a 24-byte nonce followed by the ciphertext
//! (with its tag) of `{"email": ...}`. The customer id is the associated data: a sealed contact
//! moved onto another customer's event does not open. The caller brings the key and the nonce
//! (random bytes from the OS generator): the core has no access to the OS.

use crate::events::{CustomerErased, DomainEvent};
use crate::identity::{HandleStyle, Identity};
use crate::rules::Rules;
use crate::values::CustomerId;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// The field of `Customer Erased` that holds the sealed contact.
pub const SEALED_CONTACT: &str = "sealed_contact";
/// Bytes of the nonce each seal takes (random: XChaCha's nonces are large enough for that).
pub const NONCE_BYTES: usize = 24;
/// The shortest secret a contact key is derived from (the adapters make 64 characters).
pub const MIN_SECRET_CHARS: usize = 32;
/// Separates this key from any other derived from the same secret by mistake.
const KEY_LABEL: &[u8] = b"engagement contact key v1\0";

/// The key that seals and opens contacts. Its own, one purpose: not the identity salt (which
/// can never change) nor the cursor key.
#[derive(Clone)]
pub struct ContactKey([u8; 32]);

impl std::fmt::Debug for ContactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContactKey(…)")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    #[error("the contact key secret holds fewer than {MIN_SECRET_CHARS} characters")]
    ShortSecret,
    /// Not base64, too short, or not sealed with this key for this customer.
    #[error("the sealed contact does not open with this key")]
    Unreadable,
}

impl ContactKey {
    /// Derives the key from a secret string (a local key file, a Secrets Manager secret):
    /// SHA-256 of a label and the secret, which is random and long, so no stretching is needed.
    pub fn from_secret(secret: &str) -> Result<ContactKey, ContactError> {
        use sha2::{Digest, Sha256};
        let secret = secret.trim();
        if secret.chars().count() < MIN_SECRET_CHARS {
            return Err(ContactError::ShortSecret);
        }
        let digest = Sha256::new().chain_update(KEY_LABEL).chain_update(secret).finalize();
        Ok(ContactKey(digest.into()))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

/// What is sealed.
#[derive(Serialize, Deserialize)]
struct Contact {
    email: String,
}

/// Seals `email` for `customer_id`'s `Customer Erased`: base64 of the nonce and the ciphertext.
pub fn seal_contact(key: &ContactKey, customer_id: &CustomerId, email: &str, nonce: [u8; NONCE_BYTES]) -> String {
    let plain = serde_json::to_vec(&Contact { email: email.to_string() }).unwrap_or_default();
    let payload = Payload {
        msg: &plain,
        aad: customer_id.as_str().as_bytes(),
    };
    // Encryption fails only for a message beyond 256 GiB.
    let ciphertext = key.cipher().encrypt(XNonce::from_slice(&nonce), payload).unwrap_or_default();
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&ciphertext);
    base64::engine::general_purpose::STANDARD.encode(sealed)
}

/// The email a `Customer Erased` carries, opened with `key`: `None` for other events and for
/// an erasure without one (older events, a customer without an email address).
pub fn open_contact(event: &DomainEvent, key: &ContactKey) -> Result<Option<String>, ContactError> {
    let DomainEvent::CustomerErased(CustomerErased {
        customer_id,
        sealed_contact: Some(sealed),
        ..
    }) = event
    else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .map_err(|_| ContactError::Unreadable)?;
    if bytes.len() < NONCE_BYTES {
        return Err(ContactError::Unreadable);
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
    let payload = Payload {
        msg: ciphertext,
        aad: customer_id.as_str().as_bytes(),
    };
    let plain = key
        .cipher()
        .decrypt(XNonce::from_slice(nonce), payload)
        .map_err(|_| ContactError::Unreadable)?;
    let contact: Contact = serde_json::from_slice(&plain).map_err(|_| ContactError::Unreadable)?;
    Ok(Some(contact.email))
}

/// The event as kept once its deliveries are over (delivered or dead-lettered): ids only, no
/// sealed contact. Other events are returned as they are.
pub fn scrubbed(event: &DomainEvent) -> DomainEvent {
    match event {
        DomainEvent::CustomerErased(erased) => DomainEvent::CustomerErased(CustomerErased {
            sealed_contact: None,
            ..erased.clone()
        }),
        other => other.clone(),
    }
}

/// [`scrubbed`] for an event kept as JSON (an EventBridge envelope or its detail): removes the
/// sealed contact wherever it is; returns whether there was one.
pub fn scrub_json(event: &mut serde_json::Value) -> bool {
    let mut removed = false;
    if let Some(detail) = event.get_mut("detail").and_then(serde_json::Value::as_object_mut) {
        removed |= detail.remove(SEALED_CONTACT).is_some();
    }
    if let Some(detail) = event.as_object_mut() {
        removed |= detail.remove(SEALED_CONTACT).is_some();
    }
    removed
}

/// The email address tools know the customer by: the first identity on the channel named
/// `email`, else the first on any channel whose handles are email addresses.
pub fn email_of<'a>(identities: &'a [Identity], rules: &Rules) -> Option<&'a str> {
    identities
        .iter()
        .find(|identity| identity.channel.as_str() == "email" && rules.handle_style(&identity.channel) == HandleStyle::Email)
        .or_else(|| {
            identities
                .iter()
                .find(|identity| rules.handle_style(&identity.channel) == HandleStyle::Email)
        })
        .map(|identity| identity.handle.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{CUSTOMER_ERASED, CUSTOMER_ERASED_SCHEMA_VERSION};
    use crate::identity::Channel;
    use crate::time::Timestamp;

    fn key(secret: &str) -> ContactKey {
        ContactKey::from_secret(secret).expect("a long secret")
    }

    fn erased(customer_id: &str, sealed_contact: Option<String>) -> DomainEvent {
        DomainEvent::CustomerErased(CustomerErased {
            schema_version: CUSTOMER_ERASED_SCHEMA_VERSION,
            customer_id: CustomerId(customer_id.into()),
            erased_at: Timestamp::from_millis(1_780_000_000_000),
            sealed_contact,
        })
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_sealed_contact_opens_with_its_key_and_holds_no_clear_text() {
        let id = CustomerId("cus_1".into());
        let sealed = seal_contact(&key(SECRET), &id, "ann@example.com", [7; NONCE_BYTES]);
        assert!(!sealed.contains("ann"), "{sealed}");
        let event = erased("cus_1", Some(sealed.clone()));
        assert_eq!(open_contact(&event, &key(SECRET)), Ok(Some("ann@example.com".into())));
        // Through JSON and back, as the bus carries it.
        let read = DomainEvent::from_parts(CUSTOMER_ERASED, serde_json::from_str(&event.detail_json()).expect("json")).expect("parsed");
        assert_eq!(open_contact(&read, &key(SECRET)), Ok(Some("ann@example.com".into())));
        assert!(event.detail_json().contains(&sealed));
    }

    #[test]
    fn a_wrong_key_another_customer_or_a_changed_byte_does_not_open() {
        let id = CustomerId("cus_1".into());
        let sealed = seal_contact(&key(SECRET), &id, "ann@example.com", [7; NONCE_BYTES]);
        let other_key = key("fedcba9876543210fedcba9876543210fedcba9876543210");
        assert_eq!(
            open_contact(&erased("cus_1", Some(sealed.clone())), &other_key),
            Err(ContactError::Unreadable)
        );
        // Moved onto another customer's erasure.
        assert_eq!(
            open_contact(&erased("cus_2", Some(sealed.clone())), &key(SECRET)),
            Err(ContactError::Unreadable)
        );
        let mut bytes = base64::engine::general_purpose::STANDARD.decode(&sealed).expect("base64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(
            open_contact(&erased("cus_1", Some(tampered)), &key(SECRET)),
            Err(ContactError::Unreadable)
        );
        for garbage in ["", "not base64!", "AAAA"] {
            assert_eq!(
                open_contact(&erased("cus_1", Some(garbage.into())), &key(SECRET)),
                Err(ContactError::Unreadable)
            );
        }
    }

    #[test]
    fn two_seals_of_one_address_differ_with_their_nonces() {
        let id = CustomerId("cus_1".into());
        let a = seal_contact(&key(SECRET), &id, "ann@example.com", [1; NONCE_BYTES]);
        let b = seal_contact(&key(SECRET), &id, "ann@example.com", [2; NONCE_BYTES]);
        assert_ne!(a, b);
    }

    #[test]
    fn a_short_secret_makes_no_key() {
        assert_eq!(ContactKey::from_secret("short").err(), Some(ContactError::ShortSecret));
        assert_eq!(format!("{:?}", key(SECRET)), "ContactKey(…)");
    }

    #[test]
    fn an_erasure_without_a_sealed_contact_still_parses_and_opens_to_nothing() {
        let version_1 = serde_json::json!({"schema_version": 1, "customer_id": "cus_1", "erased_at": "2026-06-01T12:00:00Z"});
        let event = DomainEvent::from_parts(CUSTOMER_ERASED, version_1).expect("a version 1 erasure parses");
        assert_eq!(open_contact(&event, &key(SECRET)), Ok(None));
        // Without one, none is written either.
        assert!(!event.detail_json().contains(SEALED_CONTACT), "{}", event.detail_json());
    }

    #[test]
    fn scrubbing_leaves_the_ids_and_drops_the_sealed_contact() {
        let id = CustomerId("cus_1".into());
        let sealed = seal_contact(&key(SECRET), &id, "ann@example.com", [7; NONCE_BYTES]);
        let event = erased("cus_1", Some(sealed.clone()));
        let kept = scrubbed(&event);
        assert_eq!(kept.customer_id(), &id);
        assert_eq!(kept.event_id(), event.event_id(), "the same fact, the same id");
        assert!(!kept.detail_json().contains(&sealed));
        let mut envelope = serde_json::json!({"detail-type": CUSTOMER_ERASED, "detail": serde_json::from_str::<serde_json::Value>(&event.detail_json()).expect("json")});
        assert!(scrub_json(&mut envelope));
        assert!(!envelope.to_string().contains(&sealed));
        assert_eq!(envelope["detail"]["customer_id"], "cus_1");
        assert!(!scrub_json(&mut envelope), "nothing left to remove");
    }

    #[test]
    fn the_email_is_the_email_channels_identity() {
        let rules = Rules::default_rules();
        let identity = |channel: &str, handle: &str| Identity {
            channel: Channel::parse(channel).expect("a channel"),
            handle: handle.into(),
        };
        let identities = [identity("twitter", "ann"), identity("email", "ann@example.com")];
        assert_eq!(email_of(&identities, &rules), Some("ann@example.com"));
        assert_eq!(email_of(&identities[..1], &rules), None);
    }
}
