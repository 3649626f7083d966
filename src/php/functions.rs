//! The PHP functions. Each one converts its arguments, calls the core and converts the result;
//! every error is a `WooSyncException` (see `exception.rs`).

use super::convert::{
    self, zbool, zbytes, zfloat, zint, znull, zopt_f, zopt_i, zopt_str, zstr, Arr,
};
use super::exception::{guard, input, to_php};
use super::ini;
use crate::client::{self, DispatchOptions};
use crate::config::EndpointConfig;
use crate::error::quote;
use crate::event::rfc3339;
use crate::outbox::{state, EventDetail, EventFilter};
use crate::signer;
use ext_php_rs::binary::Binary;
use ext_php_rs::boxed::ZBox;
use ext_php_rs::exception::PhpResult;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};

fn text(b: &Binary<u8>, what: &str) -> PhpResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| input(format!("{what} is not valid UTF-8")))
}

fn dispatch_options(options: Option<&ZendHashTable>) -> PhpResult<DispatchOptions> {
    let mut o = DispatchOptions::default();
    let Some(ht) = options else { return Ok(o) };
    for (k, v) in convert::entries(ht) {
        let v = v.dereference();
        match k.as_deref() {
            Some("key") => {
                if !v.is_null() {
                    let key = match v.long() {
                        Some(n) => n.to_string(),
                        None => convert::utf8(v, "option \"key\"").map_err(to_php)?.to_string(),
                    };
                    o.key = Some(key);
                }
            }
            Some("coalesce") => o.coalesce = convert::flag(v, "option \"coalesce\"").map_err(to_php)?,
            Some("endpoints") => {
                if !v.is_null() {
                    let arr = v.array().ok_or_else(|| input("option \"endpoints\" must be a list of endpoint names"))?;
                    let mut names = Vec::new();
                    for (_, n) in convert::entries(arr) {
                        names.push(convert::utf8(n, "option \"endpoints\"").map_err(to_php)?.to_string());
                    }
                    o.endpoints = Some(names);
                }
            }
            Some("raw_body") => {
                if !v.is_null() {
                    let b = convert::bytes(v).ok_or_else(|| input("option \"raw_body\" must be a string (the exact body to send)"))?;
                    o.raw_body = Some(b.to_vec());
                }
            }
            Some("headers") => {
                if !v.is_null() {
                    o.headers = convert::string_map(v, "option \"headers\"").map_err(to_php)?;
                }
            }
            Some(other) => {
                return Err(input(format!("unknown option {}; woosync_dispatch accepts \"key\", \"coalesce\", \"endpoints\", \"raw_body\" and \"headers\"", quote(other))))
            }
            None => return Err(input("options must be an array with string keys (\"key\", \"coalesce\", \"endpoints\")")),
        }
    }
    Ok(o)
}

/// Stores an event durably in the outbox and wakes the sender; returns the event id.
///
/// @param string $topic Dotted lower-case topic such as `product.stock_updated`.
/// @param array $payload Scalars, arrays and stdClass only.
/// @param array|null $options `key` (ordering key), `coalesce` (bool), `endpoints` (list of names).
/// @return string Event id, `evt_` followed by a ULID.
/// @throws WooSyncException on invalid input, configuration or an unusable outbox.
#[php_function]
pub fn woosync_dispatch(
    topic: Binary<u8>,
    payload: &ZendHashTable,
    options: Option<&ZendHashTable>,
) -> PhpResult<String> {
    guard(|| {
        let topic = text(&topic, "topic")?;
        let opts = dispatch_options(options)?;
        if opts.raw_body.is_some() && !payload.is_empty() {
            return Err(input(
                "with option \"raw_body\" the payload must be [] (the raw body is what is sent)",
            ));
        }
        let data = convert::payload_json(payload).map_err(to_php)?;
        client::dispatch(&ini::values(), &topic, &data, &opts).map_err(to_php)
    })
}

/// Waits until every event in the outbox is delivered or dead, or the timeout passes.
///
/// @param float $timeout_seconds Longest wait.
/// @return bool True when nothing is left pending.
#[php_function]
#[php(defaults(timeout_seconds = 5.0))]
pub fn woosync_flush(timeout_seconds: f64) -> PhpResult<bool> {
    guard(|| client::flush(&ini::values(), timeout_seconds).map_err(to_php))
}

