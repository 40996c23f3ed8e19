//! The key-encryption keys (KEKs) the companion may use, from the environment.
//!
//! A key is written `KEY_ID:BASE64`, the base64 (standard, padded) of 32 random bytes.
//! `SECRETS_ENCRYPTION_KEY` holds the primary key, which every new or re-encrypted
//! value is wrapped with; `SECRETS_ENCRYPTION_KEY_PREVIOUS` holds zero or more older
//! keys (separated by commas and/or whitespace) that stored values may still use.
//!
//! Everything is validated before any use, and errors name the variable and the key by
//! position and id, never by its material: a pasted key must not end up in a log.

use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::contract::summary::KeyIds;

/// The variable holding the primary key.
pub(crate) const PRIMARY_VAR: &str = "SECRETS_ENCRYPTION_KEY";
/// The variable holding older keys still accepted for decryption.
pub(crate) const PREVIOUS_VAR: &str = "SECRETS_ENCRYPTION_KEY_PREVIOUS";

/// Key length in bytes (AES-256).
pub(crate) const KEY_LEN: usize = 32;
/// Longest key id accepted; ids are labels, not data.
pub(crate) const MAX_ID_LEN: usize = 64;

const FORMAT_HINT: &str = "expected KEY_ID:BASE64, where KEY_ID is made of A-Z a-z 0-9 . _ - and \
     BASE64 is standard padded base64 of 32 random bytes (e.g. from `openssl rand -base64 32`)";

/// Whether `id` is a well-formed key id: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
/// Ids are shown in messages, so only such ids are ever echoed.
pub(crate) fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One key-encryption key. Its bytes live only inside the cipher; `Debug` shows the id.
#[derive(Clone)]
pub struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl Key {
    /// Parses `KEY_ID:BASE64`. The error carries the id only when the id is well formed.
    pub fn parse(spec: &str) -> Result<Key, KeyError> {
        let spec = spec.trim();
        let Some((id, encoded)) = spec.split_once(':') else {
            return Err(KeyError::new(None, KeyProblem::NoSeparator));
        };
        if id.is_empty() {
            return Err(KeyError::new(None, KeyProblem::EmptyId));
        }
        if !is_valid_id(id) {
            return Err(KeyError::new(None, KeyProblem::InvalidId));
        }
        let with_id = |problem| KeyError::new(Some(id.to_owned()), problem);
        if encoded.is_empty() {
            return Err(with_id(KeyProblem::EmptyKey));
        }
        let decoded = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .map_err(|_| with_id(KeyProblem::NotBase64))?,
        );
        let bytes: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(
            decoded
                .as_slice()
                .try_into()
                .map_err(|_| with_id(KeyProblem::WrongLength(decoded.len())))?,
        );
        Ok(Key::from_bytes(id, &bytes).expect("the id was validated above"))
    }

    /// A key from raw bytes, for callers that generate keys (tests, tooling).
    pub(crate) fn from_bytes(id: &str, bytes: &[u8; KEY_LEN]) -> Result<Key, KeyError> {
        if !is_valid_id(id) {
            return Err(KeyError::new(None, KeyProblem::InvalidId));
        }
        let cipher = Aes256Gcm::new_from_slice(bytes).expect("32 bytes is an AES-256 key");
        Ok(Key {
            id: id.to_owned(),
            cipher,
        })
    }

    /// The key's id, as written into every payload wrapped with it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The AES-256-GCM cipher keyed with this key.
    pub(crate) fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What is wrong with one key; never carries any of its material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    /// No `:` between id and key.
    NoSeparator,
    /// Nothing before the `:`.
    EmptyId,
    /// The id has characters outside `A-Z a-z 0-9 . _ -` or is too long.
    InvalidId,
    /// Nothing after the `:`.
    EmptyKey,
    /// The key part is not standard padded base64.
    NotBase64,
    /// The key decodes to this many bytes instead of 32.
    WrongLength(usize),
    /// The id is used by another key.
    DuplicateId,
    /// The primary key's id appears again among the previous keys.
    RepeatsPrimary,
    /// The primary variable holds more than one key.
    SeveralPrimaries,
    /// The variable is not set (or empty).
    Missing,
    /// The variable is not valid Unicode.
    NotUnicode,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::NoSeparator => write!(f, "no ':' between key id and key; {FORMAT_HINT}"),
            KeyProblem::EmptyId => write!(f, "the key id before ':' is empty; {FORMAT_HINT}"),
            KeyProblem::InvalidId => write!(
                f,
                "the key id has characters other than A-Z a-z 0-9 . _ - or is longer than \
                 {MAX_ID_LEN} characters (not shown); {FORMAT_HINT}"
            ),
            KeyProblem::EmptyKey => write!(f, "nothing after ':'; {FORMAT_HINT}"),
            KeyProblem::NotBase64 => write!(
                f,
                "the key is not valid standard padded base64 (not shown); {FORMAT_HINT}"
            ),
            KeyProblem::WrongLength(n) => {
                write!(f, "decodes to {n} bytes, expected {KEY_LEN}")
            }
            KeyProblem::DuplicateId => write!(f, "the same key id appears more than once"),
            KeyProblem::RepeatsPrimary => write!(
                f,
                "has the same id as {PRIMARY_VAR}; the primary key must not be listed again"
            ),
            KeyProblem::SeveralPrimaries => write!(
                f,
                "holds more than one key; keep only the primary here and put older keys in \
                 {PREVIOUS_VAR}"
            ),
            KeyProblem::Missing => write!(
                f,
                "is not set: set it to the primary key ({FORMAT_HINT}); on ECS the task \
                 definition injects it from Secrets Manager"
            ),
            KeyProblem::NotUnicode => write!(f, "is not valid Unicode (not shown)"),
        }
    }
}

