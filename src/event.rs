//! The event model: ids, topics, time stamps and the JSON envelope that is sent.
//!
//! The envelope is built once, at dispatch, and stored; every attempt sends the same bytes:
//! `{"id":"evt_…","type":"<topic>","timestamp":"<RFC 3339>","key":<key|null>,"sequence":<n>,"data":<payload>}`.

use crate::error::{quote, Error, Result};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest accepted ordering key, in bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// Longest accepted topic, in bytes.
pub const MAX_TOPIC_BYTES: usize = 128;

/// Seconds since the Unix epoch, with sub-second precision.
pub fn now() -> f64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(_) => 0.0,
    }
}

/// Checks a topic against `^[a-z0-9_]+(\.[a-z0-9_]+)+$`.
pub fn validate_topic(topic: &str) -> Result<()> {
    let ok_chars = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let parts: Vec<&str> = topic.split('.').collect();
    if topic.len() <= MAX_TOPIC_BYTES && parts.len() >= 2 && parts.iter().all(|p| ok_chars(p)) {
        Ok(())
    } else {
        Err(Error::input(format!(
            "invalid topic {}: use lower-case dotted words such as \"product.stock_updated\" (pattern ^[a-z0-9_]+(\\.[a-z0-9_]+)+$, at most {} bytes)",
            quote(topic), MAX_TOPIC_BYTES
        )))
    }
}

/// Checks an ordering key: non-empty, at most 255 bytes, no control characters.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(|c| c.is_control()) {
        return Err(Error::input(format!(
            "invalid key {}: use a non-empty string of at most {} bytes without control characters, such as \"product:42\"",
            quote(key), MAX_KEY_BYTES
        )));
    }
    Ok(())
}

/// Splits a topic at its first dot: `order.status_changed` → (`order`, `status_changed`).
pub fn resource_and_event(topic: &str) -> (&str, &str) {
    match topic.split_once('.') {
        Some((r, e)) => (r, e),
        None => (topic, ""),
    }
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn random_u128() -> u128 {
    let mut buf = [0u8; 16];
    if getrandom::fill(&mut buf).is_err() {
        // Fall back to time and address entropy; ids stay unique through the monotonic counter.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let addr = &buf as *const _ as usize as u128;
        return t ^ (addr << 64) ^ (std::process::id() as u128) << 32;
    }
    u128::from_le_bytes(buf)
}

/// Last ULID issued by this process (ms, random part), for monotonic ids within one millisecond.
static LAST_ULID: Mutex<(u64, u128)> = Mutex::new((0, 0));

/// A new ULID (48-bit millisecond time, 80 random bits), monotonic within this process.
pub fn new_ulid() -> String {
    const MASK80: u128 = (1u128 << 80) - 1;
    let now_ms = (now() * 1000.0) as u64;
    // 79 random bits leave room to count up within one millisecond; within the same millisecond
    // the previous id plus one is used (no system call for randomness on that path).
    let (ms, rand) = match LAST_ULID.lock() {
        Ok(mut last) => {
            let next = if now_ms <= last.0 {
                (last.0, (last.1 + 1) & MASK80)
            } else {
                (now_ms, random_u128() & (MASK80 >> 1))
            };
            *last = next;
            next
        }
        Err(_) => (now_ms, random_u128() & (MASK80 >> 1)),
    };
    let value: u128 = ((ms as u128 & 0xFFFF_FFFF_FFFF) << 80) | rand;
    let mut out = String::with_capacity(26);
    for i in 0..26 {
        let shift = 125 - 5 * i;
        let idx = if shift >= 0 {
            (value >> shift) & 0x1f
        } else {
            0
        };
        out.push(CROCKFORD[idx as usize] as char);
    }
    out
}

/// A new event id: `evt_` followed by a ULID.
pub fn new_event_id() -> String {
    format!("evt_{}", new_ulid())
}

/// Bits of the rowid an event id of a SQLite outbox carries (see [`with_rowid`]).
pub const ID_ROWID_BITS: u32 = 40;

/// Crockford base-32 value of one id character.
fn crockford_value(b: u8) -> Option<u64> {
    CROCKFORD.iter().position(|c| *c == b).map(|v| v as u64)
}

/// The event id `id` (made by [`new_event_id`]) rewritten to carry the event's rowid: the
/// ULID's time part is kept, the first 40 of its 80 random bits become the rowid, the other 40
/// stay random. A SQLite outbox finds such an event by its rowid (no index on ids, one page less
/// per dispatch). Within a millisecond, ids of one outbox sort in commit order. None when the
/// rowid does not fit (the id is then stored as it is and found through the index of such ids).
pub fn with_rowid(id: &str, rowid: i64) -> Option<String> {
    if !is_event_id(id) || !(1..1i64 << ID_ROWID_BITS).contains(&rowid) {
        return None;
    }
    let mut out = String::with_capacity(30);
    out.push_str(&id[..14]);
    for i in (0..8).rev() {
        out.push(CROCKFORD[((rowid >> (5 * i)) & 0x1f) as usize] as char);
    }
    out.push_str(&id[22..]);
    Some(out)
}

/// The rowid an event id would carry if it was made by [`with_rowid`] (whether it was is known
/// only by comparing with the row's own id).
pub fn rowid_in(id: &str) -> Option<i64> {
    if !is_event_id(id) {
        return None;
    }
    let mut v: u64 = 0;
    for b in id[14..22].bytes() {
        v = v * 32 + crockford_value(b)?;
    }
    Some(v as i64)
}

/// Checks the shape of an event id given by a user.
pub fn is_event_id(id: &str) -> bool {
    id.len() == 30 && id.starts_with("evt_") && id[4..].bytes().all(|b| CROCKFORD.contains(&b))
}

/// Converts days since 1970-01-01 to (year, month, day) (Howard Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 UTC time with milliseconds, e.g. `2026-11-23T16:45:28.123Z`.
pub fn rfc3339(unix: f64) -> String {
    let total_ms = (unix * 1000.0).floor() as i64;
    let secs = total_ms.div_euclid(1000);
    let ms = total_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        y,
        mo,
        d,
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        ms
    )
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The stored form of one event, ready to insert.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Full body as sent.
    pub body: String,
    /// Byte offset where the `data` value starts in `body` (it ends one byte before the end).
    pub data_offset: usize,
}

