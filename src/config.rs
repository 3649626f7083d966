//! Settings as plain Rust values. The PHP layer copies INI strings into [`IniValues`] on the
//! PHP thread; everything here is validated when used, never at module start-up, so a bad
//! value makes `woosync_dispatch` raise instead of breaking PHP.

use crate::error::{quote, Error, Result};
use crate::retry::RetrySchedule;
use crate::signer::Secret;
use std::path::PathBuf;

/// Name of the endpoint configured through INI.
pub const DEFAULT_ENDPOINT: &str = "default";

/// Raw INI strings, copied on the PHP thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct IniValues {
    pub database: String,
    pub endpoint: String,
    pub secret: String,
    pub retry_delays: String,
    pub timeout: String,
    pub concurrency: String,
    pub max_payload_bytes: String,
    pub source: String,
    pub shutdown_grace: String,
    pub key: String,
    pub retention_days: String,
    /// `woosync.allow_networks`: networks every endpoint may reach (php.ini / `-d` only).
    pub allow_networks: String,
    /// Why `database` cannot be used, found while copying it (NUL or non-UTF-8 bytes, outside
    /// `open_basedir`); reported by every function that uses the outbox.
    pub database_error: Option<String>,
}

/// Where the outbox of these settings lives: a `mysql://`/`mariadb://` URL names tables in a
/// database, anything else a SQLite file (see [`database_path`]); or why it cannot be used.
pub fn database(ini: &IniValues) -> Result<crate::outbox::Location> {
    if let Some(e) = &ini.database_error {
        return Err(Error::config(e.clone()));
    }
    database_location(&ini.database)
}

pub fn database_location(text: &str) -> Result<crate::outbox::Location> {
    use crate::outbox::{Location, MysqlUrl};
    match MysqlUrl::parse(text)? {
        Some(url) => Ok(Location::Mysql(url)),
        None => Ok(Location::Sqlite(database_path(text)?)),
    }
}

/// The outbox path: the INI value, or `<temp dir>/woosync-<uid>/outbox.sqlite` when empty. A value
/// of only blanks, a relative path (web and CLI run in different directories) or an unreplaced
/// `{blog_id}` is refused.
pub fn database_path(ini: &str) -> Result<PathBuf> {
    if ini.is_empty() {
        return Ok(crate::files::default_path());
    }
    let text = ini.trim();
    if text.is_empty() {
        return Err(Error::config(
            "woosync.database is only blanks: leave it empty for the default location or give an absolute path",
        ));
    }
    if text.contains("{blog_id}") {
        return Err(Error::config(format!(
            "woosync.database {} contains {{blog_id}}, which the WordPress plugin replaces per site; outside WordPress give a path without it",
            quote(text)
        )));
    }
    let path = PathBuf::from(text);
    if !path.is_absolute() {
        return Err(Error::config(format!(
            "woosync.database {} is a relative path; web and CLI run in different directories, so give an absolute path such as /var/lib/woosync/shop.sqlite",
            quote(text)
        )));
    }
    Ok(path)
}

fn parse_num(name: &str, text: &str, min: f64, max: f64, default: f64) -> Result<f64> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(default);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= min && v <= max => Ok(v),
        _ => Err(Error::config(format!(
            "{name}={} is invalid: use a number from {min} to {max}",
            quote(t)
        ))),
    }
}

/// Seconds for one HTTP attempt (connect + response).
pub fn timeout(text: &str) -> Result<f64> {
    parse_num("woosync.timeout", text, 0.1, 3600.0, 15.0)
}
/// Concurrent deliveries per outbox.
pub fn concurrency(text: &str) -> Result<usize> {
    Ok(parse_num("woosync.concurrency", text, 1.0, 64.0, 4.0)? as usize)
}
/// Largest encoded body accepted by dispatch.
pub fn max_payload_bytes(text: &str) -> Result<usize> {
    Ok(parse_num(
        "woosync.max_payload_bytes",
        text,
        256.0,
        64.0 * 1024.0 * 1024.0,
        1_048_576.0,
    )? as usize)
}
/// Seconds module shutdown waits for in-flight attempts.
pub fn shutdown_grace(text: &str) -> Result<f64> {
    parse_num("woosync.shutdown_grace", text, 0.0, 60.0, 1.0)
}

