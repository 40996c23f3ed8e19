//! Envelope encryption of stored secrets, payload format v1.
//!
//! Each value gets a fresh data key (DEK). The value is encrypted with the DEK, and the
//! DEK is encrypted ("wrapped") with a key-encryption key (KEK) from the [`Keyring`].
//! Rotating the KEK therefore only re-wraps 60 bytes per value; the data ciphertext
//! stays as it is. Stored as JSON bytes (BYTEA), exactly:
//!
//! `{"version":1,"alg":"AES-256-GCM","key_id":ID,"dek_wrapped":B64,"nonce":B64,"ciphertext":B64}`
//!
//! with standard padded base64; `dek_wrapped` = `nonce(12) || AES-256-GCM(KEK, DEK)`
//! (tag included), `nonce` = the data nonce, `ciphertext` = `AES-256-GCM(DEK, plaintext)`
//! with its tag. No associated data.
//!
//! Errors never quote a payload's content, a key or a plaintext: they name the field
//! and the problem, which is all an operator needs and all a log may hold.

use std::borrow::Cow;
use std::fmt;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::keyring::{Key, Keyring, is_valid_id};

/// The only payload version this build reads and writes.
pub(crate) const VERSION: u64 = 1;
/// The only algorithm of version 1.
pub(crate) const ALGORITHM: &str = "AES-256-GCM";
/// AES-GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Data key length.
pub(crate) const DEK_LEN: usize = 32;
/// Length of `dek_wrapped` once decoded: wrap nonce, wrapped DEK, tag.
pub(crate) const WRAPPED_DEK_LEN: usize = NONCE_LEN + DEK_LEN + TAG_LEN;

/// Algorithm names that may be echoed in an error; anything else might be content.
const KNOWN_ALGORITHMS: [&str; 8] = [
    "AES-128-GCM",
    "AES-192-GCM",
    "AES-256-GCM-SIV",
    "AES-256-CBC",
    "AES-256-CTR",
    "CHACHA20-POLY1305",
    "XCHACHA20-POLY1305",
    "A256GCM",
];

const FIELDS: [&str; 6] = [
    "version",
    "alg",
    "key_id",
    "dek_wrapped",
    "nonce",
    "ciphertext",
];

/// Which encryption failed to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// Unwrapping the data key with the KEK named by `key_id`.
    DataKey,
    /// Decrypting the value with the data key.
    Data,
}

/// Why a payload could not be read, written or re-wrapped. Messages never contain key
/// bytes, plaintext or payload content.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes are not JSON (e.g. a plaintext or another encoding was stored).
    NotJson,
    /// JSON, but not an envelope payload; says what is missing or extra.
    NotPayload(String),
    /// A payload version this build does not know (shown only if it is a small number).
    UnsupportedVersion(String),
    /// An algorithm other than AES-256-GCM (shown only if it looks like a name).
    UnsupportedAlgorithm(String),
    /// The payload names a key id that is not in the keyring.
    UnknownKeyId(String),
    /// Authentication failed: wrong key for this id, or the payload was altered.
    Authentication(Layer),
    /// A field has the wrong type, bad base64 or a wrong length.
    Malformed {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The operating system's random source failed.
    Random,
    /// Encryption itself failed (plaintext beyond AES-GCM's limit).
    Encryption,
    /// A re-wrapped value did not decrypt to the original plaintext: nothing is written.
    Verification,
}

