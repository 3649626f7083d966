//! Endpoint secrets at rest: sealed with AES-256-GCM under the key from `woosync.key`, so a copied
//! or exposed outbox file does not leak them. Without a key they are stored as is (and
//! `woosync_status()` says so). Stored form: `enc:v1:<base64(nonce ‖ ciphertext ‖ tag)>`, with the
//! endpoint name as associated data (a sealed secret cannot be moved to another endpoint).

use crate::error::{quote, Error, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;

const PREFIX: &str = "enc:v1:";

/// The 32-byte storage key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreKey([u8; 32]);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(****)")
    }
}

impl StoreKey {
    /// Parses `woosync.key`: 64 hex characters or base64 of 32 bytes; empty means no key.
    pub fn parse(text: &str) -> Result<Option<StoreKey>> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(None);
        }
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect::<Vec<u8>>()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| Error::config("woosync.key must be 64 hex characters or base64 of 32 bytes (e.g. php -r 'echo bin2hex(random_bytes(32));')"))?
        };
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::config("woosync.key must decode to exactly 32 bytes (64 hex characters)")
        })?;
        Ok(Some(StoreKey(arr)))
    }

    /// Short fingerprint for display (never the key).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(self.0);
        d.iter().take(4).map(|b| format!("{b:02x}")).collect()
    }
}

pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// Seals `secret` for endpoint `name` (stored as is without a key; empty stays empty).
pub fn seal(key: Option<&StoreKey>, name: &str, secret: &str) -> Result<String> {
    let Some(key) = key else {
        return Ok(secret.to_string());
    };
    if secret.is_empty() {
        return Ok(String::new());
    }
    let cipher =
        Aes256Gcm::new_from_slice(&key.0).map_err(|_| Error::config("invalid woosync.key"))?;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce)
        .map_err(|e| Error::storage(format!("no randomness for sealing a secret: {e}")))?;
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: secret.as_bytes(),
                aad: name.as_bytes(),
            },
        )
        .map_err(|_| Error::storage("cannot seal the endpoint secret"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(out)
    ))
}

/// Opens a stored secret. Plain values pass through; sealed ones need the key they were sealed with.
pub fn open(key: Option<&StoreKey>, name: &str, stored: &str) -> Result<String> {
    let Some(b64) = stored.strip_prefix(PREFIX) else {
        return Ok(stored.to_string());
    };
    let key = key.ok_or_else(|| {
        Error::config(format!("the secret of endpoint {} is encrypted in the outbox; set woosync.key (the same key it was saved with)", quote(name)))
    })?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| {
            Error::storage(format!(
                "the stored secret of endpoint {} is damaged",
                quote(name)
            ))
        })?;
    if raw.len() < 12 + 16 {
        return Err(Error::storage(format!(
            "the stored secret of endpoint {} is damaged",
            quote(name)
        )));
    }
    let cipher =
        Aes256Gcm::new_from_slice(&key.0).map_err(|_| Error::config("invalid woosync.key"))?;
    let pt = cipher
        .decrypt(Nonce::from_slice(&raw[..12]), Payload { msg: &raw[12..], aad: name.as_bytes() })
        .map_err(|_| {
            Error::config(format!(
                "cannot decrypt the secret of endpoint {}: woosync.key differs from the key it was saved with (save the endpoint again with its secret)",
                quote(name)
            ))
        })?;
    String::from_utf8(pt).map_err(|_| {
        Error::storage(format!(
            "the stored secret of endpoint {} is damaged",
            quote(name)
        ))
    })
}

/// Opens a stored secret with the first of `keys` that fits (plain values pass through).
pub fn open_any(keys: &[StoreKey], name: &str, stored: &str) -> Result<String> {
    let mut last = None;
    for k in keys {
        match open(Some(k), name, stored) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e),
        None => open(None, name, stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_failures() {
        let k = StoreKey::parse(&"ab".repeat(32)).unwrap().unwrap();
        let other = StoreKey::parse(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
            .unwrap()
            .unwrap();
        let sealed = seal(Some(&k), "crm", "whsec_abc").unwrap();
        assert!(is_sealed(&sealed) && !sealed.contains("whsec_abc"));
        assert_ne!(
            sealed,
            seal(Some(&k), "crm", "whsec_abc").unwrap(),
            "random nonce"
        );
        assert_eq!(open(Some(&k), "crm", &sealed).unwrap(), "whsec_abc");
        assert!(open(Some(&other), "crm", &sealed).is_err());
        assert!(
            open(Some(&k), "other", &sealed).is_err(),
            "bound to the endpoint name"
        );
        assert!(open(None, "crm", &sealed).is_err());
        assert_eq!(open(None, "crm", "whsec_plain").unwrap(), "whsec_plain");
        assert_eq!(seal(None, "crm", "whsec_plain").unwrap(), "whsec_plain");
        assert!(StoreKey::parse("").unwrap().is_none());
        assert!(StoreKey::parse("short").is_err());
        assert_ne!(k.fingerprint(), other.fingerprint());
        assert_eq!(
            open_any(&[other.clone(), k.clone()], "crm", &sealed).unwrap(),
            "whsec_abc"
        );
        assert!(open_any(&[other], "crm", &sealed).is_err());
        assert!(open_any(&[], "crm", &sealed).is_err());
        assert_eq!(open_any(&[], "crm", "whsec_plain").unwrap(), "whsec_plain");
    }
}