/// Days delivered and superseded events are kept (dead ones: [`DEAD_RETENTION_DAYS`]).
pub fn retention_days(text: &str) -> Result<f64> {
    parse_num("woosync.retention_days", text, 0.0, 3650.0, 7.0)
}
/// Days dead and unrouted events are kept.
pub const DEAD_RETENTION_DAYS: f64 = 30.0;

/// Checks an endpoint name: `^[a-z0-9_@-]{1,64}$` (`@` for per-site names such as `wordpress@2`).
pub fn validate_endpoint_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'@'
        });
    if ok {
        Ok(())
    } else {
        Err(Error::input(format!(
            "invalid endpoint name {}: use 1 to 64 of a-z, 0-9, _, - and @",
            quote(name)
        )))
    }
}

/// Checks a topic filter pattern: dotted words or `*`.
pub fn validate_topic_pattern(p: &str) -> Result<()> {
    let ok = p == "*"
        || (!p.is_empty()
            && p.split('.').all(|w| {
                w == "*"
                    || (!w.is_empty()
                        && w.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
            }));
    if ok {
        Ok(())
    } else {
        Err(Error::input(format!(
            "invalid topic filter {}: use dotted topics with * wildcards, such as \"order.*\"",
            quote(p)
        )))
    }
}

/// An endpoint as `woosync_endpoint_save` describes it, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    pub url: String,
    /// None keeps the stored secret; Some("") removes it.
    pub secret: Option<String>,
    pub topics: Vec<String>,
    pub enabled: bool,
    pub rate_limit: f64,
    pub timeout: f64,
    pub proxy: String,
    pub format: Format,
    pub retry_delays: String,
    pub source: String,
    /// Networks this endpoint may reach besides the public internet (destination policy).
    pub allow_networks: Vec<crate::destination::Network>,
    /// Which signature headers, and what the secret is.
    pub signature: SignatureMode,
    /// HMAC hash of the X-WC-Webhook-Signature header.
    pub hash_algorithm: HashAlgorithm,
    /// HTTP statuses that count as delivered.
    pub success_codes: SuccessCodes,
    /// User-Agent of every request (empty: `woosync/<version>`).
    pub user_agent: String,
    /// Headers sent with every request to this endpoint.
    pub headers: Vec<(String, String)>,
    /// Sent as X-WC-Webhook-ID instead of the endpoint's own id (a mirrored WooCommerce webhook).
    pub wc_webhook_id: Option<i64>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            url: String::new(),
            secret: None,
            topics: vec![],
            enabled: true,
            rate_limit: 0.0,
            timeout: 15.0,
            proxy: String::new(),
            format: Format::Standard,
            retry_delays: crate::retry::DEFAULT_DELAYS.to_string(),
            source: String::new(),
            allow_networks: Vec::new(),
            signature: SignatureMode::Standard,
            hash_algorithm: HashAlgorithm::Sha256,
            success_codes: SuccessCodes::default(),
            user_agent: String::new(),
            headers: Vec::new(),
            wc_webhook_id: None,
        }
    }
}

