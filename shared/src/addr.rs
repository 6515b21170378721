//! Workload addresses: IPv4/IPv6 lists as typed (`10.0.0.1,10.0.0.2`), never hostnames.

use std::net::IpAddr;
use std::str::FromStr;

/// A non-empty, de-duplicated list of IP addresses, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpList(pub Vec<IpAddr>);

/// Parses one IP address, with a hint when a hostname was given.
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let t = s.trim();
    IpAddr::from_str(t).map_err(|_| {
        if !t.is_empty() && t.bytes().any(|b| b.is_ascii_alphabetic()) && !t.contains(':') {
            format!("{t:?} is not an IP address: register the VM by its IPv4 or IPv6 address (resolve a hostname first, e.g. with `dig +short {t}`)")
        } else {
            format!("{t:?} is not an IP address: expected IPv4 (10.128.0.13) or IPv6 (fd00::13)")
        }
    })
}

impl FromStr for IpList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut ips: Vec<IpAddr> = Vec::new();
        for part in s.split(',') {
            let ip = parse_ip(part)?;
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        Ok(IpList(ips))
    }
}

/// An IP as it may appear in an object name: `10.0.0.1` → `10-0-0-1`, `fd00::1` → `fd00--1`.
pub fn name_fragment(ip: &IpAddr) -> String {
    let s: String = ip
        .to_string()
        .chars()
        .map(|c| if c == '.' || c == ':' { '-' } else { c })
        .collect();
    s.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_dedupe_and_keep_order() {
        let l: IpList = "10.0.0.2,10.0.0.1,10.0.0.2".parse().expect("parse");
        assert_eq!(
            l.0.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            vec!["10.0.0.2", "10.0.0.1"]
        );
        assert!("fd00::1".parse::<IpList>().is_ok());
    }

    #[test]
    fn bad_addresses_say_why() {
        for bad in ["999.1.1.1", "", "10.0.0", "10.0.0.1,", "1.2.3.4.5", "::g"] {
            assert!(bad.parse::<IpList>().is_err(), "{bad}");
        }
        let e = "vm1.example.com".parse::<IpList>().unwrap_err();
        assert!(e.contains("resolve a hostname"), "{e}");
    }

    #[test]
    fn names_from_ips() {
        assert_eq!(
            name_fragment(&"10.128.0.13".parse().expect("ip")),
            "10-128-0-13"
        );
        assert_eq!(name_fragment(&"fd00::1".parse().expect("ip")), "fd00--1");
    }
}
