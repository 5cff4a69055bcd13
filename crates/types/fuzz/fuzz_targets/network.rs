//! Fuzzes network blocks (`outbound.allowed_networks`, `gateway.trusted_networks`): the first
//! line is read as a block, never a panic; a block read prints and reads back the same, holds
//! its own address, and holds an address exactly when the prefix bits agree (an IPv4-mapped IPv6
//! address counts as its IPv4 address). The bytes after the first line are probe addresses.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use oauthimap_types::net::Network;

/// Whether `ip` is in `addr/prefix`, from the definition: the first `prefix` bits agree.
fn within(addr: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    match (addr, ip) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            prefix == 0 || (u32::from(a) ^ u32::from(b)) >> (32 - u32::from(prefix)) == 0
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            prefix == 0 || (u128::from(a) ^ u128::from(b)) >> (128 - u32::from(prefix)) == 0
        }
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let (line, probes) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    let Ok(net) = text.parse::<Network>() else {
        return;
    };
    let shown = net.to_string();
    assert_eq!(
        shown.parse::<Network>(),
        Ok(net),
        "{text:?} shown as {shown:?}"
    );
    let (addr, prefix) = shown.split_once('/').expect("address/prefix");
    let (addr, prefix): (IpAddr, u8) = (addr.parse().unwrap(), prefix.parse().unwrap());
    let mapped = matches!(addr, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
    assert!(
        !mapped || prefix < 96,
        "{text:?}: an IPv4 block written as IPv6 ({shown}) must read as IPv4"
    );
    if !mapped {
        assert!(net.contains(addr), "{shown} holds its own address");
    }
    let mut probe_ips = Vec::new();
    if let Some(b) = probes.first_chunk::<4>() {
        probe_ips.push(IpAddr::V4(Ipv4Addr::from(*b)));
        probe_ips.push(IpAddr::V6(Ipv4Addr::from(*b).to_ipv6_mapped()));
    }
    if let Some(b) = probes.first_chunk::<16>() {
        probe_ips.push(IpAddr::V6(Ipv6Addr::from(*b)));
    }
    for ip in probe_ips {
        assert_eq!(
            net.contains(ip),
            within(addr, prefix, ip),
            "{shown} and {ip}"
        );
    }
});
