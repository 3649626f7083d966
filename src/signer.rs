//! Signing and verification: Standard Webhooks (`webhook-*` headers) and WooCommerce's
//! `X-WC-Webhook-Signature`. Pure functions, no I/O.
//!
//! - Standard Webhooks: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")) where key is the
//!   base64-decoded part of `whsec_<base64>`.
//! - WooCommerce: base64(HMAC-SHA256(secret string as configured, body)).

use crate::error::{Error, Result};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
pub const WC_TOPIC: &str = "X-WC-Webhook-Topic";
pub const WC_RESOURCE: &str = "X-WC-Webhook-Resource";
pub const WC_EVENT: &str = "X-WC-Webhook-Event";
pub const WC_SIGNATURE: &str = "X-WC-Webhook-Signature";
pub const WC_DELIVERY_ID: &str = "X-WC-Webhook-Delivery-ID";
pub const WC_WEBHOOK_ID: &str = "X-WC-Webhook-ID";
pub const WC_SOURCE: &str = "X-WC-Webhook-Source";

const SECRET_PREFIX: &str = "whsec_";
const MIN_KEY: usize = 24;
const MAX_KEY: usize = 64;

/// Base64 as the reference libraries read it: with or without `=` padding, and non-zero trailing
/// bits in the last character allowed.
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A parsed signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The secret exactly as configured (`whsec_…`), the WooCommerce HMAC key.
    pub text: String,
    /// The decoded key bytes, the Standard Webhooks HMAC key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&mask(&self.text))
    }
}

impl Secret {
    /// Parses a signing secret: `whsec_<base64 of 24..64 bytes>` or the bare base64 (padding
    /// optional), as every Standard Webhooks library accepts.
    pub fn parse(text: &str) -> Result<Secret> {
        let s = Self::parse_any_length(text)?;
        if s.key.len() < MIN_KEY || s.key.len() > MAX_KEY {
            return Err(Error::config(format!(
                "secret {} decodes to {} bytes; use 24 to 64 random bytes",
                mask(text.trim()),
                s.key.len()
            )));
        }
        Ok(s)
    }

    /// Like [`Secret::parse`] without the length rule (a receiver verifies with whatever key its
    /// sender chose; the reference libraries accept any non-empty key).
    pub fn parse_any_length(text: &str) -> Result<Secret> {
        let text = text.trim();
        let b64 = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let malformed = |why: &str| {
            Error::config(format!(
                "malformed secret {}: {why}; use \"whsec_\" followed by base64 of 24 to 64 random bytes (generate one with: php -r 'echo \"whsec_\".base64_encode(random_bytes(32));'); in php.ini and -d quote the value: woosync.secret=\"whsec_…=\"",
                mask(text)
            ))
        };
        if b64.is_empty() {
            return Err(malformed("it is empty"));
        }
        let key = B64_LENIENT
            .decode(b64)
            .map_err(|_| malformed("it is not base64"))?;
        if key.is_empty() {
            return Err(malformed("it decodes to no bytes"));
        }
        Ok(Secret {
            text: text.to_string(),
            key,
        })
    }
}

/// Masks a secret for display: the prefix and last 4 characters only.
pub fn mask(secret: &str) -> String {
    if secret.is_empty() {
        return String::new();
    }
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if secret.chars().count() <= 12 {
        return "****".to_string();
    }
    let head = if secret.starts_with(SECRET_PREFIX) {
        SECRET_PREFIX
    } else {
        ""
    };
    format!("{head}****{tail}")
}

fn hmac_b64(key: &[u8], parts: &[&[u8]]) -> String {
    // HMAC accepts keys of any length, so new_from_slice cannot fail here.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    for p in parts {
        mac.update(p);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// One Standard Webhooks signature: `v1,<base64>`.
pub fn sign(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    format!(
        "v1,{}",
        hmac_b64(
            &secret.key,
            &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]
        )
    )
}

