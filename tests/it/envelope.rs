//! Payload format v1 against vectors from an independent implementation, both ways,
//! tampering, re-wrapping, and keyring validation.

use crate::common::{KEK_V1, KEK_V2};
use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use everruns_admin::envelope::{self, Envelope, EnvelopeError, Layer};
use everruns_admin::keyring::{Key, Keyring};
use serde_json::Value;

const FIXTURE: &str = include_str!("../fixtures/envelope-v1.json");

struct Case {
    key: String,
    plaintext: String,
    payload: String,
}

fn fixture() -> (Value, Vec<Case>) {
    let doc: Value = serde_json::from_str(FIXTURE).unwrap();
    let cases = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            key: c["key"].as_str().unwrap().to_owned(),
            plaintext: c["plaintext"].as_str().unwrap().to_owned(),
            payload: c["payload"].as_str().unwrap().to_owned(),
        })
        .collect();
    (doc, cases)
}

fn fixture_key(id: &str) -> String {
    fixture().0["keys"][id].as_str().unwrap().to_owned()
}

/// Primary kek-v2, previous kek-v1.
fn ring() -> Keyring {
    Keyring::parse(&fixture_key("kek-v2"), Some(&fixture_key("kek-v1"))).unwrap()
}

/// Decrypts a payload the way the format describes it, without the project's code.
fn independent_decrypt(payload: &[u8], key_spec: &str) -> Vec<u8> {
    let doc: Value = serde_json::from_slice(payload).unwrap();
    let object = doc.as_object().unwrap();
    let names: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "alg",
            "ciphertext",
            "dek_wrapped",
            "key_id",
            "nonce",
            "version"
        ]
    );
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["alg"], "AES-256-GCM");
    let (id, key_b64) = key_spec.split_once(':').unwrap();
    assert_eq!(doc["key_id"], id);
    let kek = STANDARD.decode(key_b64).unwrap();
    let b64 = |field: &str| STANDARD.decode(doc[field].as_str().unwrap()).unwrap();
    let wrapped = b64("dek_wrapped");
    assert_eq!(wrapped.len(), 12 + 32 + 16);
    let nonce = b64("nonce");
    assert_eq!(nonce.len(), 12);
    let ciphertext = b64("ciphertext");
    let kek = Aes256Gcm::new_from_slice(&kek).unwrap();
    let wrap_nonce: [u8; 12] = wrapped[..12].try_into().unwrap();
    let dek = kek
        .decrypt(&Nonce::from(wrap_nonce), &wrapped[12..])
        .unwrap();
    assert_eq!(dek.len(), 32);
    let data_nonce: [u8; 12] = nonce.try_into().unwrap();
    Aes256Gcm::new_from_slice(&dek)
        .unwrap()
        .decrypt(&Nonce::from(data_nonce), ciphertext.as_slice())
        .unwrap()
}

#[test]
fn every_fixture_vector_decrypts_with_its_key() {
    let (_, cases) = fixture();
    assert!(cases.len() >= 5);
    let ring = ring();
    for case in &cases {
        let key = Key::parse(&case.key).unwrap();
        let alone = Keyring::new(key, Vec::new()).unwrap();
        let plaintext = envelope::decrypt(case.payload.as_bytes(), &alone).unwrap();
        assert_eq!(&plaintext[..], case.plaintext.as_bytes());
        let plaintext = envelope::decrypt(case.payload.as_bytes(), &ring).unwrap();
        assert_eq!(&plaintext[..], case.plaintext.as_bytes());
    }
}

#[test]
fn what_the_project_writes_is_readable_by_the_format_description() {
    let (_, cases) = fixture();
    for case in &cases {
        let key = Key::parse(&case.key).unwrap();
        let payload = envelope::encrypt(case.plaintext.as_bytes(), &key).unwrap();
        let text = std::str::from_utf8(&payload).unwrap();
        assert!(
            text.starts_with("{\"version\":1,\"alg\":\"AES-256-GCM\",\"key_id\":"),
            "field order and compact form as in the fixture"
        );
        assert_eq!(
            independent_decrypt(&payload, &case.key),
            case.plaintext.as_bytes()
        );
        // The fixture's own payloads pass the same checks, so the checker is sound.
        assert_eq!(
            independent_decrypt(case.payload.as_bytes(), &case.key),
            case.plaintext.as_bytes()
        );
    }
}