/// Health word of an endpoint: off, unconfigured, disabled, refused (destination policy), paused
/// (breaker open), failing, healthy.
fn health(r: &crate::outbox::EndpointRow, now: f64) -> &'static str {
    if !r.enabled {
        "off"
    } else if r.url.is_empty() {
        "unconfigured"
    } else if r.disabled_at.is_some() {
        "disabled"
    } else if r.refused_reason.is_some() {
        "refused"
    } else if r.consecutive_failures >= crate::outbox::BREAKER_THRESHOLD && r.breaker_until > now {
        "paused"
    } else if r.consecutive_failures > 0 {
        "failing"
    } else {
        "healthy"
    }
}

fn endpoint_array(e: &crate::outbox::EndpointStatus) -> Zval {
    let r = &e.row;
    let now = crate::event::now();
    let mut a = Arr::new();
    a.set("name", zstr(&r.name))
        .set("url", zstr(&crate::redact::url(&r.url)))
        .set("enabled", zbool(r.enabled && r.disabled_at.is_none()))
        .set("disabled_reason", zopt_str(r.disabled_reason.as_deref()))
        .set(
            "disabled_at",
            zopt_str(r.disabled_at.map(rfc3339).as_deref()),
        )
        .set(
            "secret",
            zstr(&if crate::secrets::is_sealed(&r.secret) {
                "(encrypted)".to_string()
            } else {
                signer::mask(&r.secret)
            }),
        )
        .set("topics", {
            let mut t = Arr::new();
            for x in &r.topics {
                t.push(zstr(x));
            }
            t.into_zval()
        })
        .set("format", zstr(r.format.as_str()))
        .set("health", zstr(health(r, now)))
        .set(
            "breaker_open_until",
            if r.breaker_until > now {
                zstr(&rfc3339(r.breaker_until))
            } else {
                znull()
            },
        )
        .set(
            "rotating_until",
            if r.prev_secret_until > now && !r.prev_secret.is_empty() {
                zstr(&rfc3339(r.prev_secret_until))
            } else {
                znull()
            },
        )
        .set(
            "secret_encrypted",
            zbool(crate::secrets::is_sealed(&r.secret)),
        )
        .set("rate_limit", zfloat(r.rate_limit))
        .set("timeout", zfloat(r.timeout))
        .set("proxy", zstr(&crate::redact::url(&r.proxy)))
        .set("retry_delays", zstr(&r.retry_delays))
        .set("source", zstr(&r.source))
        .set("allow_networks", {
            let mut t = Arr::new();
            for n in r.allow_networks.split(',').filter(|n| !n.is_empty()) {
                t.push(zstr(n));
            }
            t.into_zval()
        })
        .set("refused_reason", zopt_str(r.refused_reason.as_deref()))
        .set("signature", zstr(r.signature.as_str()))
        .set("hash_algorithm", zstr(r.hash_algorithm.as_str()))
        .set("success_codes", zstr(&r.success_codes.to_text()))
        .set("user_agent", zstr(&r.user_agent))
        .set("headers", {
            let mut h = Arr::new();
            for (name, value) in &r.headers {
                h.set(name, zstr(&crate::redact::header(name, value)));
            }
            h.into_zval()
        })
        .set("wc_webhook_id", zopt_i(r.wc_webhook_id))
        .set("pending", zint(e.counts[0] + e.counts[1] + e.counts[2]))
        .set("in_flight", zint(e.counts[2]))
        .set("delivered", zint(e.counts[3]))
        .set("dead", zint(e.counts[4]))
        .set("superseded", zint(e.counts[5]))
        .set("consecutive_failures", zint(r.consecutive_failures))
        .set(
            "last_success_at",
            zopt_str(r.last_success_at.map(rfc3339).as_deref()),
        )
        .set("last_error", zopt_str(r.last_error.as_deref()))
        .set(
            "last_error_at",
            zopt_str(r.last_error_at.map(rfc3339).as_deref()),
        );
    a.into_zval()
}