/// The `webhook-signature` value for several secrets (rotation): space-separated `v1,` entries.
pub fn signature_header(secrets: &[&Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// WooCommerce's `X-WC-Webhook-Signature`: base64(HMAC-SHA256(secret text, body)).
pub fn wc_signature(secret: &Secret, body: &[u8]) -> String {
    hmac_b64(secret.text.as_bytes(), &[body])
}

/// WooCommerce's `X-WC-Webhook-Signature` with another hash (its
/// `woocommerce_webhook_hash_algorithm` filter): base64(hash_hmac(algo, body, key, true)).
pub fn wc_signature_with(algo: crate::config::HashAlgorithm, key: &[u8], body: &[u8]) -> String {
    use crate::config::HashAlgorithm as H;
    macro_rules! mac {
        ($d:ty) => {
            match <Hmac<$d> as KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(body);
                    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
                }
                Err(_) => String::new(),
            }
        };
    }
    match algo {
        H::Md5 => mac!(md5::Md5),
        H::Sha1 => mac!(sha1::Sha1),
        H::Sha224 => mac!(sha2::Sha224),
        H::Sha256 => mac!(sha2::Sha256),
        H::Sha384 => mac!(sha2::Sha384),
        H::Sha512 => mac!(sha2::Sha512),
    }
}