impl EndpointConfig {
    /// `allow_networks` as stored: a comma list.
    pub fn allow_networks_text(&self) -> String {
        self.allow_networks
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn validate(&self) -> Result<()> {
        validate_url(&self.url)?;
        if let Some(s) = &self.secret {
            if !s.is_empty() {
                match self.signature {
                    SignatureMode::Standard => {
                        Secret::parse(s)?;
                    }
                    SignatureMode::WooCommerce => validate_wc_secret(s)?,
                }
            }
        }
        validate_text("user_agent", &self.user_agent, 512)?;
        validate_headers("headers", &self.headers)?;
        if self.wc_webhook_id.is_some_and(|id| id <= 0) {
            return Err(Error::config(
                "wc_webhook_id must be a positive WooCommerce webhook id",
            ));
        }
        for t in &self.topics {
            validate_topic_pattern(t)?;
        }
        validate_rate_limit(self.rate_limit)?;
        if !(self.timeout.is_finite() && (0.1..=3600.0).contains(&self.timeout)) {
            return Err(Error::config(
                "timeout must be between 0.1 and 3600 seconds",
            ));
        }
        validate_proxy(&self.proxy)?;
        RetrySchedule::parse(&self.retry_delays)?;
        validate_source("source", &self.source)?;
        Ok(())
    }
}

/// A WooCommerce webhook secret: any string (WooCommerce generates 50 printable characters), used
/// as is as the HMAC key of X-WC-Webhook-Signature.
pub fn validate_wc_secret(secret: &str) -> Result<()> {
    if secret.len() > 4096 || secret.contains('\0') {
        return Err(Error::config(
            "secret: a WooCommerce-style secret is a string of at most 4096 bytes without NUL",
        ));
    }
    Ok(())
}

/// A value sent in a header: no control characters (CR/LF/NUL would end or split it).
pub fn validate_text(name: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::config(format!(
            "{name} is {} bytes long; at most {max}",
            value.len()
        )));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(Error::config(format!(
            "{name} {} contains a control character (CR, LF, NUL, ...); it is sent as a header",
            quote(value)
        )));
    }
    Ok(())
}

/// Headers woosync never lets a setting or an event set: HTTP framing and routing.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "expect",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
];
/// Most headers an endpoint or an event may add, and their total size.
pub const MAX_HEADERS: usize = 50;
pub const MAX_HEADERS_BYTES: usize = 16 * 1024;

/// Extra headers (an endpoint's, or one event's): token names, values without control
/// characters, no framing headers, bounded in number and size.
pub fn validate_headers(what: &str, headers: &[(String, String)]) -> Result<()> {
    if headers.len() > MAX_HEADERS {
        return Err(Error::input(format!(
            "{what}: {} headers; at most {MAX_HEADERS}",
            headers.len()
        )));
    }
    let mut total = 0;
    for (name, value) in headers {
        let token = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(Error::input(format!(
                "{what}: {} is not a header name (letters, digits and -_ only)",
                quote(name)
            )));
        }
        if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(Error::input(format!(
                "{what}: the header {name} is set by HTTP itself and cannot be given"
            )));
        }
        validate_text(&format!("{what}: the value of {name}"), value, 8192)
            .map_err(|e| Error::input(e.to_string()))?;
        total += name.len() + value.len();
    }
    if total > MAX_HEADERS_BYTES {
        return Err(Error::input(format!(
            "{what}: {total} bytes of headers; at most {MAX_HEADERS_BYTES}"
        )));
    }
    Ok(())
}

/// Headers as stored: a JSON array of [name, value] pairs.
pub fn headers_to_json(headers: &[(String, String)]) -> String {
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".into())
}

/// Headers from their stored form (empty or malformed text: none).
pub fn headers_from_json(text: &str) -> Vec<(String, String)> {
    if text.is_empty() {
        return Vec::new();
    }
    serde_json::from_str(text).unwrap_or_default()
}

/// Which signatures an endpoint gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureMode {
    /// Standard Webhooks (`webhook-signature`, key = the base64-decoded secret) and
    /// X-WC-Webhook-Signature (key = the secret string); the secret is `whsec_…` or bare base64.
    Standard,
    /// Only X-WC-Webhook-Signature, key = the secret string exactly as given (any string), as
    /// WooCommerce's own webhooks sign.
    WooCommerce,
}