/// Counts by state, oldest pending age, last error and success, worker state and endpoints.
///
/// @return array
#[php_function]
pub fn woosync_status() -> PhpResult<ZBox<ZendHashTable>> {
    guard(|| {
        let r = client::status(&ini::values()).map_err(to_php)?;
        let s = &r.status;
        let now = crate::event::now();
        let mut a = Arr::new();
        a.set("version", zstr(env!("CARGO_PKG_VERSION")))
            .set("database", zstr(&r.database.display()))
            .set("pending", zint(s.pending()))
            .set("in_flight", zint(s.in_flight))
            .set("delivered", zint(s.delivered))
            .set("dead", zint(s.dead))
            .set("superseded", zint(s.superseded))
            .set("unrouted", zint(s.unrouted))
            .set(
                "oldest_pending_age",
                zopt_f(s.oldest_pending_at.map(|t| (now - t).max(0.0))),
            )
            .set("last_error", zopt_str(s.last_error.as_deref()))
            .set(
                "last_error_at",
                zopt_str(s.last_error_at.map(rfc3339).as_deref()),
            )
            .set(
                "last_success_at",
                zopt_str(s.last_success_at.map(rfc3339).as_deref()),
            )
            .set("worker", zstr(r.worker.as_str()))
            .set("worker_error", zopt_str(r.worker_error.as_deref()))
            .set("sender_pid", zopt_i(r.sender_pid.map(i64::from)))
            .set("sender_host", zopt_str(r.sender_host.as_deref()))
            .set(
                "moved_to",
                zopt_str(
                    r.status
                        .moved_to
                        .as_deref()
                        .map(crate::outbox::MysqlUrl::mask_text)
                        .as_deref(),
                ),
            )
            .set(
                "importing_from",
                zopt_str(
                    r.status
                        .importing_from
                        .as_deref()
                        .map(crate::outbox::MysqlUrl::mask_text)
                        .as_deref(),
                ),
            )
            .set("secrets_encrypted", zbool(r.key_configured))
            .set("notices", {
                let mut list = Arr::new();
                for n in &r.notices {
                    list.push(zstr(n));
                }
                list.into_zval()
            })
            .set("endpoints", {
                let mut list = Arr::new();
                for e in &s.endpoints {
                    list.push(endpoint_array(e));
                }
                list.into_zval()
            });
        Ok(a.0)
    })
}

/// Receiver-side Standard Webhooks check (constant time; header names case-insensitive; several
/// space-separated signatures accepted; binary-safe body).
///
/// @param string $body Raw request body.
/// @param array $headers Request headers (`name => value`, `name => [values]`, or `"Name: value"` lines).
/// @param string $secret `whsec_…` with or without base64 padding.
/// @param int $tolerance_seconds Largest accepted clock difference.
/// @return bool
#[php_function]
#[php(defaults(tolerance_seconds = 300))]
pub fn woosync_verify(
    body: Binary<u8>,
    headers: &ZendHashTable,
    secret: Binary<u8>,
    tolerance_seconds: i64,
) -> PhpResult<bool> {
    guard(|| {
        let secret = text(&secret, "secret")?;
        let hs = convert::headers(headers);
        let now = crate::event::now() as i64;
        signer::verify(&body, &hs, &secret, tolerance_seconds, now).map_err(to_php)
    })
}

/// Puts a dead (or delivered: replay) event back to pending, same id; routes an unrouted one.
///
/// @param string $event_id
/// @return bool False when the id is unknown or nothing was requeued.
#[php_function]
pub fn woosync_retry(event_id: Binary<u8>) -> PhpResult<bool> {
    guard(|| {
        let id = text(&event_id, "event id")?;
        client::retry(&ini::values(), &id).map_err(to_php)
    })
}

/// Requeues every dead delivery (of one endpoint, or all).
///
/// @param string|null $endpoint
/// @return int How many deliveries were requeued.
#[php_function]
pub fn woosync_retry_dead(endpoint: Option<Binary<u8>>) -> PhpResult<i64> {
    guard(|| {
        let endpoint = match &endpoint {
            Some(b) => Some(text(b, "endpoint name")?),
            None => None,
        };
        client::retry_dead(&ini::values(), endpoint.as_deref())
            .map(|n| n as i64)
            .map_err(to_php)
    })
}

fn state_code(name: &str) -> PhpResult<i64> {
    Ok(match name {
        "pending" => state::READY,
        "queued" => state::QUEUED,
        "in_flight" => state::INFLIGHT,
        "delivered" => state::DELIVERED,
        "dead" => state::DEAD,
        "superseded" => state::SUPERSEDED,
        "unrouted" => state::UNROUTED,
        other => {
            return Err(input(format!(
                "unknown status {}; use pending, queued, in_flight, delivered, dead, superseded or unrouted",
                quote(other)
            )))
        }
    })
}