impl EnvelopeError {
    /// A stable short code for reports and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            EnvelopeError::NotJson => "not_json",
            EnvelopeError::NotPayload(_) => "not_payload",
            EnvelopeError::UnsupportedVersion(_) => "unsupported_version",
            EnvelopeError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            EnvelopeError::UnknownKeyId(_) => "unknown_key_id",
            EnvelopeError::Authentication(_) => "authentication_failed",
            EnvelopeError::Malformed { .. } => "malformed",
            EnvelopeError::Random => "random_source_failed",
            EnvelopeError::Encryption => "encryption_failed",
            EnvelopeError::Verification => "verification_failed",
        }
    }

    fn malformed(field: &'static str, problem: impl Into<String>) -> Self {
        EnvelopeError::Malformed {
            field,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::NotJson => write!(f, "not JSON, so not an envelope payload"),
            EnvelopeError::NotPayload(why) => write!(f, "not an envelope payload: {why}"),
            EnvelopeError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported payload version {v} (this build reads version {VERSION})"
                )
            }
            EnvelopeError::UnsupportedAlgorithm(alg) => {
                write!(
                    f,
                    "unsupported algorithm {alg} (version 1 uses {ALGORITHM})"
                )
            }
            EnvelopeError::UnknownKeyId(id) => write!(
                f,
                "key id {id} is in neither SECRETS_ENCRYPTION_KEY nor SECRETS_ENCRYPTION_KEY_PREVIOUS"
            ),
            EnvelopeError::Authentication(Layer::DataKey) => write!(
                f,
                "the data key failed authentication: the key with this id is not the one it was \
                 wrapped with, or dek_wrapped was altered"
            ),
            EnvelopeError::Authentication(Layer::Data) => write!(
                f,
                "the value failed authentication: nonce or ciphertext was altered"
            ),
            EnvelopeError::Malformed { field, problem } => write!(f, "field {field}: {problem}"),
            EnvelopeError::Random => write!(f, "the operating system's random source failed"),
            EnvelopeError::Encryption => write!(f, "AES-256-GCM encryption failed"),
            EnvelopeError::Verification => write!(
                f,
                "the re-wrapped value did not decrypt to the original; it was not used"
            ),
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// A parsed payload: which KEK wrapped its data key, and the encrypted parts.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    key_id: String,
    dek_wrapped: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Format v1 on the wire, both ways: written in this field order, and read with exactly
/// these six fields, strings borrowed from the payload unless they hold escapes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    version: u64,
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow)]
    key_id: Cow<'a, str>,
    #[serde(borrow)]
    dek_wrapped: Cow<'a, str>,
    #[serde(borrow)]
    nonce: Cow<'a, str>,
    #[serde(borrow)]
    ciphertext: Cow<'a, str>,
}

impl Envelope {
    /// Encrypts `plaintext` under a fresh data key wrapped with `key`.
    pub(crate) fn seal(plaintext: &[u8], key: &Key) -> Result<Envelope, EnvelopeError> {
        let dek = Zeroizing::new(random::<DEK_LEN>()?);
        let nonce = fresh_nonce()?;
        let data_cipher = Aes256Gcm::new_from_slice(&dek[..]).expect("32-byte data key");
        let mut ciphertext = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        ciphertext.extend_from_slice(plaintext);
        data_cipher
            .encrypt_in_place(&Nonce::from(nonce), b"", &mut *ciphertext)
            .map_err(|_| EnvelopeError::Encryption)?;
        Ok(Envelope {
            key_id: key.id().to_owned(),
            dek_wrapped: wrap_dek(&dek, key)?,
            nonce,
            ciphertext: std::mem::take(&mut *ciphertext),
        })
    }