#[test]
fn every_value_gets_fresh_randomness() {
    let key = Key::parse(&fixture_key("kek-v1")).unwrap();
    let a = Envelope::parse(&envelope::encrypt(b"same", &key).unwrap()).unwrap();
    let b = Envelope::parse(&envelope::encrypt(b"same", &key).unwrap()).unwrap();
    assert_ne!(a.nonce(), b.nonce());
    assert_ne!(a.dek_wrapped()[..12], b.dek_wrapped()[..12]);
    assert_ne!(a.ciphertext(), b.ciphertext());
}

fn with_field(payload: &str, field: &str, value: Value) -> Vec<u8> {
    let mut doc: Value = serde_json::from_str(payload).unwrap();
    doc[field] = value;
    serde_json::to_vec(&doc).unwrap()
}

fn flip_b64(payload: &str, field: &str, index: usize) -> Vec<u8> {
    let doc: Value = serde_json::from_str(payload).unwrap();
    let mut bytes = STANDARD.decode(doc[field].as_str().unwrap()).unwrap();
    let at = index.min(bytes.len() - 1);
    bytes[at] ^= 0x01;
    with_field(payload, field, Value::from(STANDARD.encode(bytes)))
}

#[test]
fn tampering_with_each_field_fails_with_its_own_error() {
    let (_, cases) = fixture();
    let case = &cases[0];
    let ring = ring();
    let p = case.payload.as_str();
    let fails = |bytes: Vec<u8>| envelope::decrypt(&bytes, &ring).unwrap_err();

    assert!(matches!(
        fails(with_field(p, "version", Value::from(2))),
        EnvelopeError::UnsupportedVersion(v) if v == "2"
    ));
    assert!(matches!(
        fails(with_field(p, "alg", Value::from("AES-128-GCM"))),
        EnvelopeError::UnsupportedAlgorithm(a) if a == "AES-128-GCM"
    ));
    assert_eq!(
        fails(with_field(p, "key_id", Value::from("kek-v0"))),
        EnvelopeError::UnknownKeyId("kek-v0".into())
    );
    assert_eq!(
        fails(with_field(p, "key_id", Value::from("kek-v2"))),
        EnvelopeError::Authentication(Layer::DataKey)
    );
    for index in [0, 12, 59] {
        assert_eq!(
            fails(flip_b64(p, "dek_wrapped", index)),
            EnvelopeError::Authentication(Layer::DataKey),
            "dek_wrapped byte {index}"
        );
    }
    assert_eq!(
        fails(flip_b64(p, "nonce", 3)),
        EnvelopeError::Authentication(Layer::Data)
    );
    for index in [0, 1000] {
        assert_eq!(
            fails(flip_b64(p, "ciphertext", index)),
            EnvelopeError::Authentication(Layer::Data),
            "ciphertext byte {index}"
        );
    }
    for field in ["dek_wrapped", "nonce", "ciphertext"] {
        assert!(
            matches!(fails(with_field(p, field, Value::from("!!not base64!!"))),
                EnvelopeError::Malformed { field: f, .. } if f == field),
            "{field}"
        );
        assert!(
            matches!(fails(with_field(p, field, Value::from("AAAA"))),
                EnvelopeError::Malformed { field: f, .. } if f == field),
            "{field} too short"
        );
        assert!(
            matches!(fails(with_field(p, field, Value::from(7))),
                EnvelopeError::Malformed { field: f, .. } if f == field),
            "{field} not a string"
        );
    }
    assert_eq!(
        fails(b"sk-test-api-key-12345".to_vec()),
        EnvelopeError::NotJson
    );
    assert_eq!(fails(Vec::new()), EnvelopeError::NotJson);
    assert_eq!(
        fails(b"\"sk-test-api-key-12345\"".to_vec()).kind(),
        "not_payload"
    );
    assert_eq!(
        fails(with_field(p, "extra", Value::from(1))).kind(),
        "not_payload"
    );
    let mut doc: Value = serde_json::from_str(p).unwrap();
    doc.as_object_mut().unwrap().remove("nonce");
    let missing = fails(serde_json::to_vec(&doc).unwrap());
    assert_eq!(missing.kind(), "not_payload");
    assert!(missing.to_string().contains("nonce"), "{missing}");
}

