//! Which addresses ssogate may talk to (the SSRF guard's rules), for identity
//! providers and for applications' back-channel logout endpoints alike.
//!
//! Connections are configured by customer admins, so a discovery URL is untrusted input:
//! without this guard it could point ssogate at `169.254.169.254` or an internal admin
//! port. The rules are pure; `crate::outbound` applies them to every resolved address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

use super::error::{Validated, ValidationError};

#[derive(Clone, Debug)]
pub struct NetworkPolicy {
    /// `--dev`: `http://` and loopback addresses are allowed.
    pub dev: bool,
    /// Non-public ranges an operator explicitly trusts.
    pub allowed_networks: Vec<IpNet>,
    /// The flag that lists them, for error messages (`--allow-idp-network`).
    pub allow_flag: &'static str,
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        NetworkPolicy::for_idps(false, vec![])
    }
}

impl NetworkPolicy {
    pub fn for_idps(dev: bool, allowed_networks: Vec<IpNet>) -> Self {
        NetworkPolicy { dev, allowed_networks, allow_flag: "--allow-idp-network" }
    }

    pub fn for_applications(dev: bool, allowed_networks: Vec<IpNet>) -> Self {
        NetworkPolicy { dev, allowed_networks, allow_flag: "--allow-app-network" }
    }

    /// Whether ssogate may open a connection to `ip`.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.allowed_networks.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        if ip.is_loopback() {
            return self.dev;
        }
        is_public(ip)
    }

    /// Checks an IdP URL before it is stored or fetched: scheme, credentials, and a
    /// literal IP host (names are checked again when they resolve).
    pub fn check_url(&self, field: &str, url: &Url) -> Validated<()> {
        let loopback_host = is_loopback_host(url);
        match url.scheme() {
            "https" => {}
            "http" if self.dev && loopback_host => {}
            "http" if self.dev => {
                return Err(ValidationError::new(field, "must use https (http is allowed in --dev mode only for loopback hosts)"))
            }
            "http" => {
                return Err(ValidationError::new(
                    field,
                    "must use https (http is allowed only for loopback hosts, with --dev / SSOGATE_DEV=1)",
                ))
            }
            other => return Err(ValidationError::new(field, format!("scheme `{other}` is not allowed; use https"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ValidationError::new(field, "must not contain credentials"));
        }
        if url.fragment().is_some() {
            return Err(ValidationError::new(field, "must not contain a fragment"));
        }
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(Host::Domain(_)) if loopback_host && !self.dev => {
                return Err(ValidationError::new(field, "points at a loopback host, which is allowed only in --dev mode"))
            }
            Some(Host::Domain(_)) => return Ok(()),
            None => return Err(ValidationError::new(field, "must have a host")),
        };
        if self.allows_ip(ip) {
            Ok(())
        } else {
            Err(ValidationError::new(
                field,
                format!("points at the non-public address {ip}; list its network with {} to allow it", self.allow_flag),
            ))
        }
    }
}

/// `localhost`, `*.localhost`, `127.x` or `::1`.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// IPv6 addresses that stand for one IPv4 address are judged as that address:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated but still
/// routed by some stacks) and IPv4-translated (`::ffff:0:a.b.c.d`, RFC 6145).
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let s = v6.segments();
    let translated = s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0;
    if translated {
        return IpAddr::V4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    // `::` and `::1` are IPv6's own unspecified and loopback addresses, not IPv4-compatible.
    if v6.is_loopback() || v6.is_unspecified() {
        return ip;
    }
    v6.to_ipv4().map(IpAddr::V4).unwrap_or(ip)
}

/// The IPv4 addresses a tunnelling prefix carries inside an IPv6 address, which a
/// relay would reach on ssogate's behalf: 6to4 (`2002:aabb:ccdd::/48`, RFC 3056) and
/// Teredo (`2001:0::/32`: the server, and the client XORed with ones, RFC 4380).
fn tunnelled_ipv4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match (s[0], s[1]) {
        (0x2002, _) => vec![v4(s[1], s[2])],
        (0x2001, 0x0000) => vec![v4(s[2], s[3]), v4(!s[6], !s[7])],
        _ => vec![],
    }
}