    /// Parses payload bytes, checking structure, version, algorithm, base64 and lengths.
    ///
    /// A well-formed v1 payload is read straight into its six fields; anything else
    /// goes through an untyped JSON value, only to say exactly what is wrong. Both end in
    /// the same checks of the field contents.
    pub fn parse(payload: &[u8]) -> Result<Envelope, EnvelopeError> {
        match serde_json::from_slice::<Wire<'_>>(payload) {
            Ok(wire) if wire.version == VERSION && wire.alg == ALGORITHM => Envelope::from_fields(
                &wire.key_id,
                &wire.dek_wrapped,
                &wire.nonce,
                &wire.ciphertext,
            ),
            _ => Envelope::parse_untyped(payload),
        }
    }

    /// The slow path of [`Envelope::parse`]: whatever is wrong, named without content.
    fn parse_untyped(payload: &[u8]) -> Result<Envelope, EnvelopeError> {
        let value: Value = serde_json::from_slice(payload).map_err(|_| EnvelopeError::NotJson)?;
        let Value::Object(object) = value else {
            return Err(EnvelopeError::NotPayload(
                "the JSON is not an object".to_owned(),
            ));
        };
        let missing: Vec<&str> = FIELDS
            .iter()
            .copied()
            .filter(|field| !object.contains_key(*field))
            .collect();
        if missing.len() == FIELDS.len() {
            return Err(EnvelopeError::NotPayload(
                "none of the payload fields is present".to_owned(),
            ));
        }
        match &object.get("version") {
            Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
            Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v < 1000) => {
                return Err(EnvelopeError::UnsupportedVersion(n.to_string()));
            }
            Some(_) => {
                return Err(EnvelopeError::UnsupportedVersion(
                    "(not a small whole number, not shown)".to_owned(),
                ));
            }
            None => {}
        }
        if !missing.is_empty() {
            return Err(EnvelopeError::NotPayload(format!(
                "missing field(s) {}",
                missing.join(", ")
            )));
        }
        if object.len() > FIELDS.len() {
            return Err(EnvelopeError::NotPayload(format!(
                "{} field(s) beyond the six of version 1 (names not shown)",
                object.len() - FIELDS.len()
            )));
        }
        let text = |field: &'static str| match &object[field] {
            Value::String(s) => Ok(s.as_str()),
            _ => Err(EnvelopeError::malformed(field, "is not a string")),
        };
        let alg = text("alg")?;
        if alg != ALGORITHM {
            let shown = if KNOWN_ALGORITHMS.contains(&alg) {
                alg.to_owned()
            } else {
                "(not a known algorithm name, not shown)".to_owned()
            };
            return Err(EnvelopeError::UnsupportedAlgorithm(shown));
        }
        Envelope::from_fields(
            text("key_id")?,
            text("dek_wrapped")?,
            text("nonce")?,
            text("ciphertext")?,
        )
    }

    /// Checks and decodes the four fields that vary, whichever path read them.
    fn from_fields(
        key_id: &str,
        dek_wrapped: &str,
        nonce: &str,
        ciphertext: &str,
    ) -> Result<Envelope, EnvelopeError> {
        if !is_valid_id(key_id) {
            return Err(EnvelopeError::malformed(
                "key_id",
                "is not a key id (A-Z a-z 0-9 . _ -, 1 to 64 characters; not shown)",
            ));
        }
        let dek_wrapped = decode("dek_wrapped", dek_wrapped)?;
        if dek_wrapped.len() != WRAPPED_DEK_LEN {
            return Err(EnvelopeError::malformed(
                "dek_wrapped",
                format!(
                    "decodes to {} bytes, expected {WRAPPED_DEK_LEN}",
                    dek_wrapped.len()
                ),
            ));
        }
        let nonce_bytes = decode("nonce", nonce)?;
        let nonce: [u8; NONCE_LEN] = nonce_bytes.as_slice().try_into().map_err(|_| {
            EnvelopeError::malformed(
                "nonce",
                format!(
                    "decodes to {} bytes, expected {NONCE_LEN}",
                    nonce_bytes.len()
                ),
            )
        })?;
        let ciphertext = decode("ciphertext", ciphertext)?;
        if ciphertext.len() < TAG_LEN {
            return Err(EnvelopeError::malformed(
                "ciphertext",
                format!(
                    "decodes to {} bytes, shorter than the {TAG_LEN}-byte tag",
                    ciphertext.len()
                ),
            ));
        }
        Ok(Envelope {
            key_id: key_id.to_owned(),
            dek_wrapped,
            nonce,
            ciphertext,
        })
    }

    /// The payload bytes, in the field order and encoding of format v1.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&Wire {
            version: VERSION,
            alg: Cow::Borrowed(ALGORITHM),
            key_id: Cow::Borrowed(&self.key_id),
            dek_wrapped: Cow::Owned(STANDARD.encode(&self.dek_wrapped)),
            nonce: Cow::Owned(STANDARD.encode(self.nonce)),
            ciphertext: Cow::Owned(STANDARD.encode(&self.ciphertext)),
        })
        .expect("a payload always serializes")
    }

    /// The id of the KEK that wraps this value's data key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The decoded `dek_wrapped`: wrap nonce, wrapped data key and tag.
    pub fn dek_wrapped(&self) -> &[u8] {
        &self.dek_wrapped
    }

    /// The data nonce.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// The data ciphertext with its tag.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// Decrypts with the key named by `key_id`, authenticating both layers.
    pub fn open(&self, keyring: &Keyring) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let dek = self.unwrap_dek(keyring)?;
        decrypt_data(&dek, &self.nonce, &self.ciphertext)
    }

    /// Re-wraps the data key with the keyring's primary key (fresh wrap nonce), keeping
    /// the data nonce and ciphertext. The original is authenticated in full first, and
    /// the result is parsed back from its payload bytes, decrypted and compared with the
    /// original plaintext; those same bytes are returned, so what is written is exactly
    /// what was verified.
    pub fn rewrap(&self, keyring: &Keyring) -> Result<Vec<u8>, EnvelopeError> {
        let dek = self.unwrap_dek(keyring)?;
        let plaintext = decrypt_data(&dek, &self.nonce, &self.ciphertext)?;
        let primary = keyring.primary();
        let rewrapped = Envelope {
            key_id: primary.id().to_owned(),
            dek_wrapped: wrap_dek(&dek, primary)?,
            nonce: self.nonce,
            ciphertext: self.ciphertext.clone(),
        };
        let bytes = rewrapped.to_bytes();
        let stored = Envelope::parse(&bytes)?;
        match stored.open(keyring) {
            Ok(check) if check == plaintext && stored == rewrapped => Ok(bytes),
            _ => Err(EnvelopeError::Verification),
        }
    }

    fn unwrap_dek(&self, keyring: &Keyring) -> Result<Zeroizing<[u8; DEK_LEN]>, EnvelopeError> {
        let kek = keyring
            .get(&self.key_id)
            .ok_or_else(|| EnvelopeError::UnknownKeyId(self.key_id.clone()))?;
        let (wrap_nonce, wrapped) = self.dek_wrapped.split_at(NONCE_LEN);
        let mut buffer = Zeroizing::new(wrapped.to_vec());
        let wrap_nonce: [u8; NONCE_LEN] = wrap_nonce.try_into().expect("length checked on parse");
        kek.cipher()
            .decrypt_in_place(&Nonce::from(wrap_nonce), b"", &mut *buffer)
            .map_err(|_| EnvelopeError::Authentication(Layer::DataKey))?;
        let dek: [u8; DEK_LEN] = buffer.as_slice().try_into().map_err(|_| {
            EnvelopeError::malformed("dek_wrapped", "wraps a data key of the wrong length")
        })?;
        Ok(Zeroizing::new(dek))
    }
}

