//! Who is asking: the address rate limits count requests by. Behind a load balancer
//! every request comes from the balancer, so `X-Forwarded-For` is read — but only
//! the part written by proxies the operator trusts; anything further left could
//! have been sent by the client itself.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client's address: the peer, unless the peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` entry that is not a trusted proxy.
/// `forwarded_for`: every `X-Forwarded-For` line in order (a proxy may add a line of
/// its own rather than append to the client's, RFC 7230 §3.2.2). IPv4 peers of a
/// dual-stack listener (`::ffff:a.b.c.d`) count as the IPv4 address they are.
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted_proxies: &[IpNet]) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !trusted(&peer) {
        return peer;
    }
    let mut last_trusted = peer;
    for hop in forwarded_for.iter().rev().flat_map(|line| line.rsplit(',')).map(str::trim) {
        match hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if trusted(&ip) => last_trusted = ip,
            Ok(ip) => return ip,
            // A garbled entry: nothing left of it can be believed.
            Err(_) => return last_trusted,
        }
    }
    last_trusted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // Straight from the client: its own address, whatever headers it sends.
        assert_eq!(client_ip(ip("203.0.113.9"), &["1.2.3.4"], &proxies), ip("203.0.113.9"));
        // Through the balancer: the address the balancer saw.
        assert_eq!(client_ip(ip("10.0.0.2"), &["198.51.100.7"], &proxies), ip("198.51.100.7"));
        // A client forging a left-most entry gains nothing: the right-most untrusted hop wins.
        assert_eq!(client_ip(ip("10.0.0.2"), &["1.2.3.4, 198.51.100.7, 10.0.0.3"], &proxies), ip("198.51.100.7"));
        // No header, or garbage, from a proxy: the last trusted hop (all such requests share a bucket).
        assert_eq!(client_ip(ip("10.0.0.2"), &[], &proxies), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("10.0.0.2"), &["not-an-ip, 10.0.0.3"], &proxies), ip("10.0.0.3"));
        // No trusted proxies configured: the peer, always.
        assert_eq!(client_ip(ip("10.0.0.2"), &["198.51.100.7"], &[]), ip("10.0.0.2"));
        // A forged line of the client's before the proxy's own line: the proxy's line wins.
        assert_eq!(client_ip(ip("10.0.0.2"), &["1.2.3.4", "198.51.100.7"], &proxies), ip("198.51.100.7"));
        // A dual-stack listener sees IPv4 peers as IPv4-mapped IPv6.
        assert_eq!(client_ip(ip("::ffff:10.0.0.2"), &["198.51.100.7"], &proxies), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("::ffff:203.0.113.9"), &[], &proxies), ip("203.0.113.9"));
    }
}