/// Where the event id sits in an envelope made by [`envelope_template`] (right after
/// `{"id":"`; an event id is 30 characters that JSON does not escape). A SQLite outbox rewrites it
/// there once the event's rowid is known.
pub const ENVELOPE_ID_AT: std::ops::Range<usize> = 7..37;

/// The envelope around already-encoded JSON `data`, split where the sequence number goes (it is
/// only known in the storing transaction): `head` + sequence + `tail`.
pub struct EnvelopeTemplate {
    pub head: String,
    pub tail: String,
    /// Where `data` starts within `tail`.
    pub tail_data_offset: usize,
}

pub fn envelope_template(
    id: &str,
    topic: &str,
    created_at: f64,
    key: Option<&str>,
    data: &str,
) -> EnvelopeTemplate {
    let mut head = String::with_capacity(160);
    head.push_str("{\"id\":");
    push_json_str(&mut head, id);
    head.push_str(",\"type\":");
    push_json_str(&mut head, topic);
    head.push_str(",\"timestamp\":\"");
    head.push_str(&rfc3339(created_at));
    head.push_str("\",\"key\":");
    match key {
        Some(k) => push_json_str(&mut head, k),
        None => head.push_str("null"),
    }
    head.push_str(",\"sequence\":");
    let mut tail = String::with_capacity(data.len() + 10);
    tail.push_str(",\"data\":");
    let tail_data_offset = tail.len();
    tail.push_str(data);
    tail.push('}');
    EnvelopeTemplate {
        head,
        tail,
        tail_data_offset,
    }
}

/// Builds the envelope around already-encoded JSON `data`.
pub fn build_envelope(
    id: &str,
    topic: &str,
    created_at: f64,
    key: Option<&str>,
    sequence: i64,
    data: &str,
) -> Envelope {
    let t = envelope_template(id, topic, created_at, key, data);
    let n = sequence.to_string();
    let data_offset = t.head.len() + n.len() + t.tail_data_offset;
    Envelope {
        body: t.head + &n + &t.tail,
        data_offset,
    }
}