#[test]
fn error_messages_never_quote_content_or_keys() {
    let (_, cases) = fixture();
    let ring = ring();
    let secret = "sk-live-DO-NOT-PRINT";
    let inputs: Vec<Vec<u8>> = vec![
        secret.as_bytes().to_vec(),
        format!("\"{secret}\"").into_bytes(),
        format!("{{\"{secret}\":1}}").into_bytes(),
        with_field(&cases[0].payload, "alg", Value::from(secret)),
        with_field(
            &cases[0].payload,
            "key_id",
            Value::from(format!("{secret} x")),
        ),
        with_field(&cases[0].payload, "version", Value::from(secret)),
        with_field(&cases[0].payload, "nonce", Value::from(secret)),
        flip_b64(&cases[0].payload, "ciphertext", 0),
    ];
    for input in inputs {
        let error = envelope::decrypt(&input, &ring).unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("DO-NOT-PRINT"), "{shown}");
        assert!(!shown.contains(&cases[0].plaintext), "{shown}");
        for id in ["kek-v1", "kek-v2"] {
            let material = fixture_key(id);
            assert!(
                !shown.contains(material.split_once(':').unwrap().1),
                "{shown}"
            );
        }
    }
}

#[test]
fn rewrap_keeps_the_data_and_changes_only_the_wrapping() {
    let (_, cases) = fixture();
    let ring = ring();
    for case in cases.iter().filter(|c| c.key.starts_with("kek-v1:")) {
        let before = Envelope::parse(case.payload.as_bytes()).unwrap();
        let after_bytes = envelope::rewrap(case.payload.as_bytes(), &ring).unwrap();
        let after = Envelope::parse(&after_bytes).unwrap();
        assert_eq!(before.key_id(), "kek-v1");
        assert_eq!(after.key_id(), "kek-v2");
        assert_eq!(after.nonce(), before.nonce());
        assert_eq!(after.ciphertext(), before.ciphertext());
        assert_ne!(after.dek_wrapped(), before.dek_wrapped());
        let old: Value = serde_json::from_str(&case.payload).unwrap();
        let new: Value = serde_json::from_slice(&after_bytes).unwrap();
        assert_eq!(old["nonce"], new["nonce"]);
        assert_eq!(old["ciphertext"], new["ciphertext"]);
        assert_eq!(
            independent_decrypt(&after_bytes, &fixture_key("kek-v2")),
            case.plaintext.as_bytes()
        );
    }
    // Rewrapping twice gives a fresh wrap nonce each time.
    let once = envelope::rewrap(cases[0].payload.as_bytes(), &ring).unwrap();
    let twice = envelope::rewrap(&once, &ring).unwrap();
    assert_ne!(
        Envelope::parse(&once).unwrap().dek_wrapped()[..12],
        Envelope::parse(&twice).unwrap().dek_wrapped()[..12]
    );
}

#[test]
fn rewrap_refuses_what_it_cannot_authenticate() {
    let (_, cases) = fixture();
    let ring = ring();
    let tampered = flip_b64(&cases[0].payload, "ciphertext", 2);
    assert_eq!(
        envelope::rewrap(&tampered, &ring).unwrap_err(),
        EnvelopeError::Authentication(Layer::Data)
    );
    let only_new = Keyring::parse(&fixture_key("kek-v2"), None).unwrap();
    assert_eq!(
        envelope::rewrap(cases[0].payload.as_bytes(), &only_new).unwrap_err(),
        EnvelopeError::UnknownKeyId("kek-v1".into())
    );
}

