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

/// Refuses an address no VM can be reached at: sidecars would send the service's traffic to
/// themselves (loopback), to nobody (unspecified, broadcast) or to a multicast group.
pub fn check_workload(ip: &IpAddr) -> Result<(), String> {
    let why = match ip {
        _ if ip.is_unspecified() => Some("unspecified"),
        _ if ip.is_loopback() => Some("a loopback address"),
        _ if ip.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        _ => None,
    };
    match why {
        Some(why) => Err(format!(
            "{ip} is {why}: a VM must be registered by an address the mesh's sidecars can reach it at"
        )),
        None => Ok(()),
    }
}

/// Whether an address is link-local (169.254.0.0/16, fe80::/10): usable only on the VM's own
/// link, which is worth a warning but not a refusal.
pub fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

impl FromStr for IpList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut ips: Vec<IpAddr> = Vec::new();
        for part in s.split(',') {
            // ::ffff:10.0.0.1 is the IPv4 address 10.0.0.1: written as Istio and Kubernetes
            // would show it, and de-duplicated against its plain form.
            let ip = parse_ip(part)?.to_canonical();
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
    fn addresses_no_vm_can_have_are_refused() {
        for bad in [
            "0.0.0.0",
            "127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "ff02::1",
            "::ffff:127.0.0.1",
        ] {
            let l: IpList = bad.parse().expect("parses");
            assert!(check_workload(&l.0[0]).is_err(), "{bad}");
        }
        for good in ["10.0.0.1", "fd00::13", "169.254.0.5", "fe80::1"] {
            let l: IpList = good.parse().expect("parses");
            assert!(check_workload(&l.0[0]).is_ok(), "{good}");
        }
        assert!(is_link_local(&"fe80::1".parse().expect("ip")));
        assert!(is_link_local(&"169.254.0.5".parse().expect("ip")));
        assert!(!is_link_local(&"10.0.0.1".parse().expect("ip")));
        let mapped: IpList = "::ffff:10.0.0.1,10.0.0.1".parse().expect("parses");
        assert_eq!(mapped.0, vec!["10.0.0.1".parse::<IpAddr>().expect("ip")]);
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