fn parse_filter(ht: Option<&ZendHashTable>) -> PhpResult<EventFilter> {
    let mut f = EventFilter {
        limit: 50,
        ..Default::default()
    };
    let Some(ht) = ht else { return Ok(f) };
    for (k, v) in convert::entries(ht) {
        let v = v.dereference();
        if v.is_null() {
            continue;
        }
        let s = |what: &str| convert::utf8(v, what).map(str::to_string).map_err(to_php);
        match k.as_deref() {
            Some("status") | Some("state") => f.state = Some(state_code(&s("status")?)?),
            Some("topic") => f.topic = Some(s("topic")?),
            Some("key") => f.key = Some(s("key")?),
            Some("key_prefix") => f.key_prefix = Some(s("key_prefix")?),
            Some("endpoint") => {
                f.endpoints = Some(match v.array() {
                    Some(list) => {
                        let mut names = Vec::new();
                        for (_, n) in convert::entries(list) {
                            names.push(convert::utf8(n, "filter \"endpoint\"").map_err(to_php)?.to_string());
                        }
                        names
                    }
                    None => vec![s("endpoint")?],
                })
            }
            Some("since") => {
                f.since = Some(match (v.long(), v.double()) {
                    (Some(n), _) => n as f64,
                    (_, Some(d)) => d,
                    _ => return Err(input("filter \"since\" must be a unix timestamp")),
                })
            }
            Some(name @ ("limit" | "offset")) => {
                let n = v
                    .long()
                    .ok_or_else(|| input(format!("filter \"{name}\" must be an integer")))?;
                if n < 0 {
                    return Err(input(format!("filter \"{name}\" must be zero or more, not {n}")));
                }
                if name == "limit" {
                    f.limit = n;
                } else {
                    f.offset = n;
                }
            }
            Some(other) => {
                return Err(input(format!(
                    "unknown filter {}; use status, topic, key, key_prefix, endpoint, since, limit, offset",
                    quote(other)
                )))
            }
            None => {
                return Err(input(
                    "the filter must be an array with string keys (status, topic, key, key_prefix, endpoint, since, limit, offset)",
                ))
            }
        }
    }
    Ok(f)
}

/// Events (one row per delivery), newest first.
///
/// @param array|null $filter `status`, `topic`, `key`, `endpoint`, `since` (unix time), `limit` (default 50), `offset`.
/// @return array
#[php_function]
pub fn woosync_events(filter: Option<&ZendHashTable>) -> PhpResult<ZBox<ZendHashTable>> {
    guard(|| {
        let f = parse_filter(filter)?;
        let rows = client::events(&ini::values(), &f).map_err(to_php)?;
        let mut list = Arr::new();
        for r in rows {
            let mut a = Arr::new();
            a.set("id", zstr(&r.event_id))
                .set("topic", zstr(&r.topic))
                .set("key", zopt_str(r.key.as_deref()))
                .set("sequence", zint(r.seq))
                .set("created_at", zstr(&rfc3339(r.created_at)))
                .set("endpoint", zopt_str(r.endpoint.as_deref()))
                .set("state", zstr(state::name(r.state)))
                .set("attempts", zint(r.attempts))
                .set(
                    "next_attempt_at",
                    if r.state <= state::READY {
                        zopt_str(r.next_attempt_at.map(rfc3339).as_deref())
                    } else {
                        znull()
                    },
                )
                .set("last_status", zopt_i(r.last_status))
                .set("last_error", zopt_str(r.last_error.as_deref()))
                .set("last_duration_ms", zopt_f(r.last_duration_ms));
            list.push(a.into_zval());
        }
        Ok(list.0)
    })
}

