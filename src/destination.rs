//! Where requests may go. A shop manager can set the CRM URL; without a policy that would let them
//! make the sender call `http://127.0.0.1:…`, the cloud metadata service at 169.254.169.254 or any
//! internal host, and read the answer in the log. So every address the sender connects to — after
//! DNS, so a name that resolves (or re-resolves) to an internal address cannot get around it — is
//! checked against the networks below, refused unless allowed by `woosync.allow_networks`
//! (php.ini / `-d` only) or by the endpoint's own `allow_networks` setting. With a proxy, the
//! policy applies to the proxy's address (the proxy decides where it connects).
//!
//! IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) IPv6 addresses are checked as
//! the IPv4 address they carry. Literal forms such as `0x7f.1` or `2130706433` resolve to
//! 127.0.0.1 and are refused as such.

use crate::error::{quote, Error, Result};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Network {
    /// `10.0.0.0/8`, `::1/128`, or a bare address (one host).
    pub fn parse(text: &str) -> Result<Network> {
        let t = text.trim();
        let bad = |why: &str| {
            Error::config(format!(
                "invalid network {} in allow_networks ({why}); use CIDR notation such as 127.0.0.1/32 or 10.0.0.0/8",
                quote(t)
            ))
        };
        let (a, p) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(bad(&format!("the prefix must be 0 to {max}"))),
            },
        };
        Ok(Network { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            // An allowed IPv4 network also allows its IPv4-mapped/compatible IPv6 forms.
            (IpAddr::V4(_), IpAddr::V6(a)) => {
                embedded_v4(a).is_some_and(|v4| self.contains(IpAddr::V4(v4)))
            }
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses a comma (or space) separated list of networks; empty gives an empty list.
pub fn parse_list(text: &str) -> Result<Vec<Network>> {
    text.split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Network::parse)
        .collect()
}

/// The networks refused unless allowed, with what they are.
const REFUSED_V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"this network\""),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "shared address space (carrier-grade NAT, cloud metadata)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "link-local (cloud metadata)",
    ),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
];
const REFUSED_V6: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "unspecified"),
    (Ipv6Addr::LOCALHOST, 128, "loopback"),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique local (private)",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`) or IPv4-compatible (`::a.b.c.d`)
/// IPv6 address.
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = a.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = a.segments();
    if s[..6] == [0; 6] && a != Ipv6Addr::UNSPECIFIED && a != Ipv6Addr::LOCALHOST {
        return Some(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    None
}

/// The refused network an address falls in: (network, what it is).
pub fn refused_network(ip: IpAddr) -> Option<(Network, &'static str)> {
    let ip = match ip {
        IpAddr::V6(a) => embedded_v4(a).map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(_) => REFUSED_V4.iter().find_map(|&(n, p, what)| {
            let net = Network {
                addr: IpAddr::V4(n),
                prefix: p,
            };
            net.contains(ip).then_some((net, what))
        }),
        IpAddr::V6(_) => REFUSED_V6.iter().find_map(|&(n, p, what)| {
            let net = Network {
                addr: IpAddr::V6(n),
                prefix: p,
            };
            net.contains(ip).then_some((net, what))
        }),
    }
}

/// Why one address may not be connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub ip: IpAddr,
    pub network: Network,
    pub what: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.ip {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        };
        write!(
            f,
            "{} is in {} ({}), which woosync does not connect to unless allowed: add {host} (or the network) to woosync.allow_networks in php.ini, or to the endpoint's allow_networks setting",
            self.ip, self.network, self.what
        )
    }
}

impl std::error::Error for Refused {}

/// The destination policy of one endpoint: the networks allowed besides the public internet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Policy {
    pub allow: Vec<Network>,
}

impl Policy {
    pub fn new(php_ini: &[Network], endpoint: &[Network]) -> Policy {
        let mut allow = php_ini.to_vec();
        allow.extend_from_slice(endpoint);
        Policy { allow }
    }

    pub fn check(&self, ip: IpAddr) -> std::result::Result<(), Refused> {
        match refused_network(ip) {
            Some((network, what)) if !self.allow.iter().any(|n| n.contains(ip)) => {
                Err(Refused { ip, network, what })
            }
            _ => Ok(()),
        }
    }

    /// Keeps the addresses that may be connected to; the first refusal when none may.
    pub fn filter(&self, addrs: &[SocketAddr]) -> std::result::Result<Vec<SocketAddr>, Refused> {
        let mut first = None;
        let mut ok = Vec::new();
        for a in addrs {
            match self.check(a.ip()) {
                Ok(()) => ok.push(*a),
                Err(r) => {
                    first.get_or_insert(r);
                }
            }
        }
        match (ok.is_empty(), first) {
            (true, Some(r)) => Err(r),
            _ => Ok(ok),
        }
    }
}

/// How long a resolved name is reused. ureq resolves before it looks in its connection pool, so
/// without this every request on a kept-alive connection paid a DNS lookup on a thread spawned for
/// it (ureq's timeout). The addresses reused are the ones checked: the policy is applied on every
/// call, so a name still cannot rebind around it; a changed DNS answer is seen within this time.
pub const RESOLVE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// ureq's resolver with the policy applied to what it resolved (the addresses then connected to).
/// An address literal (`http://10.1.2.3:8080/`) is taken as is, without a lookup.
#[derive(Debug, Default)]
pub struct PolicyResolver {
    pub policy: Policy,
    pub inner: ureq::unversioned::resolver::DefaultResolver,
    /// The last name resolved: (scheme and authority, when, addresses).
    pub cache: std::sync::Mutex<Option<(String, std::time::Instant, Vec<SocketAddr>)>>,
}

