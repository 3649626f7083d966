//! One error type for the core. The PHP layer maps every variant to `WooSyncException`
//! in exactly one place (`php/exception.rs`); the message always says what to fix.

use std::fmt;

/// What went wrong, by who has to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The caller passed something woosync cannot accept (topic, payload, options).
    Input(String),
    /// A setting (INI or endpoint configuration) is malformed.
    Config(String),
    /// The outbox file cannot be opened, created, written or is not a woosync outbox.
    Storage(String),
    /// A wait ran out of time.
    Timeout(String),
    /// The outbox file is damaged (SQLite reports corruption).
    Corrupt(String),
    /// The transaction did not happen (a deadlock, a connection lost before commit): it may be
    /// run again as it is.
    Retry(String),
    /// Nothing was stored: the outbox was moved (woosync_migrate) to this one (a path or URL,
    /// with its password: never shown as it is).
    Moved(String),
}

impl Error {
    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
    pub fn storage(msg: impl Into<String>) -> Self {
        Error::Storage(msg.into())
    }

    /// Stable numeric code used as the PHP exception code.
    pub fn code(&self) -> i32 {
        match self {
            Error::Input(_) => 1,
            Error::Config(_) => 2,
            Error::Storage(_) => 3,
            Error::Timeout(_) => 4,
            Error::Corrupt(_) => 3,
            Error::Retry(_) => 3,
            Error::Moved(_) => 3,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(m)
            | Error::Config(m)
            | Error::Storage(m)
            | Error::Timeout(m)
            | Error::Corrupt(m)
            | Error::Retry(m) => f.write_str(m),
            Error::Moved(to) => write!(
                f,
                "this outbox was moved to {} (woosync_migrate); set woosync.database to it",
                crate::outbox::MysqlUrl::mask_text(to)
            ),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Most bytes of someone's input an error message quotes.
pub const QUOTE_BYTES: usize = 200;

/// Quotes input for an error message: escaped like a string literal, at most [`QUOTE_BYTES`]
/// of it, with the full length when it was cut (a 20 MB topic gives a short message).
pub fn quote(s: &str) -> String {
    if s.len() <= QUOTE_BYTES {
        return format!("{s:?}");
    }
    let mut end = QUOTE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_at_most_a_little() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let big = "é".repeat(10_000_000);
        let q = quote(&big);
        assert!(q.len() < QUOTE_BYTES + 40, "{}", q.len());
        assert!(q.ends_with("… (20000000 bytes)"), "{q}");
    }
}