/// Encrypts `plaintext` with `key` into payload bytes (format v1).
pub fn encrypt(plaintext: &[u8], key: &Key) -> Result<Vec<u8>, EnvelopeError> {
    Envelope::seal(plaintext, key).map(|envelope| envelope.to_bytes())
}

/// Decrypts payload bytes with the key its `key_id` names.
pub fn decrypt(payload: &[u8], keyring: &Keyring) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    Envelope::parse(payload)?.open(keyring)
}

/// Re-wraps payload bytes under the keyring's primary key; see [`Envelope::rewrap`].
pub fn rewrap(payload: &[u8], keyring: &Keyring) -> Result<Vec<u8>, EnvelopeError> {
    Envelope::parse(payload)?.rewrap(keyring)
}

fn wrap_dek(dek: &[u8; DEK_LEN], kek: &Key) -> Result<Vec<u8>, EnvelopeError> {
    let wrap_nonce = fresh_nonce()?;
    let mut wrapped = Vec::with_capacity(WRAPPED_DEK_LEN);
    wrapped.extend_from_slice(&wrap_nonce);
    wrapped.extend_from_slice(dek);
    let mut sealed = Zeroizing::new(wrapped.split_off(NONCE_LEN));
    kek.cipher()
        .encrypt_in_place(&Nonce::from(wrap_nonce), b"", &mut *sealed)
        .map_err(|_| EnvelopeError::Encryption)?;
    wrapped.extend_from_slice(&sealed);
    Ok(wrapped)
}

fn decrypt_data(
    dek: &[u8; DEK_LEN],
    nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let cipher = Aes256Gcm::new_from_slice(dek).expect("32-byte data key");
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_in_place(&Nonce::from(*nonce), b"", &mut *buffer)
        .map_err(|_| EnvelopeError::Authentication(Layer::Data))?;
    Ok(buffer)
}