impl PolicyResolver {
    pub fn new(policy: Policy) -> PolicyResolver {
        PolicyResolver {
            policy,
            ..Default::default()
        }
    }

    /// The address of a URI whose host is an IP literal (`[…]` for IPv6) with its port.
    fn literal(uri: &ureq::http::Uri) -> Option<SocketAddr> {
        let host = uri.host()?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip: IpAddr = host.parse().ok()?;
        let port = uri.port_u16().or_else(|| match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        })?;
        Some(SocketAddr::new(ip, port))
    }
}

impl ureq::unversioned::resolver::Resolver for PolicyResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> std::result::Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let all: Vec<SocketAddr> = match Self::literal(uri) {
            Some(a) => config.ip_family().keep_wanted(std::iter::once(a)).collect(),
            None => {
                let name = format!(
                    "{}://{}",
                    uri.scheme_str().unwrap_or(""),
                    uri.authority().map_or("", |a| a.as_str())
                );
                let cached = match self.cache.lock() {
                    Ok(c) => c
                        .as_ref()
                        .filter(|(n, at, _)| *n == name && at.elapsed() < RESOLVE_TTL)
                        .map(|(_, _, a)| a.clone()),
                    Err(_) => None,
                };
                match cached {
                    Some(a) => a,
                    None => {
                        let a: Vec<SocketAddr> = self
                            .inner
                            .resolve(uri, config, timeout)?
                            .iter()
                            .copied()
                            .collect();
                        if let Ok(mut c) = self.cache.lock() {
                            *c = Some((name, std::time::Instant::now(), a.clone()));
                        }
                        a
                    }
                }
            }
        };
        if all.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        let kept = self.policy.filter(&all).map_err(|r| {
            ureq::Error::Io(std::io::Error::new(std::io::ErrorKind::PermissionDenied, r))
        })?;
        let mut out = self.inner.empty();
        for a in kept {
            out.push(a);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        Policy::default().check(s.parse().unwrap()).is_err()
    }

    #[test]
    fn refuses_internal_ranges_in_every_form() {
        for a in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.100.100.200",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::ffff:10.0.0.1",
            "::a9fe:a9fe",
        ] {
            assert!(refused(a), "{a} must be refused");
        }
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "2606:4700::1111",
        ] {
            assert!(!refused(a), "{a} must be allowed");
        }
    }

    #[test]
    fn address_literals_need_no_lookup() {
        let lit = |u: &str| PolicyResolver::literal(&u.parse().unwrap());
        assert_eq!(
            lit("http://127.0.0.1:8080/x"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            lit("https://10.1.2.3/"),
            Some("10.1.2.3:443".parse().unwrap())
        );
        assert_eq!(lit("http://[::1]/"), Some("[::1]:80".parse().unwrap()));
        // Names and the odd literal forms getaddrinfo accepts go through the lookup (and the policy).
        assert_eq!(lit("http://localhost:8080/"), None);
        assert_eq!(lit("http://2130706433/"), None);
        assert_eq!(lit("http://0x7f.1/"), None);
    }

    #[test]
    fn literals_and_names_are_checked_by_the_policy() {
        use ureq::unversioned::resolver::Resolver;
        let r = PolicyResolver::new(Policy::default());
        let cfg = ureq::config::Config::default();
        let t = ureq::unversioned::transport::NextTimeout::default();
        for u in [
            "http://127.0.0.1:9/",
            "http://localhost:9/",
            "http://localhost:9/",
        ] {
            let e = r
                .resolve(&u.parse().unwrap(), &cfg, t)
                .unwrap_err()
                .to_string();
            assert!(e.contains("woosync.allow_networks"), "{u}: {e}");
        }
        let ok = PolicyResolver::new(Policy::new(
            &parse_list("127.0.0.0/8, ::1/128").unwrap(),
            &[],
        ));
        let a = ok
            .resolve(&"http://127.0.0.1:9/".parse().unwrap(), &cfg, t)
            .unwrap();
        assert_eq!(&a[..], &["127.0.0.1:9".parse::<SocketAddr>().unwrap()][..]);
        assert!(!ok
            .resolve(&"http://localhost:9/".parse().unwrap(), &cfg, t)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn allow_lists() {
        let p = Policy::new(
            &parse_list("127.0.0.1/32").unwrap(),
            &parse_list("10.0.0.0/8, fd00::/8").unwrap(),
        );
        assert!(p.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(
            p.check("::ffff:127.0.0.1".parse().unwrap()).is_ok(),
            "the mapped form of an allowed v4"
        );
        assert!(p.check("127.0.0.2".parse().unwrap()).is_err());
        assert!(p.check("10.200.1.1".parse().unwrap()).is_ok());
        assert!(p.check("fd00::5".parse().unwrap()).is_ok());
        assert!(p.check("fe80::1".parse().unwrap()).is_err());
        let e = p
            .check("169.254.169.254".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("169.254.0.0/16")
                && e.contains("woosync.allow_networks")
                && e.contains("169.254.169.254/32"),
            "{e}"
        );
        for bad in ["10.0.0.0/33", "x", "::1/129", "1.2.3.4/-1", "10.0.0.0/8/8"] {
            assert!(parse_list(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_list("").unwrap(), vec![]);
        assert_eq!(parse_list("::1").unwrap()[0].prefix, 128);
    }

    #[test]
    fn filter_keeps_public_addresses() {
        let p = Policy::default();
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:80".parse().unwrap(),
            "93.184.216.34:80".parse().unwrap(),
        ];
        assert_eq!(p.filter(&addrs).unwrap(), vec![addrs[1]]);
        assert!(p.filter(&addrs[..1]).is_err());
    }
}
