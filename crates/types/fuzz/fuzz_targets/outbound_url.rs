//! Fuzzes the outbound policy's URL check (webhook sinks, `notify.webhook_url`), never a panic:
//! - as text: the last line is the URL, the lines before it `outbound.allowed_networks`; a URL
//!   let through never stands for an internal address outside those networks (checked against
//!   std's own address classes too), nor for `localhost` or a cloud metadata name; a URL refused
//!   as inside is internal;
//! - as addresses: the first 4 and 16 bytes are an IPv4 and an IPv6 address, written in every
//!   spelling a URL parser reads (`127.1`, `2130706433`, `0x7f.0.0.1`, `0177.0.0.1`,
//!   `[::ffff:127.0.0.1]`, percent-encoded, full-width digits, a trailing dot...); each is refused
//!   exactly when the address is internal.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use oauthimap_types::net::{
    Network, OutboundUrlError, check_outbound_url, host_address, is_internal,
};

/// Addresses std itself calls loopback, private, link-local, unspecified, broadcast, multicast
/// or unique-local, and the shared (CGNAT) block: every one of them must count as internal.
fn surely_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (o[0] == 100 && o[1] & 0xc0 == 64)
        }
        IpAddr::V6(v6) => {
            v6.to_ipv4_mapped()
                .is_some_and(|v4| surely_internal(IpAddr::V4(v4)))
                || v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
        }
    }
}

fn check_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (nets, url_text) = text.rsplit_once('\n').unwrap_or(("", text));
    let allowed: Vec<Network> = nets.lines().filter_map(|l| l.parse().ok()).collect();
    let listed = |ip: IpAddr| allowed.iter().any(|n| n.contains(ip));
    match check_outbound_url(url_text, &allowed) {
        Ok(url) => {
            assert_eq!(
                check_outbound_url(url.as_str(), &allowed).ok(),
                Some(url.clone())
            );
            if let Some(ip) = host_address(&url) {
                assert!(!is_internal(ip) || listed(ip), "{url} ({ip}) let through");
                assert!(
                    !surely_internal(ip) || listed(ip),
                    "{url} ({ip}) let through"
                );
            }
            if let Some(url::Host::Domain(d)) = url.host() {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d == "localhost" || d.ends_with(".localhost") {
                    assert!(listed(IpAddr::from([127, 0, 0, 1])), "{url} let through");
                }
                if d == "metadata" || d == "metadata.google.internal" {
                    assert!(
                        listed(IpAddr::from([169, 254, 169, 254])),
                        "{url} let through"
                    );
                }
            }
        }
        Err(OutboundUrlError::Inside { ip, .. }) => {
            assert!(
                is_internal(ip) && !listed(ip),
                "{url_text:?} refused for {ip}"
            );
        }
        Err(OutboundUrlError::NotUrl { text, .. }) => {
            assert_eq!(text, url_text);
            assert!(url::Url::parse(url_text.trim()).is_err());
        }
    }
}

/// `url` is refused as inside the network exactly when `ip` is internal.
fn refused_iff_internal(url: &str, ip: IpAddr) {
    match check_outbound_url(url, &[]) {
        Ok(_) => assert!(!is_internal(ip), "{url} ({ip}) let through"),
        Err(OutboundUrlError::Inside { .. }) => assert!(is_internal(ip), "{url} refused"),
        Err(e) => panic!("{url} does not parse: {e}"),
    }
    assert!(!surely_internal(ip) || is_internal(ip), "{ip} is internal");
}

fn ipv4_spellings(ip: Ipv4Addr) -> Vec<String> {
    let [a, b, c, d] = ip.octets();
    let n = u32::from(ip);
    let full_width = |s: String| -> String {
        s.chars()
            .map(|ch| match ch.to_digit(10) {
                Some(v) => char::from_u32(0xFF10 + v).unwrap(),
                None => ch,
            })
            .collect()
    };
    let mut out = vec![
        format!("http://{ip}/"),
        format!("https://{ip}./x"),
        format!("http://{n}/"),
        format!("http://0x{n:x}/"),
        format!("http://0X{n:X}:8080/"),
        format!("http://0{n:o}/"),
        format!("http://0x{a:x}.{b}.0{c:o}.{d}/"),
        format!("http://{a}.{}/", n & 0x00ff_ffff),
        format!("http://{a}.{b}.{}/", n & 0xffff),
        format!("http://user:pw@{ip}:1/"),
        format!("http://[::ffff:{ip}]/"),
        format!("http://[::FFFF:{:x}:{:x}]/", n >> 16, n & 0xffff),
        format!("http://[0:0:0:0:0:ffff:{ip}]/"),
        format!("http://{}/", full_width(ip.to_string())),
    ];
    out.push(format!(
        "http://{}/",
        ip.to_string()
            .bytes()
            .map(|ch| format!("%{ch:02X}"))
            .collect::<String>()
    ));
    out
}

fn check_spellings(data: &[u8]) {
    if let Some(b) = data.first_chunk::<4>() {
        let v4 = Ipv4Addr::from(*b);
        for url in ipv4_spellings(v4) {
            refused_iff_internal(&url, IpAddr::V4(v4));
        }
        // The deprecated IPv4-compatible form (`::a.b.c.d`) of a public address is not
        // internal as IPv6 either.
        refused_iff_internal(
            &format!("http://[::{v4}]/"),
            IpAddr::V6(v4.to_ipv6_compatible()),
        );
    }
    if let Some(b) = data.first_chunk::<16>() {
        let v6 = Ipv6Addr::from(*b);
        let s = v6.segments();
        let long = s.map(|x| format!("{x:04X}")).join(":");
        for url in [format!("http://[{v6}]/"), format!("https://[{long}]:443/a")] {
            refused_iff_internal(&url, IpAddr::V6(v6));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_text(data);
    check_spellings(data);
});
