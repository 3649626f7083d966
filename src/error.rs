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
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(m) | Error::Config(m) | Error::Storage(m) | Error::Timeout(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