const SHORT_B64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHw=="; // 31 bytes
const LONG_B64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAh"; // 33 bytes

/// Every way a key can be malformed: (primary, previous, words the message must have).
fn malformed_keys() -> Vec<(String, Option<String>, Vec<&'static str>)> {
    vec![
        (
            String::new(),
            None,
            vec!["SECRETS_ENCRYPTION_KEY", "not set"],
        ),
        (
            "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".into(),
            None,
            vec!["SECRETS_ENCRYPTION_KEY:", "no ':'"],
        ),
        (
            ":AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".into(),
            None,
            vec!["SECRETS_ENCRYPTION_KEY:", "empty"],
        ),
        (
            "kek/v1!:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".into(),
            None,
            vec!["SECRETS_ENCRYPTION_KEY:", "key id has characters"],
        ),
        ("kek-v2:".into(), None, vec!["(id kek-v2)", "nothing after"]),
        (
            "kek-v2:AQIDBAUGBwgJ$$$$DQ4PEBESExQVFhcYGRobHB0eHyA=".into(),
            None,
            vec!["SECRETS_ENCRYPTION_KEY (id kek-v2)", "base64"],
        ),
        (
            format!("kek-v2:{SHORT_B64}"),
            None,
            vec![
                "SECRETS_ENCRYPTION_KEY (id kek-v2)",
                "decodes to 31 bytes, expected 32",
            ],
        ),
        (
            format!("kek-v2:{LONG_B64}"),
            None,
            vec!["decodes to 33 bytes, expected 32"],
        ),
        (
            format!("{KEK_V2},{KEK_V1}"),
            None,
            vec!["SECRETS_ENCRYPTION_KEY", "more than one key"],
        ),
        (
            KEK_V2.into(),
            Some(format!("{KEK_V1}, kek-v0:{SHORT_B64}")),
            vec![
                "SECRETS_ENCRYPTION_KEY_PREVIOUS, key 2 (id kek-v0): decodes to 31 bytes, expected 32",
            ],
        ),
        (
            KEK_V2.into(),
            Some(format!("{KEK_V1}\n{KEK_V1}")),
            vec![
                "SECRETS_ENCRYPTION_KEY_PREVIOUS, key 2 (id kek-v1)",
                "more than once",
            ],
        ),
        (
            KEK_V2.into(),
            Some(format!("{KEK_V1} {KEK_V2}")),
            vec![
                "SECRETS_ENCRYPTION_KEY_PREVIOUS, key 2 (id kek-v2)",
                "same id as",
            ],
        ),
        (
            KEK_V2.into(),
            Some("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".into()),
            vec!["SECRETS_ENCRYPTION_KEY_PREVIOUS, key 1:", "no ':'"],
        ),
    ]
}

#[test]
fn malformed_keys_are_errors_that_name_the_key_but_not_its_material() {
    for (primary, previous, expected) in malformed_keys() {
        let error = Keyring::parse(&primary, previous.as_deref()).unwrap_err();
        let shown = format!("{error} {error:?}");
        for words in expected {
            assert!(shown.contains(words), "{words:?} missing from: {shown}");
        }
        for material in [
            "AQIDBAUGBwgJ",
            "ZWZnaGlqa2xt",
            "DQ4PEBESExQV",
            "$$$$",
            "kek/v1!",
        ] {
            assert!(!shown.contains(material), "{material:?} shown in: {shown}");
        }
    }
}

#[test]
fn previous_keys_may_be_separated_by_commas_and_whitespace() {
    let k3 = format!("kek-v3:{}", STANDARD.encode([7u8; 32]));
    let ring = Keyring::parse(
        &format!("  {k3}\n"),
        Some(&format!("{KEK_V1},\n {KEK_V2} ,")),
    )
    .unwrap();
    let ids = ring.ids();
    assert_eq!(ids.primary, "kek-v3");
    assert_eq!(ids.previous, vec!["kek-v1", "kek-v2"]);
    assert!(
        Keyring::parse(KEK_V2, Some("  \n"))
            .unwrap()
            .ids()
            .previous
            .is_empty()
    );
}
