//! Retry policy: the schedule of delays between attempts, jitter and `Retry-After`.
//! Pure functions, no I/O; the worker asks "when next?" after each failed attempt.

use crate::error::{quote, Error, Result};

/// Default delays (seconds) between attempts: N delays mean N+1 attempts.
pub const DEFAULT_DELAYS: &str = "5,300,1800,7200,18000,36000,36000";
/// Jitter applied to scheduled delays: ±20%.
pub const JITTER: f64 = 0.2;
/// `Retry-After` is clamped to this range (seconds).
pub const RETRY_AFTER_MIN: f64 = 1.0;
pub const RETRY_AFTER_MAX: f64 = 3600.0;
/// Upper bound for one configured delay (30 days) and for the number of delays.
const MAX_DELAY: f64 = 30.0 * 86_400.0;
const MAX_DELAYS: usize = 100;

/// Delays between attempts, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    pub delays: Vec<f64>,
}

impl RetrySchedule {
    /// Parses a comma list of seconds such as `5,300,1800` (fractions allowed, empty list allowed).
    pub fn parse(text: &str) -> Result<RetrySchedule> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(RetrySchedule { delays: vec![] });
        }
        let mut delays = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let v: f64 = part
                .parse()
                .map_err(|_| bad(text, &format!("{} is not a number", quote(part))))?;
            if !v.is_finite() || !(0.0..=MAX_DELAY).contains(&v) {
                return Err(bad(
                    text,
                    &format!("{part} is outside 0..{MAX_DELAY} seconds"),
                ));
            }
            delays.push(v);
        }
        if delays.len() > MAX_DELAYS {
            return Err(bad(text, &format!("at most {MAX_DELAYS} delays")));
        }
        Ok(RetrySchedule { delays })
    }

    /// Total attempts allowed: one more than the number of delays.
    pub fn max_attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }

    /// Delay after the `attempts_made`-th failed attempt (1-based), jittered with `unit` in [0,1),
    /// or None when the schedule is exhausted (the delivery is dead).
    pub fn next_delay(&self, attempts_made: u32, unit: f64) -> Option<f64> {
        let idx = attempts_made.checked_sub(1)? as usize;
        let base = *self.delays.get(idx)?;
        let factor = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Some(base * factor)
    }
}

fn bad(text: &str, why: &str) -> Error {
    Error::config(format!(
        "retry_delays {} is malformed ({why}); use a comma list of seconds such as \"5,300,1800\"",
        quote(text)
    ))
}

/// Parses a `Retry-After` value (delta seconds or HTTP date) relative to `now` (unix seconds),
/// clamped to [1 s, 1 h]. None when it cannot be read.
pub fn parse_retry_after(value: &str, now: f64) -> Option<f64> {
    let value = value.trim();
    let secs = if let Ok(n) = value.parse::<f64>() {
        if !n.is_finite() {
            return None;
        }
        n
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        let unix = when
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        unix - now
    };
    Some(secs.clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX))
}

/// A cheap uniform number in [0,1) for jitter (not for secrets).
pub fn jitter_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_and_fractions() {
        let s = RetrySchedule::parse(DEFAULT_DELAYS).unwrap();
        assert_eq!(s.delays.len(), 7);
        assert_eq!(s.max_attempts(), 8);
        let f = RetrySchedule::parse(" 0.05, 1.5 ").unwrap();
        assert_eq!(f.delays, vec![0.05, 1.5]);
        assert_eq!(RetrySchedule::parse("").unwrap().max_attempts(), 1);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["a", "1,,2", "-1", "NaN", "inf", "1e99"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jitter_bounds_and_exhaustion() {
        let s = RetrySchedule::parse("10,20").unwrap();
        assert_eq!(s.next_delay(1, 0.0), Some(8.0));
        assert_eq!(s.next_delay(1, 1.0), Some(12.0));
        assert_eq!(s.next_delay(2, 0.5), Some(20.0));
        assert_eq!(s.next_delay(3, 0.5), None);
        assert_eq!(s.next_delay(0, 0.5), None);
        for _ in 0..1000 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 0.0), Some(120.0));
        assert_eq!(parse_retry_after("0", 0.0), Some(1.0));
        assert_eq!(parse_retry_after("999999", 0.0), Some(3600.0));
        assert_eq!(parse_retry_after("soon", 0.0), None);
        // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_480.0 - 30.0),
            Some(30.0)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_480.0 + 30.0),
            Some(1.0)
        );
    }
}