/// Receiver-side Standard Webhooks check. `headers` are (name, value) pairs, names compared
/// case-insensitively. Returns Ok(false) for a bad or stale signature, Err for a malformed secret.
pub fn verify(
    body: &[u8],
    headers: &[(String, String)],
    secret: &str,
    tolerance_seconds: i64,
    now: i64,
) -> Result<bool> {
    let secret = Secret::parse_any_length(secret)?;
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let (Some(id), Some(ts), Some(sigs)) =
        (get(HEADER_ID), get(HEADER_TIMESTAMP), get(HEADER_SIGNATURE))
    else {
        return Ok(false);
    };
    let Ok(ts_num) = ts.parse::<i64>() else {
        return Ok(false);
    };
    // Widened arithmetic: a timestamp near i64::MIN must not wrap into "recent".
    let skew = (i128::from(now) - i128::from(ts_num)).abs();
    if tolerance_seconds < 0 || skew > i128::from(tolerance_seconds) {
        return Ok(false);
    }
    let expected = sign(&secret, id, ts_num, body);
    let expected_b64 = expected.as_bytes().get(3..).unwrap_or_default();
    let mut ok = false;
    for candidate in sigs.split(' ').filter(|s| !s.is_empty()) {
        if let Some(b64) = candidate.strip_prefix("v1,") {
            // Compare decoded bytes so that padding differences do not matter.
            let a = B64_LENIENT.decode(b64).unwrap_or_default();
            let b = B64_LENIENT.decode(expected_b64).unwrap_or_default();
            if !a.is_empty() && bool::from(a.ct_eq(&b)) {
                ok = true;
            }
        }
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vector from the Standard Webhooks reference implementations.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn reference_vector() {
        let s = Secret::parse(SECRET).unwrap();
        assert_eq!(sign(&s, ID, TS, BODY), SIG);
    }

    fn hdrs(id: &str, ts: i64, sig: &str) -> Vec<(String, String)> {
        vec![
            ("Webhook-Id".into(), id.into()),
            ("WEBHOOK-TIMESTAMP".into(), ts.to_string()),
            ("webhook-signature".into(), sig.into()),
        ]
    }

    #[test]
    fn verifies_and_rejects() {
        assert!(verify(BODY, &hdrs(ID, TS, SIG), SECRET, 300, TS + 10).unwrap());
        assert!(!verify(b"{}", &hdrs(ID, TS, SIG), SECRET, 300, TS).unwrap());
        assert!(!verify(BODY, &hdrs(ID, TS, SIG), SECRET, 300, TS + 301).unwrap());
        assert!(!verify(BODY, &hdrs(ID, TS, SIG), SECRET, 300, TS - 301).unwrap());
        let multi = format!("v1,AAAA {SIG} v2,zzz");
        assert!(verify(BODY, &hdrs(ID, TS, &multi), SECRET, 300, TS).unwrap());
        let unpadded = SECRET.trim_end_matches('=');
        assert!(verify(BODY, &hdrs(ID, TS, SIG), unpadded, 300, TS).unwrap());
        assert!(verify(BODY, &[], SECRET, 300, TS).is_ok_and(|v| !v));
        assert!(verify(BODY, &hdrs(ID, TS, SIG), "!!!", 300, TS).is_err());
        assert!(verify(BODY, &hdrs(ID, TS, SIG), "", 300, TS).is_err());
        // The bare base64 key, as every reference library accepts.
        assert!(verify(BODY, &hdrs(ID, TS, SIG), &SECRET[6..], 300, TS).unwrap());
        // A timestamp that cannot be compared with now is refused, whatever the tolerance.
        // now - 2^63 (the reported case), and the smallest timestamps.
        for ts in [TS + i64::MIN, i64::MIN, i64::MIN + 1] {
            let sig = sign(&Secret::parse(SECRET).unwrap(), ID, ts, BODY);
            for tol in [0, 300, i64::MAX] {
                assert!(
                    !verify(BODY, &hdrs(ID, ts, &sig), SECRET, tol, TS).unwrap(),
                    "{ts} {tol}"
                );
            }
        }
        // Partial signatures.
        for partial in ["v1,", &SIG[..8], "v1,dawfeoifkpqwoekfpqoekf"] {
            assert!(!verify(BODY, &hdrs(ID, TS, partial), SECRET, 300, TS).unwrap());
        }
    }

    #[test]
    fn binary_body() {
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let sec = Secret::parse(&secret).unwrap();
        let body = [0xffu8, 0x00, 0xfe, b'x'];
        let sig = sign(&sec, "evt_1", 5, &body);
        assert!(verify(&body, &hdrs("evt_1", 5, &sig), &secret, 10, 5).unwrap());
    }

    #[test]
    fn secret_rules() {
        assert!(Secret::parse("whsec_c2hvcnQ=").is_err()); // 5 bytes
        assert!(Secret::parse("abc").is_err());
        assert!(Secret::parse("whsec_!!!").is_err());
        let long = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([1u8; 65])
        );
        assert!(Secret::parse(&long).is_err());
        assert_eq!(
            mask("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "whsec_****LaSw"
        );
        assert!(!format!("{:?}", Secret::parse(SECRET).unwrap()).contains("MfKQ"));
        // Unpadded with non-zero trailing bits (the reference libraries' own test secret).
        let a = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr").unwrap();
        let b = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr==").unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.key.len(), 25);
        // Without the prefix: same key; the text (WooCommerce's HMAC key) stays as configured.
        let bare = Secret::parse(&SECRET[6..]).unwrap();
        assert_eq!(bare.key, Secret::parse(SECRET).unwrap().key);
        assert_eq!(bare.text, &SECRET[6..]);
        // Short keys: refused for signing, accepted for verifying.
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS").is_err());
        assert_eq!(
            Secret::parse_any_length("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS")
                .unwrap()
                .key
                .len(),
            23
        );
    }

    #[test]
    fn woocommerce_signature_matches_php_formula() {
        // php -r 'echo base64_encode(hash_hmac("sha256", "{\"a\":1}", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true));'
        let s = Secret::parse(SECRET).unwrap();
        let sig = wc_signature(&s, b"{\"a\":1}");
        assert_eq!(sig, "RewDsrM0A8gEOpDeBr7a0IJxg5JxFf1+RI75fusTxb4=");
    }

    #[test]
    fn woocommerce_signature_with_other_hashes_matches_php() {
        use crate::config::HashAlgorithm as H;
        // php -r 'foreach (["md5","sha1","sha224","sha256","sha384","sha512"] as $a) echo base64_encode(hash_hmac($a, "{\"a\":1}", "k&y", true)), "\n";'
        let k = b"k&y";
        let b = b"{\"a\":1}";
        let got: Vec<String> = [H::Md5, H::Sha1, H::Sha224, H::Sha256, H::Sha384, H::Sha512]
            .iter()
            .map(|a| wc_signature_with(*a, k, b))
            .collect();
        assert_eq!(
            got,
            vec![
                "KHz2qedge4FcP2gvtafD/Q==",
                "rHWSNusiLnwt1ArXpz4uZq9ZY7I=",
                "u1sGxQ0YlJ2NkGwGCadB27V3UVGLnPDYWjMSwQ==",
                "ByFMA3IxhIesIEsFKywYV2RDExcVbDDg1VMyoRrkrNA=",
                "/7jEuQCmkAa0hKoYsCfo1NUMuEEDfnT/q02ujAJBlkXpnVWA5eupzlhuW2W6iNcC",
                "EbxOMoVUbqewSuXzbDH/sMvKeaD71Oy1j7EkjLks8ATquW+FE/6OiKx7zq+S7q9Litp5CKCBD4d7YO67fzTNvw==",
            ]
        );
    }

    #[test]
    fn rotation_header_has_both() {
        let a = Secret::parse(SECRET).unwrap();
        let b = Secret::parse(&format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([9u8; 24])
        ))
        .unwrap();
        let h = signature_header(&[&a, &b], ID, TS, BODY);
        assert!(h.starts_with(SIG));
        assert_eq!(h.split(' ').count(), 2);
    }
}