/// Globally routable unicast, by the IANA special-purpose registries.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            let seg0 = v6.segments()[0];
            let tunnelled = tunnelled_ipv4(v6);
            if !tunnelled.is_empty() {
                return tunnelled.into_iter().all(|v4| is_public(IpAddr::V4(v4)));
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local
                || (seg0 & 0xffc0) == 0xfe80 // link local
                || (seg0 & 0xffc0) == 0xfec0 // site local (deprecated, still routed in places)
                || seg0 == 0x2001 && v6.segments()[1] == 0x0002 && v6.segments()[2] == 0 // benchmarking
                || seg0 == 0x2001 && (v6.segments()[1] & 0xfff0) == 0x0010 // ORCHID
                || seg0 == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || seg0 == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 (and local-use NAT64) could reach private v4
                || seg0 == 0x0100 && v6.segments()[1..4] == [0, 0, 0]) // discard-only
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(dev: bool, nets: &[&str]) -> NetworkPolicy {
        NetworkPolicy::for_idps(dev, nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn check(p: &NetworkPolicy, url: &str) -> Result<(), String> {
        p.check_url("discovery_url", &Url::parse(url).unwrap()).map_err(|e| e.message)
    }

    #[test]
    fn non_public_addresses_are_refused() {
        let p = policy(false, &[]);
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            // IPv4 embedded in IPv6 in the other ways stacks and relays understand.
            "::127.0.0.1",
            "::169.254.169.254",
            "::ffff:0:169.254.169.254",
            "::ffff:0:10.0.0.1",
            "2002:a9fe:a9fe::",
            "2002:7f00:1::1",
            "2001:0:a9fe:a9fe::",
            "2001:0:808:808::f5ff:fffe", // public Teredo server, client 10.0.0.1
            "64:ff9b:1::a00:1",
            "100::1",
            "fec0::1",
            "192.88.99.1",
            "2001:2::1",
            "2001:10::1",
        ] {
            assert!(!p.allows_ip(ip.parse().unwrap()), "{ip} should be refused");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:0:8.8.8.8", "2002:808:808::1", "2001:0:808:808::f7f7:f7f7"] {
            assert!(p.allows_ip(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[test]
    fn dev_mode_allows_loopback_only() {
        let p = policy(true, &[]);
        assert!(p.allows_ip("127.0.0.1".parse().unwrap()));
        assert!(p.allows_ip("::1".parse().unwrap()));
        assert!(!p.allows_ip("10.0.0.1".parse().unwrap()));
        assert!(!p.allows_ip("169.254.169.254".parse().unwrap()));
    }

    #[test]
    fn operator_listed_networks_are_allowed() {
        let p = policy(false, &["10.20.0.0/16"]);
        assert!(p.allows_ip("10.20.3.4".parse().unwrap()));
        assert!(!p.allows_ip("10.21.3.4".parse().unwrap()));
        assert!(check(&p, "https://10.20.3.4/.well-known/openid-configuration").is_ok());
    }

    #[test]
    fn urls_need_https_outside_dev() {
        let p = policy(false, &[]);
        assert!(check(&p, "https://idp.example.com/.well-known/openid-configuration").is_ok());
        assert!(check(&p, "http://idp.example.com/x").unwrap_err().contains("https"));
        assert!(check(&p, "http://127.0.0.1:9000/x").is_err());
        assert!(check(&p, "https://localhost/x").unwrap_err().contains("--dev"));
        assert!(check(&p, "https://169.254.169.254/latest").unwrap_err().contains("non-public"));
        assert!(check(&p, "ftp://idp.example.com/x").is_err());
        assert!(check(&p, "https://user:pw@idp.example.com/x").unwrap_err().contains("credentials"));
    }

    #[test]
    fn dev_allows_http_on_loopback_only() {
        let p = policy(true, &[]);
        assert!(check(&p, "http://127.0.0.1:9000/x").is_ok());
        assert!(check(&p, "http://localhost:9000/x").is_ok());
        assert!(check(&p, "http://[::1]:9000/x").is_ok());
        assert!(check(&p, "http://idp.example.com/x").is_err());
    }
}
