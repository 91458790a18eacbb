//! SHA-256 digests of credentials (tenant keys, the admin token), so that the runtime config
//! never holds one in plaintext and a presented credential is checked in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of a credential. `Debug` hides it: an unsalted digest of a short key can be
/// brute-forced, so it is treated like the key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// One SHA-256 of a short key costs about 200 ns, once per request: small next to the
    /// ~30 us Pingora spends per proxied request (README, "Performance").
    pub fn of(key: &str) -> KeyDigest {
        KeyDigest(Sha256::digest(key.as_bytes()).into())
    }

    /// The first 8 bytes, as a hash-map key. Nobody can choose a key whose digest starts with
    /// a given prefix, so looking it up reveals nothing through timing; `matches` then
    /// confirms the whole digest.
    pub fn prefix(&self) -> u64 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(head)
    }

    /// Whether both digests are equal, in time that does not depend on where they differ.
    pub fn matches(&self, other: &KeyDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

#[cfg(test)]
impl KeyDigest {
    /// A digest with chosen bytes, to test what no real key would produce (shared prefixes).
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> KeyDigest {
        KeyDigest(bytes)
    }
}

impl std::fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyDigest(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha256_and_compares_whole() {
        let d = KeyDigest::of("abc");
        // FIPS 180-2's test vector for "abc".
        assert_eq!(
            d.prefix().to_le_bytes(),
            [0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea]
        );
        assert!(d.matches(&KeyDigest::of("abc")));
        assert!(!d.matches(&KeyDigest::of("abd")));
        let mut same_prefix = d.clone();
        same_prefix.0[31] ^= 1;
        assert_eq!(same_prefix.prefix(), d.prefix());
        assert!(!d.matches(&same_prefix));
        assert_eq!(format!("{d:?}"), "KeyDigest(***)");
    }
}
