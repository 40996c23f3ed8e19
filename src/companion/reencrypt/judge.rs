//! The verdict on one stored value: already on the primary key, re-wrapped and
//! verified (with the exact bytes to write), or undecryptable.

use crate::envelope::{Envelope, EnvelopeError};
use crate::keyring::Keyring;

/// What to do with one stored value.
pub(super) enum Verdict {
    /// Already on the primary key and decrypts: leave it.
    OnPrimary,
    /// Re-wrapped and verified: write this in place of the old value.
    Rewrap(Vec<u8>),
    /// Cannot be decrypted.
    Undecryptable(EnvelopeError),
}

/// Decides about one value: the key id it is under (if readable) and the verdict.
pub(super) fn judge(payload: &[u8], keyring: &Keyring) -> (Option<String>, Verdict) {
    let envelope = match Envelope::parse(payload) {
        Ok(envelope) => envelope,
        Err(error) => return (None, Verdict::Undecryptable(error)),
    };
    let key_id = Some(envelope.key_id().to_owned());
    let verdict = if envelope.key_id() == keyring.primary().id() {
        match envelope.open(keyring) {
            Ok(_) => Verdict::OnPrimary,
            Err(error) => Verdict::Undecryptable(error),
        }
    } else {
        match envelope.rewrap(keyring) {
            Ok(new) => Verdict::Rewrap(new),
            Err(error) => Verdict::Undecryptable(error),
        }
    };
    (key_id, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope;
    use crate::keyring::Keyring;

    const K1: &str = "kek-v1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    const K2: &str = "kek-v2:ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q=";

    #[test]
    fn values_are_judged_by_key_id_and_content() {
        let ring = Keyring::parse(K2, Some(K1)).unwrap();
        let on_old = envelope::encrypt(b"v", ring.get("kek-v1").unwrap()).unwrap();
        let on_new = envelope::encrypt(b"v", ring.primary()).unwrap();
        assert!(matches!(judge(&on_old, &ring), (Some(id), Verdict::Rewrap(_)) if id == "kek-v1"));
        assert!(matches!(judge(&on_new, &ring), (Some(id), Verdict::OnPrimary) if id == "kek-v2"));
        assert!(matches!(
            judge(b"plain", &ring),
            (None, Verdict::Undecryptable(_))
        ));
        let only_new = Keyring::parse(K2, None).unwrap();
        assert!(matches!(
            judge(&on_old, &only_new),
            (_, Verdict::Undecryptable(EnvelopeError::UnknownKeyId(_)))
        ));
    }
}