impl SignatureMode {
    pub fn parse(s: &str) -> Result<SignatureMode> {
        match s.trim() {
            "" | "standard" => Ok(SignatureMode::Standard),
            "woocommerce" => Ok(SignatureMode::WooCommerce),
            other => Err(Error::config(format!(
                "unknown signature {}: use \"standard\" or \"woocommerce\"",
                quote(other)
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMode::Standard => "standard",
            SignatureMode::WooCommerce => "woocommerce",
        }
    }
}

/// The hash of the X-WC-Webhook-Signature HMAC (WooCommerce's `woocommerce_webhook_hash_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    pub fn parse(s: &str) -> Result<HashAlgorithm> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "" | "sha256" => HashAlgorithm::Sha256,
            "sha1" => HashAlgorithm::Sha1,
            "sha224" => HashAlgorithm::Sha224,
            "sha384" => HashAlgorithm::Sha384,
            "sha512" => HashAlgorithm::Sha512,
            "md5" => HashAlgorithm::Md5,
            other => {
                return Err(Error::config(format!(
                "unsupported hash_algorithm {}: use sha256, sha1, sha224, sha384, sha512 or md5",
                quote(other)
            )))
            }
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlgorithm::Md5 => "md5",
            HashAlgorithm::Sha1 => "sha1",
            HashAlgorithm::Sha224 => "sha224",
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
        }
    }
}

/// The HTTP statuses that count as delivered: ranges such as `200-299` (the default) or
/// `200-302` (WooCommerce's own rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SuccessCodes(pub Vec<(u16, u16)>);

impl Default for SuccessCodes {
    fn default() -> Self {
        SuccessCodes(vec![(200, 299)])
    }
}

impl SuccessCodes {
    pub fn parse(text: &str) -> Result<SuccessCodes> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(SuccessCodes::default());
        }
        let bad = || {
            Error::config(format!(
                "success_codes {} is malformed; use HTTP statuses and ranges from 200 to 399 such as \"200-299\" or \"200-302\"",
                quote(t)
            ))
        };
        let mut out = Vec::new();
        for part in t.split(',').map(str::trim) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b): (u16, u16) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if !(200..=399).contains(&a) || !(200..=399).contains(&b) || a > b {
                return Err(bad());
            }
            out.push((a, b));
        }
        Ok(SuccessCodes(out))
    }
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&code))
    }
    pub fn to_text(&self) -> String {
        self.0
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Smallest rate limit other than 0 (no limit): one delivery every 100 s.
pub const MIN_RATE_LIMIT: f64 = 0.01;

/// A rate limit: 0 (no limit) or at least [`MIN_RATE_LIMIT`] deliveries per second.
pub fn validate_rate_limit(rate: f64) -> Result<()> {
    if rate.is_finite() && (rate == 0.0 || rate >= MIN_RATE_LIMIT) {
        return Ok(());
    }
    Err(Error::config(format!(
        "rate_limit must be 0 (no limit) or at least {MIN_RATE_LIMIT} deliveries per second, not {rate}"
    )))
}

/// Longest `source` (sent as the X-WC-Webhook-Source header), in bytes.
pub const MAX_SOURCE_BYTES: usize = 2048;

/// A value sent as a header: no CR, LF or NUL (they would end or split the header), at most 2 KB.
pub fn validate_source(name: &str, source: &str) -> Result<()> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(Error::config(format!(
            "{name} is {} bytes long; it is sent as the X-WC-Webhook-Source header: use the site's URL (at most {MAX_SOURCE_BYTES} bytes)",
            source.len()
        )));
    }
    if source.chars().any(|c| c.is_control()) {
        return Err(Error::config(format!(
            "{name} {} contains a control character (CR, LF, NUL, ...); it is sent as a header: use the site's URL",
            quote(source)
        )));
    }
    Ok(())
}

