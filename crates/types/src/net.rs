//! Address blocks (`10.0.0.0/8`, `2001:db8::/32`, or one address) for the settings that name
//! networks (the gateway's trusted networks, `outbound.allowed_networks`), which addresses are
//! inside a network rather than on the internet ([`is_internal`]), and the outbound policy's
//! check of a webhook URL ([`check_outbound_url`]).
//!
//! Pure: no name is resolved here (the caller checks resolved addresses with [`allows`]).

use std::net::IpAddr;

use url::{Host, Url};

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a network: write an address with an optional prefix length, such as 192.168.10.0/24 or 2001:db8::/32"
)]
pub struct NetworkParseError(String);

impl std::str::FromStr for Network {
    type Err = NetworkParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || NetworkParseError(s.to_owned());
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(err)?,
        };
        // An IPv4 block written as IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) is that IPv4 block:
        // its addresses count as IPv4 when matched.
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Ok(Network {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Ok(Network { addr, prefix })
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Network {
    /// Whether `ip` lies in this block (an IPv4-mapped IPv6 address counts as IPv4, so only
    /// IPv4 blocks hold one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether `ip` is not a public internet address: loopback, private (RFC 1918), link-local
/// (cloud metadata services live there), unique-local IPv6, CGNAT (100.64/10), multicast,
/// broadcast, unspecified, documentation and benchmarking ranges, and IPv4-mapped or -compatible
/// IPv6 forms of any of them. Outbound webhooks are refused there unless allowed.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_unspecified() && !v6.is_loopback() {
                // IPv4-compatible (deprecated) form.
                let o = v6.octets();
                let v4 = std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]);
                return is_internal(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || s[0] == 0x2001 && s[1] == 0x0db8
                || s[0] == 0x0064 && s[1] == 0xff9b
        }
    }
}

/// Whether the outbound policy lets a connection go to `ip`: any internet address, and an
/// internal one only inside a block of `allowed` (`outbound.allowed_networks`).
pub fn allows(allowed: &[Network], ip: IpAddr) -> bool {
    !is_internal(ip) || allowed.iter().any(|n| n.contains(ip))
}

/// The address a URL's host stands for when that is known without asking DNS: an address
/// literal (in whatever spelling the URL parser reads: `127.1`, `2130706433`, `0x7f.1`,
/// `[::ffff:127.0.0.1]`), `localhost` and its subdomains (loopback), and the cloud metadata
/// names `metadata` and `metadata.google.internal` (169.254.169.254). `None` for any other
/// name: those are checked on the addresses they resolve to, when connecting.
pub fn host_address(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") {
                Some(IpAddr::from([127, 0, 0, 1]))
            } else if d == "metadata.google.internal" || d == "metadata" {
                Some(IpAddr::from([169, 254, 169, 254]))
            } else {
                None
            }
        }
    }
}

/// Why a webhook URL was refused by [`check_outbound_url`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundUrlError {
    /// The text does not parse as a URL.
    #[error("{text:?} is not a URL ({reason})")]
    NotUrl {
        text: String,
        reason: url::ParseError,
    },
    /// The host is (or stands for) an internal address no allowed network holds.
    #[error(
        "{url} points inside the network ({ip}); webhooks go to the internet only, unless outbound.allowed_networks lists that network"
    )]
    Inside { url: String, ip: IpAddr },
}

/// The outbound policy's check of a webhook URL (the webhook sink's target,
/// `notify.webhook_url`) when it is saved: refused when its host is inside the network (see
/// [`host_address`] and [`is_internal`]) and no block of `allowed` holds it. A host name that is
/// not known here passes; its addresses are checked with [`allows`] when it is resolved.
/// Returns the parsed URL.
pub fn check_outbound_url(text: &str, allowed: &[Network]) -> Result<Url, OutboundUrlError> {
    let url = Url::parse(text.trim()).map_err(|reason| OutboundUrlError::NotUrl {
        text: text.to_owned(),
        reason,
    })?;
    match host_address(&url) {
        Some(ip) if !allows(allowed, ip) => Err(OutboundUrlError::Inside {
            url: url.as_str().to_owned(),
            ip,
        }),
        _ => Ok(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_in_every_form() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.1.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "20.190.128.1",
            "2606:4700::1111",
            "2a00:1450::1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn an_ipv4_block_written_as_ipv6_holds_its_addresses() {
        // Found by fuzz/fuzz_targets/network.rs: `::ffff:10.0.0.0/104` held nothing, since every
        // address of it counts as IPv4 when matched.
        let n: Network = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(n, "10.0.0.0/8".parse().unwrap());
        assert_eq!(n.to_string(), "10.0.0.0/8");
        for ip in ["10.1.2.3", "::ffff:10.1.2.3"] {
            assert!(n.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let one: Network = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        // Wider than the mapped range: an IPv6 block, as written.
        let wide: Network = "::ffff:0:0/95".parse().unwrap();
        assert_eq!(wide.to_string(), "::ffff:0.0.0.0/95");
    }

    #[test]
    fn networks_parse_and_match() {
        let n: Network = "192.168.10.0/24".parse().unwrap();
        assert!(n.contains("192.168.10.77".parse().unwrap()));
        assert!(
            n.contains("::ffff:192.168.10.1".parse().unwrap()),
            "IPv4-mapped"
        );
        assert!(!n.contains("192.168.11.1".parse().unwrap()));
        assert!(!n.contains("2001:db8::1".parse().unwrap()));
        let one: Network = "10.1.2.3".parse().unwrap();
        assert!(
            one.contains("10.1.2.3".parse().unwrap()) && !one.contains("10.1.2.4".parse().unwrap())
        );
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(
            v6.contains("2001:db8:1::5".parse().unwrap())
                && !v6.contains("2001:db9::1".parse().unwrap())
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "example.com",
            "10.0.0/8",
            "::/129",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }
}