fn event_array(d: &EventDetail) -> ZBox<ZendHashTable> {
    let mut a = Arr::new();
    a.set("id", zstr(&d.event_id))
        .set("topic", zstr(&d.topic))
        .set("key", zopt_str(d.key.as_deref()))
        .set("sequence", zint(d.seq))
        .set("created_at", zstr(&rfc3339(d.created_at)))
        .set("unrouted", zbool(d.unrouted))
        .set("body", zbytes(&d.body))
        .set(
            "payload",
            zbytes(if d.raw {
                &d.body
            } else {
                crate::event::data_of(&d.body, d.data_offset)
            }),
        )
        .set("raw", zbool(d.raw));
    let mut ds = Arr::new();
    for x in &d.deliveries {
        let mut r = Arr::new();
        r.set("endpoint", zstr(&x.endpoint))
            .set("state", zstr(state::name(x.state)))
            .set("attempts", zint(x.attempts))
            .set(
                "next_attempt_at",
                if x.state <= state::READY {
                    zstr(&rfc3339(x.next_attempt_at))
                } else {
                    znull()
                },
            )
            .set("last_status", zopt_i(x.last_status))
            .set("last_error", zopt_str(x.last_error.as_deref()))
            .set("updated_at", zstr(&rfc3339(x.updated_at)));
        ds.push(r.into_zval());
    }
    a.set("deliveries", ds.into_zval());
    let mut at = Arr::new();
    for x in &d.attempts {
        let mut r = Arr::new();
        r.set("endpoint", zstr(&x.endpoint))
            .set("started_at", zstr(&rfc3339(x.started_at)))
            .set("duration_ms", zfloat(x.duration_ms))
            .set("http_status", zopt_i(x.http_status))
            .set("error_class", zopt_str(x.error_class.as_deref()))
            .set("error", zopt_str(x.error.as_deref()))
            .set("response", x.response.as_deref().map_or_else(znull, zbytes))
            .set("delivery_id", zopt_str(x.delivery_uuid.as_deref()));
        at.push(r.into_zval());
    }
    a.set("attempts", at.into_zval());
    a.0
}

/// One event: payload, body as sent, deliveries per endpoint and every attempt.
///
/// @param string $id
/// @return array|null Null when the id is unknown.
#[php_function]
pub fn woosync_event(id: Binary<u8>) -> PhpResult<Option<ZBox<ZendHashTable>>> {
    guard(|| {
        let id = text(&id, "event id")?;
        let d = client::event(&ini::values(), &id).map_err(to_php)?;
        Ok(d.as_ref().map(event_array))
    })
}

fn endpoint_config(ht: &ZendHashTable) -> PhpResult<EndpointConfig> {
    let mut c = EndpointConfig::default();
    let mut has_url = false;
    for (k, v) in convert::entries(ht) {
        let v = v.dereference();
        let name = k.unwrap_or_default();
        let s = |what: &str| convert::utf8(v, what).map(str::to_string).map_err(to_php);
        let num = |what: &str| match (
            v.long(),
            v.double(),
            v.str().and_then(|x| x.trim().parse::<f64>().ok()),
        ) {
            (Some(n), _, _) => Ok(n as f64),
            (_, Some(d), _) => Ok(d),
            (_, _, Some(d)) => Ok(d),
            _ => Err(input(format!("endpoint \"{what}\" must be a number"))),
        };
        match name.as_str() {
            "url" => {
                c.url = s("url")?;
                has_url = true;
            }
            "secret" => c.secret = Some(if v.is_null() { String::new() } else { s("secret")? }),
            "topics" => {
                c.topics = if let Some(arr) = v.array() {
                    let mut t = Vec::new();
                    for (_, x) in convert::entries(arr) {
                        t.push(convert::utf8(x, "topics").map_err(to_php)?.trim().to_string());
                    }
                    t
                } else if v.is_null() {
                    vec![]
                } else {
                    s("topics")?.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
                }
            }
            "enabled" => c.enabled = convert::flag(v, "endpoint setting \"enabled\"").map_err(to_php)?,
            "rate_limit" => c.rate_limit = num("rate_limit")?,
            "timeout" => c.timeout = num("timeout")?,
            "proxy" => c.proxy = if v.is_null() { String::new() } else { s("proxy")? },
            "format" => c.format = crate::config::Format::parse(&s("format")?).map_err(to_php)?,
            "retry_delays" => c.retry_delays = s("retry_delays")?,
            "source" => c.source = if v.is_null() { String::new() } else { s("source")? },
            "allow_networks" => {
                let text = if let Some(arr) = v.array() {
                    let mut t = Vec::new();
                    for (_, x) in convert::entries(arr) {
                        t.push(convert::utf8(x, "allow_networks").map_err(to_php)?.to_string());
                    }
                    t.join(",")
                } else if v.is_null() {
                    String::new()
                } else {
                    s("allow_networks")?
                };
                c.allow_networks = crate::destination::parse_list(&text).map_err(to_php)?;
            }
            "signature" => c.signature = crate::config::SignatureMode::parse(&s("signature")?).map_err(to_php)?,
            "hash_algorithm" => {
                c.hash_algorithm = crate::config::HashAlgorithm::parse(&s("hash_algorithm")?).map_err(to_php)?
            }
            "success_codes" => {
                c.success_codes = crate::config::SuccessCodes::parse(&s("success_codes")?).map_err(to_php)?
            }
            "user_agent" => c.user_agent = if v.is_null() { String::new() } else { s("user_agent")? },
            "headers" => {
                c.headers = if v.is_null() {
                    Vec::new()
                } else {
                    convert::string_map(v, "endpoint setting \"headers\"").map_err(to_php)?
                }
            }
            "wc_webhook_id" => {
                c.wc_webhook_id = if v.is_null() {
                    None
                } else {
                    Some(v.long().ok_or_else(|| input("endpoint setting \"wc_webhook_id\" must be an integer"))?)
                }
            }
            other => {
                return Err(input(format!(
                    "unknown endpoint setting {}; use url, secret, topics, enabled, rate_limit, timeout, proxy, format, retry_delays, source, allow_networks, signature, hash_algorithm, success_codes, user_agent, headers, wc_webhook_id",
                    quote(other)
                )))
            }
        }
    }
    if !has_url {
        return Err(input("endpoint settings need a \"url\""));
    }
    Ok(c)
}

