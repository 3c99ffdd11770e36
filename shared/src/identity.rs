//! Who a customer is on a channel: `(channel, handle)`, with handles normalized per channel
//! so that `@Ada`, `ada` and ` ADA ` on the same social network are one identity.

use serde::{Deserialize, Serialize};
use std::fmt;

pub const MAX_CHANNEL_LEN: usize = 32;
pub const MAX_HANDLE_LEN: usize = 256;

/// A channel name: lowercase `[a-z0-9_-]{1,32}` (`email`, `twitter`, `forum`, `events`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Channel(String);

impl Channel {
    pub fn parse(text: &str) -> Result<Channel, IdentityError> {
        let valid = !text.is_empty()
            && text.len() <= MAX_CHANNEL_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Channel(text.to_string()))
        } else {
            Err(IdentityError::InvalidChannel)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Channel {
    type Error = IdentityError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Channel::parse(&value)
    }
}

impl From<Channel> for String {
    fn from(channel: Channel) -> String {
        channel.0
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How handles on a channel are made comparable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HandleStyle {
    /// Trimmed and lower-cased; must look like `local@domain`.
    Email,
    /// Trimmed, one leading `@` stripped, case folded (`@Ada` == `ada`).
    #[default]
    Social,
    /// Trimmed; spaces, dots, dashes and brackets removed (`+44 (20) 7946-0000`).
    Phone,
    /// Trimmed only: ids from systems where case matters (CRM or billing ids).
    Exact,
}

/// Why a channel or handle was refused. The message is the reason a client reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("must be 1..32 characters of a-z, 0-9, '_' or '-'")]
    InvalidChannel,
    #[error("must not be empty")]
    EmptyHandle,
    #[error("must be at most 256 characters")]
    HandleTooLong,
    #[error("must not contain control characters")]
    ControlCharacters,
    #[error("not an email address")]
    NotAnEmail,
    #[error("not a phone number")]
    NotAPhoneNumber,
}

/// Normalizes a handle for its channel's style.
pub fn normalize_handle(style: HandleStyle, raw: &str) -> Result<String, IdentityError> {
    let trimmed = raw.trim();
    if trimmed.chars().any(char::is_control) {
        return Err(IdentityError::ControlCharacters);
    }
    let handle = match style {
        HandleStyle::Email => {
            let lowered = trimmed.to_lowercase();
            let (local, domain) = lowered.split_once('@').ok_or(IdentityError::NotAnEmail)?;
            if local.is_empty() || domain.is_empty() || domain.contains('@') || lowered.contains(' ') {
                return Err(IdentityError::NotAnEmail);
            }
            lowered
        }
        HandleStyle::Social => trimmed.strip_prefix('@').unwrap_or(trimmed).trim().to_lowercase(),
        HandleStyle::Phone => {
            let kept: String = trimmed.chars().filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')')).collect();
            let digits = kept.strip_prefix('+').unwrap_or(&kept);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(IdentityError::NotAPhoneNumber);
            }
            kept
        }
        HandleStyle::Exact => trimmed.to_string(),
    };
    if handle.is_empty() {
        return Err(IdentityError::EmptyHandle);
    }
    if handle.chars().count() > MAX_HANDLE_LEN {
        return Err(IdentityError::HandleTooLong);
    }
    Ok(handle)
}

/// One way of recognizing a customer: a handle on a channel, already normalized.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub channel: Channel,
    pub handle: String,
}

impl Identity {
    /// Builds an identity, normalizing the handle with the given style.
    pub fn new(channel: Channel, style: HandleStyle, handle: &str) -> Result<Identity, IdentityError> {
        Ok(Identity {
            channel,
            handle: normalize_handle(style, handle)?,
        })
    }

    /// A stable text key, `channel:handle`, for storage keys.
    pub fn key(&self) -> String {
        format!("{}:{}", self.channel, self.handle)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.channel, self.handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_lowercase_words() {
        assert!(Channel::parse("email").is_ok());
        assert!(Channel::parse("meetup_events-2").is_ok());
        assert_eq!(Channel::parse("Email"), Err(IdentityError::InvalidChannel));
        assert_eq!(Channel::parse(""), Err(IdentityError::InvalidChannel));
        assert_eq!(Channel::parse(&"a".repeat(33)), Err(IdentityError::InvalidChannel));
    }

    #[test]
    fn handles_are_normalized_per_channel_style() {
        assert_eq!(
            normalize_handle(HandleStyle::Email, "  Ada@Example.COM "),
            Ok("ada@example.com".into())
        );
        assert_eq!(normalize_handle(HandleStyle::Email, "ada"), Err(IdentityError::NotAnEmail));
        assert_eq!(normalize_handle(HandleStyle::Social, "@AdaLovelace"), Ok("adalovelace".into()));
        assert_eq!(normalize_handle(HandleStyle::Social, " @ "), Err(IdentityError::EmptyHandle));
        assert_eq!(
            normalize_handle(HandleStyle::Phone, "+44 (20) 7946-0000"),
            Ok("+442079460000".into())
        );
        assert_eq!(normalize_handle(HandleStyle::Exact, " cus_AbC "), Ok("cus_AbC".into()));
        assert_eq!(normalize_handle(HandleStyle::Exact, "   "), Err(IdentityError::EmptyHandle));
    }
}