/// A key that could not be accepted, named by its id when the id is well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key's id, if it could be read.
    pub id: Option<String>,
    /// What is wrong.
    pub problem: KeyProblem,
}

impl KeyError {
    fn new(id: Option<String>, problem: KeyProblem) -> Self {
        Self { id, problem }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "key {id}: {}", self.problem),
            None => write!(f, "{}", self.problem),
        }
    }
}

impl std::error::Error for KeyError {}

/// A keyring configuration error: which variable, which key (position from 1, id), what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringError {
    /// `SECRETS_ENCRYPTION_KEY` or `SECRETS_ENCRYPTION_KEY_PREVIOUS`.
    pub variable: &'static str,
    /// The key's position in a list variable, from 1.
    pub position: Option<usize>,
    /// The key's id, if it could be read.
    pub id: Option<String>,
    /// What is wrong.
    pub problem: KeyProblem,
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.variable)?;
        if let Some(position) = self.position {
            write!(f, ", key {position}")?;
        }
        if let Some(id) = &self.id {
            write!(f, " (id {id})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for KeyringError {}

impl KeyringError {
    fn new(variable: &'static str, position: Option<usize>, error: KeyError) -> Self {
        Self {
            variable,
            position,
            id: error.id,
            problem: error.problem,
        }
    }
}

/// The primary key and the previous keys, looked up by id when decrypting.
#[derive(Clone)]
pub struct Keyring {
    primary: Key,
    previous: Vec<Key>,
}

impl Keyring {
    /// Reads and validates `SECRETS_ENCRYPTION_KEY` and `SECRETS_ENCRYPTION_KEY_PREVIOUS`.
    /// Every problem names the variable and key; the caller decides the exit code.
    pub(crate) fn from_env() -> Result<Keyring, KeyringError> {
        let read = |variable: &'static str| match std::env::var(variable) {
            Ok(value) => Ok(Some(Zeroizing::new(value))),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(KeyringError::new(
                variable,
                None,
                KeyError::new(None, KeyProblem::NotUnicode),
            )),
        };
        let primary = read(PRIMARY_VAR)?;
        let previous = read(PREVIOUS_VAR)?;
        Keyring::parse(
            primary.as_deref().map_or("", String::as_str),
            previous.as_deref().map(String::as_str),
        )
    }

    /// Parses the two variables' values: `primary` is one key, `previous` a list
    /// separated by commas and/or whitespace.
    pub fn parse(primary: &str, previous: Option<&str>) -> Result<Keyring, KeyringError> {
        let primary_specs = split_keys(primary);
        let primary = match primary_specs.as_slice() {
            [] => {
                return Err(KeyringError::new(
                    PRIMARY_VAR,
                    None,
                    KeyError::new(None, KeyProblem::Missing),
                ));
            }
            [one] => Key::parse(one).map_err(|e| KeyringError::new(PRIMARY_VAR, None, e))?,
            _ => {
                return Err(KeyringError::new(
                    PRIMARY_VAR,
                    None,
                    KeyError::new(None, KeyProblem::SeveralPrimaries),
                ));
            }
        };
        let mut keys: Vec<Key> = Vec::new();
        for (index, spec) in split_keys(previous.unwrap_or("")).into_iter().enumerate() {
            let position = Some(index + 1);
            let key = Key::parse(spec).map_err(|e| KeyringError::new(PREVIOUS_VAR, position, e))?;
            let clash = if key.id == primary.id {
                Some(KeyProblem::RepeatsPrimary)
            } else if keys.iter().any(|k| k.id == key.id) {
                Some(KeyProblem::DuplicateId)
            } else {
                None
            };
            if let Some(problem) = clash {
                let error = KeyError::new(Some(key.id.clone()), problem);
                return Err(KeyringError::new(PREVIOUS_VAR, position, error));
            }
            keys.push(key);
        }
        Ok(Keyring {
            primary,
            previous: keys,
        })
    }

    /// A keyring of already-built keys; ids must be distinct.
    pub fn new(primary: Key, previous: Vec<Key>) -> Result<Keyring, KeyError> {
        let mut seen = vec![primary.id.as_str()];
        for key in &previous {
            if seen.contains(&key.id.as_str()) {
                return Err(KeyError::new(Some(key.id.clone()), KeyProblem::DuplicateId));
            }
            seen.push(&key.id);
        }
        Ok(Keyring { primary, previous })
    }

    /// The key new and re-encrypted values are wrapped with.
    pub fn primary(&self) -> &Key {
        &self.primary
    }

    /// The key with this id, primary or previous.
    pub fn get(&self, id: &str) -> Option<&Key> {
        std::iter::once(&self.primary)
            .chain(&self.previous)
            .find(|key| key.id == id)
    }

    /// The ids, for reporting; the only thing about keys that may be shown.
    pub fn ids(&self) -> KeyIds {
        KeyIds {
            primary: self.primary.id.clone(),
            previous: self.previous.iter().map(|k| k.id.clone()).collect(),
        }
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids())
            .finish_non_exhaustive()
    }
}

/// Splits a variable's value into key specs at commas and whitespace.
/// The key specs in a variable or secret value: separated by commas and/or whitespace.
pub(crate) fn split_keys(value: &str) -> Vec<&str> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "kek-v1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    const K2: &str = "kek-v2:ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q=";

    #[test]
    fn parses_primary_and_previous_lists() {
        let ring = Keyring::parse(K2, Some(&format!(" {K1}\n"))).unwrap();
        assert_eq!(ring.primary().id(), "kek-v2");
        assert!(ring.get("kek-v1").is_some());
        assert!(ring.get("kek-v3").is_none());
        assert_eq!(ring.ids().previous, vec!["kek-v1"]);
    }

    #[test]
    fn debug_shows_ids_only() {
        let ring = Keyring::parse(K2, Some(K1)).unwrap();
        let shown = format!("{ring:?} {:?}", ring.primary());
        assert!(shown.contains("kek-v2"));
        assert!(
            !shown.contains("ZWZn") && !shown.contains("AQID"),
            "{shown}"
        );
    }

    #[test]
    fn id_charset_is_enforced() {
        assert!(is_valid_id("kek-2025.01_a"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("kek v1"));
        assert!(!is_valid_id(&"a".repeat(65)));
    }
}