/// The bare payload part of a stored envelope (what the `woocommerce` format sends).
pub fn data_of(body: &[u8], data_offset: usize) -> &[u8] {
    if data_offset < body.len() {
        &body[data_offset..body.len() - 1]
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert!(validate_topic("product.stock_updated").is_ok());
        assert!(validate_topic("a.b.c9").is_ok());
        for bad in [
            "product",
            "Product.x",
            "a..b",
            ".a",
            "a.",
            "a.b-c",
            "",
            "a. b",
        ] {
            assert!(validate_topic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys() {
        assert!(validate_key("product:42").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("a\nb").is_err());
        assert!(validate_key(&"x".repeat(256)).is_err());
    }

    #[test]
    fn split_topic() {
        assert_eq!(
            resource_and_event("order.status_changed"),
            ("order", "status_changed")
        );
        assert_eq!(resource_and_event("a.b.c"), ("a", "b.c"));
    }

    #[test]
    fn ulids_are_sorted_unique_and_well_formed() {
        let ids: Vec<String> = (0..2000).map(|_| new_event_id()).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        assert!(ids.iter().all(|i| is_event_id(i)));
        assert!(!is_event_id("evt_123"));
        assert!(!is_event_id("evt_0123456789ABCDEFGHJKMNPQRU")); // U is not Crockford
    }

    #[test]
    fn ids_carry_a_rowid_and_keep_their_time_and_shape() {
        let id = new_event_id();
        for rowid in [1i64, 31, 32, 123_456_789, (1 << ID_ROWID_BITS) - 1] {
            let carried = with_rowid(&id, rowid).unwrap();
            assert!(is_event_id(&carried), "{carried}");
            assert_eq!(&carried[..14], &id[..14], "time part kept");
            assert_eq!(&carried[22..], &id[22..], "40 random bits kept");
            assert_eq!(rowid_in(&carried), Some(rowid));
        }
        assert_eq!(with_rowid(&id, 0), None);
        assert_eq!(with_rowid(&id, 1 << ID_ROWID_BITS), None);
        assert_eq!(with_rowid("evt_short", 5), None);
        assert_eq!(rowid_in("evt_short"), None);
        // within one millisecond, a later rowid sorts later
        let (a, b) = (with_rowid(&id, 9).unwrap(), with_rowid(&id, 10).unwrap());
        assert!(a < b);
    }

    #[test]
    fn ulid_time_prefix_matches_clock() {
        let id = new_ulid();
        let mut v: u128 = 0;
        for b in id.bytes().take(10) {
            v = v * 32 + CROCKFORD.iter().position(|c| *c == b).unwrap() as u128;
        }
        let ms = v as f64 / 1000.0;
        assert!((ms - now()).abs() < 5.0);
    }

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_452_328.123_4), "2026-11-23T16:45:28.123Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn envelope_names_the_id_where_it_is_rewritten() {
        let id = new_event_id();
        let t = envelope_template(&id, "order.created", 0.0, Some("order:1"), "{}");
        assert_eq!(&t.head.as_bytes()[ENVELOPE_ID_AT], id.as_bytes());
    }

    #[test]
    fn envelope_shape() {
        let e = build_envelope(
            "evt_X",
            "order.created",
            0.0,
            Some("order:\"1\""),
            3,
            "{\"a\":1}",
        );
        assert_eq!(
            e.body,
            "{\"id\":\"evt_X\",\"type\":\"order.created\",\"timestamp\":\"1970-01-01T00:00:00.000Z\",\"key\":\"order:\\\"1\\\"\",\"sequence\":3,\"data\":{\"a\":1}}"
        );
        assert_eq!(data_of(e.body.as_bytes(), e.data_offset), b"{\"a\":1}");
        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(v["key"], "order:\"1\"");
        let n = build_envelope("evt_Y", "a.b", 0.0, None, 0, "[]");
        assert!(n.body.contains("\"key\":null,\"sequence\":0,\"data\":[]}"));
    }

    #[test]
    fn json_strings_escape_controls() {
        let mut s = String::new();
        push_json_str(&mut s, "a\u{1}\"\\\né");
        assert_eq!(s, "\"a\\u0001\\\"\\\\\\né\"");
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\u{1}\"\\\né");
    }
}
