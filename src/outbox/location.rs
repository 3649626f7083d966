//! Where an outbox lives: a SQLite file (the default) or tables in a MariaDB/MySQL database
//! (`woosync.database = mysql://…`). The registry of open outboxes, the sender's election and
//! every message name an outbox by its location; messages only ever show [`Location::display`],
//! which masks the database password.

use super::mysql_url::MysqlUrl;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    Sqlite(PathBuf),
    Mysql(MysqlUrl),
}

impl Location {
    /// The path or the URL with its password masked.
    pub fn display(&self) -> String {
        match self {
            Location::Sqlite(p) => p.to_string_lossy().into_owned(),
            Location::Mysql(u) => u.masked(),
        }
    }

    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(p) => Some(p),
            Location::Mysql(_) => None,
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Location::Mysql(_))
    }

    /// Whether there is anything to deliver from yet: a SQLite file is created by the first
    /// dispatch; a database is always there (its tables are created on first use).
    pub fn may_exist(&self) -> bool {
        match self {
            Location::Sqlite(p) => p.exists(),
            Location::Mysql(_) => true,
        }
    }
}