/// Creates or updates an endpoint stored in the outbox. A new secret keeps the previous one
/// signing too for 24 hours; saving re-enables an endpoint disabled by a 410.
///
/// @param string $name `^[a-z0-9_-]{1,64}$`, not `default` (the php.ini endpoint).
/// @param array $config url, secret, topics, enabled, rate_limit, timeout, proxy, format, retry_delays, source.
#[php_function]
pub fn woosync_endpoint_save(name: Binary<u8>, config: &ZendHashTable) -> PhpResult<()> {
    guard(|| {
        let name = text(&name, "endpoint name")?;
        let c = endpoint_config(config)?;
        client::endpoint_save(&ini::values(), &name, &c).map_err(to_php)
    })
}

/// Every endpoint (the php.ini one is `default`), secrets masked, with health and counts.
///
/// @return array
#[php_function]
pub fn woosync_endpoints() -> PhpResult<ZBox<ZendHashTable>> {
    guard(|| {
        let r = client::status(&ini::values()).map_err(to_php)?;
        let mut list = Arr::new();
        for e in r
            .status
            .endpoints
            .iter()
            .filter(|e| !e.row.name.contains("#deleted-"))
        {
            list.push(endpoint_array(e));
        }
        Ok(list.0)
    })
}

/// Deletes an endpoint stored in the outbox; its pending deliveries become dead.
///
/// @param string $name
#[php_function]
pub fn woosync_endpoint_delete(name: Binary<u8>) -> PhpResult<()> {
    guard(|| {
        let name = text(&name, "endpoint name")?;
        if client::endpoint_delete(&ini::values(), &name).map_err(to_php)? {
            Ok(())
        } else {
            Err(input(format!("no endpoint named {}", quote(&name))))
        }
    })
}

/// Deletes delivered, dead, superseded and unrouted events older than the given days.
///
/// @param int $older_than_days
/// @return int Number of events deleted.
#[php_function]
pub fn woosync_purge(older_than_days: i64) -> PhpResult<i64> {
    guard(|| {
        client::purge(&ini::values(), older_than_days as f64)
            .map(|n| n as i64)
            .map_err(to_php)
    })
}

/// Privacy erasure: deletes every finished event of an ordering key (such as `customer:42` or
/// `order:7`) with its attempts; events still waiting for delivery are kept until delivered.
///
/// @param string $key
/// @return array `deleted` (events removed) and `pending` (events kept until delivered).
#[php_function]
pub fn woosync_erase(key: Binary<u8>) -> PhpResult<ZBox<ZendHashTable>> {
    guard(|| {
        let key = text(&key, "key")?;
        let (deleted, pending) = client::erase(&ini::values(), &key).map_err(to_php)?;
        let mut a = Arr::new();
        a.set("deleted", zint(deleted as i64))
            .set("pending", zint(pending as i64));
        Ok(a.0)
    })
}