fn decode(field: &'static str, text: &str) -> Result<Vec<u8>, EnvelopeError> {
    STANDARD
        .decode(text)
        .map_err(|_| EnvelopeError::malformed(field, "is not valid standard padded base64"))
}

/// Nonces drawn from the operating system's random source in bulk: one system call
/// for many values instead of one per value (a tenth of a re-encryption's CPU time went
/// to that call). Each nonce is handed out once; nonces are public, and data keys still
/// come from [`random`] one by one.
const NONCES_PER_DRAW: usize = 256;

struct NoncePool {
    bytes: [u8; NONCE_LEN * NONCES_PER_DRAW],
    /// Where the next unused nonce starts; `bytes.len()` when all are used.
    next: usize,
}

thread_local! {
    static NONCES: std::cell::RefCell<NoncePool> = const {
        std::cell::RefCell::new(NoncePool {
            bytes: [0; NONCE_LEN * NONCES_PER_DRAW],
            next: NONCE_LEN * NONCES_PER_DRAW,
        })
    };
}

fn fresh_nonce() -> Result<[u8; NONCE_LEN], EnvelopeError> {
    NONCES.with_borrow_mut(|pool| {
        if pool.next == pool.bytes.len() {
            getrandom::fill(&mut pool.bytes).map_err(|_| EnvelopeError::Random)?;
            pool.next = 0;
        }
        let nonce: [u8; NONCE_LEN] = pool.bytes[pool.next..pool.next + NONCE_LEN]
            .try_into()
            .expect("a whole nonce");
        pool.next += NONCE_LEN;
        Ok(nonce)
    })
}

fn random<const N: usize>() -> Result<[u8; N], EnvelopeError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| EnvelopeError::Random)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::parse(
            "kek-v2:ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q=",
            Some("kek-v1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="),
        )
        .unwrap()
    }

    #[test]
    fn escaped_and_reordered_fields_parse_as_the_canonical_bytes_do() {
        let ring = ring();
        let payload = encrypt(b"hello", ring.primary()).unwrap();
        let canonical = Envelope::parse(&payload).unwrap();
        let text = String::from_utf8(payload).unwrap();
        // Another writer may escape '/' and order the fields differently: still v1.
        let value: Value = serde_json::from_str(&text).unwrap();
        let mut fields: Vec<(String, Value)> =
            value.as_object().unwrap().clone().into_iter().collect();
        fields.reverse();
        let reordered = serde_json::Value::Object(fields.into_iter().collect()).to_string();
        let escaped = text.replace('/', "\\/").replace("kek-v2", "kek\\u002dv2");
        for other in [reordered, escaped] {
            assert_eq!(
                Envelope::parse(other.as_bytes()).unwrap(),
                canonical,
                "{other}"
            );
        }
    }

    #[test]
    fn nonces_from_the_pool_are_never_handed_out_twice() {
        let draws = NONCES_PER_DRAW * 3 + 7;
        let nonces: std::collections::HashSet<[u8; NONCE_LEN]> =
            (0..draws).map(|_| fresh_nonce().unwrap()).collect();
        assert_eq!(nonces.len(), draws);
    }

    #[test]
    fn round_trips_and_rewraps() {
        let ring = ring();
        let old = ring.get("kek-v1").unwrap();
        let payload = encrypt(b"hello", old).unwrap();
        assert_eq!(&decrypt(&payload, &ring).unwrap()[..], b"hello");
        let new = rewrap(&payload, &ring).unwrap();
        let envelope = Envelope::parse(&new).unwrap();
        assert_eq!(envelope.key_id(), "kek-v2");
        assert_eq!(&decrypt(&new, &ring).unwrap()[..], b"hello");
    }

    #[test]
    fn not_json_and_not_payload_are_told_apart() {
        let ring = ring();
        assert_eq!(decrypt(b"sk-plain", &ring), Err(EnvelopeError::NotJson));
        assert_eq!(
            decrypt(b"\"sk-plain\"", &ring).unwrap_err().kind(),
            "not_payload"
        );
        assert_eq!(
            decrypt(b"{\"a\":1}", &ring).unwrap_err().kind(),
            "not_payload"
        );
    }
}