/// A proxy URL (`http://`, `https://`, `socks4://`, `socks5://`, credentials allowed), or empty.
pub fn validate_proxy(proxy: &str) -> Result<()> {
    if proxy.is_empty() {
        return Ok(());
    }
    let shown = quote(&crate::redact::url(proxy));
    if proxy.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::config(format!(
            "invalid proxy {shown}: it contains whitespace or a control character"
        )));
    }
    validate_port(proxy).map_err(|why| Error::config(format!("invalid proxy {shown}: {why}")))?;
    ureq::Proxy::new(proxy).map_err(|e| {
        Error::config(format!(
            "invalid proxy {shown}: {}; use a URL such as http://proxy.example:3128",
            crate::redact::text(&e.to_string())
        ))
    })?;
    Ok(())
}

/// The authority of `scheme://authority/...` without user info: (host, port text if any).
fn host_and_port(url: &str) -> Option<(&str, Option<&str>)> {
    let rest = &url[url.find("://")? + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    if let Some(v6) = hostport.strip_prefix('[') {
        let close = v6.find(']')?;
        let host = &hostport[..close + 2];
        let after = &v6[close + 1..];
        return Some((host, after.strip_prefix(':')));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p))),
        None => Some((hostport, None)),
    }
}

/// An explicit port must be a number from 1 to 65535.
fn validate_port(url: &str) -> std::result::Result<(), String> {
    match host_and_port(url) {
        Some((_, Some(p))) => match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(()),
            _ => Err(format!(
                "the port {} is not a number from 1 to 65535",
                quote(p)
            )),
        },
        _ => Ok(()),
    }
}

/// Checks an endpoint URL: http or https with a host, a port from 1 to 65535 if any, no whitespace.
pub fn validate_url(url: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::config(format!(
            "malformed endpoint URL {} ({why}); use an absolute http:// or https:// URL such as https://crm.example.com/webhooks/woo",
            quote(&crate::redact::url(url))
        ))
    };
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("it must start with http:// or https://"))?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains whitespace"));
    }
    let host = host_and_port(url).map(|(h, _)| h).unwrap_or("");
    if host.is_empty() {
        return Err(bad("it has no host"));
    }
    validate_port(url).map_err(|why| bad(&why))?;
    match url.parse::<ureq::http::Uri>() {
        Ok(_) => Ok(()),
        Err(e) => Err(bad(&e.to_string())),
    }
}

/// Body format of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The woosync envelope (`id`, `type`, `timestamp`, `key`, `sequence`, `data`).
    Standard,
    /// The bare payload, as WooCommerce's own webhooks send their REST object.
    WooCommerce,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s.trim() {
            "" | "standard" => Ok(Format::Standard),
            "woocommerce" => Ok(Format::WooCommerce),
            other => Err(Error::config(format!(
                "unknown format {}: use \"standard\" or \"woocommerce\"",
                quote(other)
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Standard => "standard",
            Format::WooCommerce => "woocommerce",
        }
    }
}

/// The `default` endpoint as the process's INI describes it, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultEndpoint {
    /// Empty when no endpoint is configured.
    pub url: String,
    pub secret: String,
    pub retry_delays: String,
    pub timeout: f64,
    pub source: String,
}

impl DefaultEndpoint {
    /// Validates the INI values that describe the `default` endpoint.
    pub fn from_ini(ini: &IniValues) -> Result<DefaultEndpoint> {
        // Errors name the php.ini setting.
        let named = |setting: &str| {
            let setting = setting.to_string();
            move |e: Error| Error::config(format!("{setting}: {e}"))
        };
        let url = ini.endpoint.trim().to_string();
        if !url.is_empty() {
            validate_url(&url).map_err(named("woosync.endpoint"))?;
        }
        let secret = ini.secret.trim().to_string();
        if !secret.is_empty() {
            Secret::parse(&secret).map_err(named("woosync.secret"))?;
        }
        let retry_delays = if ini.retry_delays.trim().is_empty() {
            crate::retry::DEFAULT_DELAYS.to_string()
        } else {
            ini.retry_delays.trim().to_string()
        };
        RetrySchedule::parse(&retry_delays).map_err(named("woosync.retry_delays"))?;
        let source = ini.source.trim().to_string();
        validate_source("woosync.source", &source)?;
        Ok(DefaultEndpoint {
            url,
            secret,
            retry_delays,
            timeout: timeout(&ini.timeout)?,
            source,
        })
    }
}

