//! The signing key set: a JWKS document parsed key by key into verification keys indexed by `kid`.

use std::collections::HashMap;

use jsonwebtoken::{DecodingKey, DecodingKeyKind};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Below this modulus size (bytes) a key is too weak to trust, whatever the JWKS says.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// sha256 of a key's modulus and exponent: tells whether a `kid` still names the same key material
/// after a refresh, which is what a cached token's verification relied on.
pub(crate) type KeyFingerprint = [u8; 32];

/// One verification key, parsed once when the JWKS is fetched.
struct SigningKey {
    key: DecodingKey,
    fingerprint: KeyFingerprint,
}

/// Verification keys by `kid`; only RSA signing keys usable with RS256 make it in.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: HashMap<String, SigningKey>,
}

impl KeySet {
    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid).map(|signing| &signing.key)
    }

    pub fn fingerprint(&self, kid: &str) -> Option<&KeyFingerprint> {
        self.keys.get(kid).map(|signing| &signing.fingerprint)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Only the members we judge a key by; Entra adds `x5c`, `x5t`, `issuer`, which serde ignores.
#[derive(Debug, Deserialize)]
struct RawJwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    alg: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// What parsing a JWKS document produced: the usable keys and how many were passed over.
pub(crate) struct ParsedKeySet {
    pub key_set: KeySet,
    pub skipped: usize,
}

/// Parses key by key so one odd entry cannot take the whole set down.
pub(crate) fn parse_jwks(document: &serde_json::Value) -> Result<ParsedKeySet, String> {
    let entries = document
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| "the document has no `keys` array".to_string())?;
    let mut keys = HashMap::new();
    let mut skipped = 0;
    for entry in entries {
        match usable_key(entry) {
            Some((kid, key)) if !keys.contains_key(&kid) => {
                keys.insert(kid, key);
            }
            _ => skipped += 1,
        }
    }
    Ok(ParsedKeySet {
        key_set: KeySet { keys },
        skipped,
    })
}

fn usable_key(entry: &serde_json::Value) -> Option<(String, SigningKey)> {
    let raw = RawJwk::deserialize(entry).ok()?;
    if raw.kty.as_deref() != Some("RSA") {
        return None;
    }
    if raw
        .key_use
        .as_deref()
        .is_some_and(|key_use| key_use != "sig")
    {
        return None;
    }
    if raw.alg.as_deref().is_some_and(|alg| alg != "RS256") {
        return None;
    }
    let kid = raw.kid.filter(|kid| !kid.is_empty())?;
    let key = DecodingKey::from_rsa_components(raw.n.as_deref()?, raw.e.as_deref()?).ok()?;
    let fingerprint = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            let modulus_bytes = n.iter().skip_while(|byte| **byte == 0).count();
            if modulus_bytes < MIN_RSA_MODULUS_BYTES || e.is_empty() {
                return None;
            }
            // The length prefix keeps (n, e) pairs from colliding by shifting bytes between them.
            let mut hasher = Sha256::new();
            hasher.update((n.len() as u64).to_be_bytes());
            hasher.update(n);
            hasher.update(e);
            hasher.finalize().into()
        }
        DecodingKeyKind::SecretOrDer(_) => return None,
    };
    Some((kid, SigningKey { key, fingerprint }))
}