/// Moves this outbox (`woosync.database`) to another one — a SQLite path or a mysql:// URL —
/// keeping event ids, sequence numbers and per-key order: pending and dead events, the endpoints
/// and the per-key counters. Each call moves one batch; call it until `done` is true (an
/// interrupted move continues where it stopped). From the first call on, dispatches into this
/// outbox are stored in the target: switch `woosync.database` to it.
///
/// @param string $to
/// @param array|null $options `limit`: events per call (default 1000).
/// @return array `from`, `to` (passwords masked), `endpoints`, `keys`, `moved`, `remaining`, `done`.
#[php_function]
pub fn woosync_migrate(
    to: Binary<u8>,
    options: Option<&ZendHashTable>,
) -> PhpResult<ZBox<ZendHashTable>> {
    guard(|| {
        let to = text(&to, "to")?;
        let mut limit = 1000usize;
        if let Some(ht) = options {
            for (k, v) in convert::entries(ht) {
                let v = v.dereference();
                match k.as_deref() {
                    Some("limit") => {
                        let n =
                            v.long()
                                .filter(|n| (1..=100_000).contains(n))
                                .ok_or_else(|| {
                                    input("option \"limit\" must be an integer from 1 to 100000")
                                })?;
                        limit = n as usize;
                    }
                    Some(other) => {
                        return Err(input(format!(
                            "unknown option {} for woosync_migrate; known: limit",
                            crate::error::quote(other)
                        )))
                    }
                    None => {
                        return Err(input(
                            "woosync_migrate options must be an array with string keys",
                        ))
                    }
                }
            }
        }
        let r = client::migrate(&ini::values(), &to, limit).map_err(to_php)?;
        let mut a = Arr::new();
        a.set("from", zstr(&r.from.display()))
            .set("to", zstr(&r.to.display()))
            .set("endpoints", zint(r.step.endpoints as i64))
            .set("keys", zint(r.step.keys as i64))
            .set("moved", zint(r.step.moved as i64))
            .set("remaining", zint(r.step.remaining))
            .set("done", zbool(r.step.done));
        Ok(a.0)
    })
}

/// Runs this outbox's sender in this process (CLI only) until the time is up or SIGTERM/SIGINT;
/// returns the attempts it finished (delivered or dead). It takes over from, and hands over to,
/// senders in php-fpm workers through the election. On SIGTERM/SIGINT it winds down within
/// `woosync.shutdown_grace` before returning; when the time is up the sender keeps running in this
/// process until the next call or exit, so calling it in a loop loses nothing.
///
/// @param float $seconds INF (the default): until SIGTERM or SIGINT.
/// @return int
#[php_function]
#[php(defaults(seconds = f64::INFINITY))]
pub fn woosync_serve(seconds: f64) -> PhpResult<i64> {
    guard(|| {
        if !super::is_cli() {
            return Err(input(
                "woosync_serve runs in the PHP CLI only (e.g. wp woosync serve, or a systemd service); web requests send through php-fpm's own sender",
            ));
        }
        client::serve(&ini::values(), seconds)
            .map(|n| n as i64)
            .map_err(to_php)
    })
}

/// The outbox's metrics in the Prometheus text exposition format (version 0.0.4): attempts by
/// endpoint, outcome and class, delivered and dead totals, pending and in-flight gauges, oldest
/// pending age, a histogram of attempt durations, breaker state, sender up.
///
/// @return string
#[php_function]
pub fn woosync_metrics() -> PhpResult<String> {
    guard(|| client::metrics(&ini::values()).map_err(to_php))
}

/// Adds every function to the module.
pub fn register(module: ModuleBuilder) -> ModuleBuilder {
    module
        .function(wrap_function!(woosync_dispatch))
        .function(wrap_function!(woosync_flush))
        .function(wrap_function!(woosync_status))
        .function(wrap_function!(woosync_verify))
        .function(wrap_function!(woosync_retry))
        .function(wrap_function!(woosync_retry_dead))
        .function(wrap_function!(woosync_events))
        .function(wrap_function!(woosync_event))
        .function(wrap_function!(woosync_endpoint_save))
        .function(wrap_function!(woosync_endpoints))
        .function(wrap_function!(woosync_endpoint_delete))
        .function(wrap_function!(woosync_purge))
        .function(wrap_function!(woosync_erase))
        .function(wrap_function!(woosync_serve))
        .function(wrap_function!(woosync_migrate))
        .function(wrap_function!(woosync_metrics))
}