/// Matches a topic against a filter list such as `order.*, product.stock_updated`;
/// an empty list or `*` matches everything. `*` matches one or more dotted words at the end
/// (`order.*`) or any one word in the middle (`*.created`).
pub fn topic_matches(filters: &[String], topic: &str) -> bool {
    if filters.is_empty() {
        return true;
    }
    filters.iter().any(|f| pattern_matches(f, topic))
}

fn pattern_matches(pattern: &str, topic: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let pp: Vec<&str> = pattern.split('.').collect();
    let tp: Vec<&str> = topic.split('.').collect();
    for (i, p) in pp.iter().enumerate() {
        let last = i == pp.len() - 1;
        match tp.get(i) {
            None => return false,
            Some(t) => {
                if *p == "*" {
                    if last {
                        return true;
                    }
                } else if p != t {
                    return false;
                }
            }
        }
    }
    pp.len() == tp.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(validate_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(validate_url("https://crm.example.com").is_ok());
        for bad in [
            "ftp://x",
            "http://",
            "127.0.0.1:80",
            "http:// x",
            "https://:80/",
        ] {
            assert!(validate_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(timeout("").unwrap(), 15.0);
        assert_eq!(timeout("2.5").unwrap(), 2.5);
        assert!(timeout("abc").is_err());
        assert!(concurrency("0").is_err());
        assert_eq!(concurrency("16").unwrap(), 16);
        assert!(shutdown_grace("-1").is_err());
    }

    #[test]
    fn default_endpoint() {
        let mut ini = IniValues {
            endpoint: "http://127.0.0.1:1/x".into(),
            ..Default::default()
        };
        let d = DefaultEndpoint::from_ini(&ini).unwrap();
        assert_eq!(d.retry_delays, crate::retry::DEFAULT_DELAYS);
        ini.secret = "whsec_bad".into();
        assert!(DefaultEndpoint::from_ini(&ini).is_err());
        ini.secret = String::new();
        ini.retry_delays = "1,x".into();
        assert!(DefaultEndpoint::from_ini(&ini).is_err());
    }

    #[test]
    fn topic_filters() {
        let f = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(topic_matches(&[], "a.b"));
        assert!(topic_matches(&f(&["order.*"]), "order.created"));
        assert!(topic_matches(&f(&["order.*"]), "order.status.changed"));
        assert!(!topic_matches(&f(&["order.*"]), "product.stock_updated"));
        assert!(topic_matches(&f(&["*.created"]), "customer.created"));
        assert!(!topic_matches(&f(&["*.created"]), "customer.updated"));
        assert!(topic_matches(
            &f(&["product.stock_updated"]),
            "product.stock_updated"
        ));
        assert!(!topic_matches(&f(&["product"]), "product.stock_updated"));
    }

    #[test]
    fn database_paths() {
        let d = database_path("").unwrap();
        assert!(
            d.ends_with(format!("woosync-{}/outbox.sqlite", crate::files::euid())),
            "{d:?}"
        );
        assert_eq!(
            database_path("/x/y.sqlite").unwrap(),
            PathBuf::from("/x/y.sqlite")
        );
        assert_eq!(
            database_path(" /x/y.sqlite ").unwrap(),
            PathBuf::from("/x/y.sqlite")
        );
        for bad in ["  ", "x/y.sqlite", "./y.sqlite", "/x/{blog_id}.sqlite"] {
            assert!(database_path(bad).is_err(), "{bad}");
        }
    }
}
