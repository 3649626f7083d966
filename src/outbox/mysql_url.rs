//! The `mysql://` / `mariadb://` outbox URL: parsing (percent-decoded parts, `prefix`, `socket`,
//! `ssl-mode`, `ssl-ca`), the masked form shown everywhere, and the driver options it gives.

use super::mysql::{CONNECT_TIMEOUT, IO_TIMEOUT};
use crate::error::{quote, Error, Result};
use mysql::OptsBuilder;

/// How to use TLS (`ssl-mode`, as the MySQL client names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SslMode {
    Disabled,
    /// Encrypted, the certificate not checked.
    Required,
    /// Encrypted, the certificate chain checked against `ssl-ca` (or the system's roots).
    VerifyCa,
    /// As VerifyCa, and the host name checked too.
    VerifyIdentity,
}

/// A parsed `mysql://` / `mariadb://` outbox URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MysqlUrl {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub socket: Option<String>,
    pub database: String,
    pub prefix: String,
    pub ssl_mode: SslMode,
    pub ssl_ca: Option<String>,
}

fn percent_decode(s: &str, what: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::config(format!(
                        "woosync.database: the {what} has a malformed %-escape"
                    ))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::config(format!("woosync.database: the {what} is not UTF-8")))
}

impl MysqlUrl {
    /// `Some` for a `mysql://` or `mariadb://` URL (or an error saying what is wrong with it),
    /// `None` for anything else (a SQLite path).
    pub fn parse(text: &str) -> Result<Option<MysqlUrl>> {
        let t = text.trim();
        let rest = match t
            .strip_prefix("mysql://")
            .or_else(|| t.strip_prefix("mariadb://"))
        {
            Some(r) => r,
            None => return Ok(None),
        };
        let shown = MysqlUrl::mask_text(t);
        let bad = |why: &str| {
            Error::config(format!(
                "woosync.database {} is not a usable MySQL URL ({why}); use mysql://USER:PASSWORD@HOST[:PORT]/DBNAME[?prefix=wp_]",
                quote(&shown)
            ))
        };
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (auth, hostpath) = main.rsplit_once('@').ok_or_else(|| bad("no USER@"))?;
        let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
        let (hostport, db) = hostpath.split_once('/').ok_or_else(|| bad("no /DBNAME"))?;
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an unclosed [ in the host"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            None | Some("") => 3306,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad("the port is not a number from 1 to 65535")),
            },
        };
        let mut url = MysqlUrl {
            user: percent_decode(user, "user")?,
            password: percent_decode(password, "password")?,
            host: percent_decode(&host, "host")?,
            port,
            socket: None,
            database: percent_decode(db, "database name")?,
            prefix: "wp_".into(),
            ssl_mode: SslMode::Disabled,
            ssl_ca: None,
        };
        let mut mode: Option<SslMode> = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v, k)?;
            match k {
                "prefix" => url.prefix = v,
                "socket" => url.socket = Some(v),
                "ssl-ca" | "ssl_ca" => url.ssl_ca = Some(v),
                "ssl-mode" | "ssl_mode" => {
                    mode =
                        Some(match v.to_ascii_uppercase().as_str() {
                            "DISABLED" => SslMode::Disabled,
                            "PREFERRED" | "REQUIRED" => SslMode::Required,
                            "VERIFY_CA" => SslMode::VerifyCa,
                            "VERIFY_IDENTITY" => SslMode::VerifyIdentity,
                            _ => return Err(bad(
                                "ssl-mode must be DISABLED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY",
                            )),
                        })
                }
                other => return Err(bad(&format!("unknown parameter {}", quote(other)))),
            }
        }
        url.ssl_mode = mode.unwrap_or(if url.ssl_ca.is_some() {
            SslMode::VerifyIdentity
        } else {
            SslMode::Disabled
        });
        if url.user.is_empty() {
            return Err(bad("no user"));
        }
        if url.database.is_empty() || url.database.contains('`') {
            return Err(bad("no database name, or a ` in it"));
        }
        if url.host.is_empty() && url.socket.is_none() {
            return Err(bad("no host (or ?socket=/path)"));
        }
        if url.prefix.len() > 32
            || !url
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(bad("the prefix must be letters, digits and _ (at most 32)"));
        }
        Ok(Some(url))
    }

    /// A URL text with its password masked.
    pub fn mask_text(t: &str) -> String {
        // mysql://user:pass@host: the password is everything between the first ':' after the
        // scheme and the last '@' (of the whole text: a password with an unescaped '?', '/' or
        // '@' is masked too, at worst with more than the password).
        let Some(scheme_end) = t.find("://") else {
            return t.to_string();
        };
        let rest = &t[scheme_end + 3..];
        match (rest.rfind('@'), rest.find(':')) {
            (Some(at), Some(colon)) if colon < at => format!(
                "{}{}:****{}",
                &t[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            ),
            _ => t.to_string(),
        }
    }

    /// The URL for messages, status and php --ri: the password masked.
    pub fn masked(&self) -> String {
        let where_ = match &self.socket {
            Some(s) if self.host.is_empty() => format!("localhost/{}?socket={s}", self.database),
            _ => format!("{}:{}/{}", self.host, self.port, self.database),
        };
        format!(
            "mysql://{}:****@{where_} (tables {}woosync_*)",
            self.user, self.prefix
        )
    }

    pub(super) fn opts(&self) -> OptsBuilder {
        let mut b = OptsBuilder::new()
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .db_name(Some(self.database.clone()))
            .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
            .read_timeout(Some(IO_TIMEOUT))
            .write_timeout(Some(IO_TIMEOUT))
            .prefer_socket(false)
            .stmt_cache_size(Some(64));
        match &self.socket {
            Some(s) => {
                b = b
                    .socket(Some(s.clone()))
                    .ip_or_hostname(Some(if self.host.is_empty() {
                        "localhost".to_string()
                    } else {
                        self.host.clone()
                    }))
            }
            None => {
                b = b
                    .ip_or_hostname(Some(self.host.clone()))
                    .tcp_port(self.port)
            }
        }
        if self.ssl_mode != SslMode::Disabled {
            let mut ssl = mysql::SslOpts::default();
            if let Some(ca) = &self.ssl_ca {
                ssl = ssl.with_root_cert_path(Some(std::path::PathBuf::from(ca)));
            }
            match self.ssl_mode {
                SslMode::Required => {
                    ssl = ssl
                        .with_danger_accept_invalid_certs(true)
                        .with_danger_skip_domain_validation(true)
                }
                SslMode::VerifyCa => ssl = ssl.with_danger_skip_domain_validation(true),
                _ => {}
            }
            b = b.ssl_opts(Some(ssl));
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u =
            MysqlUrl::parse("mysql://wp%40shop:p%3Ass%2Fw@db.example:3307/shop%5Fdb?prefix=wp2_")
                .unwrap()
                .unwrap();
        assert_eq!(
            (u.user.as_str(), u.password.as_str()),
            ("wp@shop", "p:ss/w")
        );
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.database.as_str(),
                u.prefix.as_str()
            ),
            ("db.example", 3307, "shop_db", "wp2_")
        );
        assert!(!u.masked().contains("p:ss"));
        let s = MysqlUrl::parse("mariadb://wp:pw@localhost/shop?socket=/run/mysqld/mysqld.sock")
            .unwrap()
            .unwrap();
        assert_eq!(s.socket.as_deref(), Some("/run/mysqld/mysqld.sock"));
        assert_eq!(s.prefix, "wp_");
        let v6 =
            MysqlUrl::parse("mysql://wp:pw@[::1]:3306/shop?ssl-mode=VERIFY_CA&ssl-ca=/etc/ca.pem")
                .unwrap()
                .unwrap();
        assert_eq!((v6.host.as_str(), v6.ssl_mode), ("::1", SslMode::VerifyCa));
        assert!(MysqlUrl::parse("/var/lib/woosync/shop.sqlite")
            .unwrap()
            .is_none());
        for bad in [
            "mysql://host/db",
            "mysql://u:p@host",
            "mysql://u:p@host:99999/db",
            "mysql://u:p@h/db?prefix=a-b",
            "mysql://u:p@h/db?x=1",
        ] {
            let e = MysqlUrl::parse(bad).unwrap_err().to_string();
            assert!(!e.contains(":p@"), "{e}");
        }
        let e = MysqlUrl::parse("mysql://u:hunter2@h/db?x=1")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
