//! The address pool `.global` hosts get their VIPs from: CIDR parsing, the ranges Istio and
//! the network stack reserve, and lowest-free allocation.
//!
//! Every `.global` host needs an IPv4 address unique in the calling cluster (istiocoredns
//! answers it, Envoy builds `VIP:port` listeners from it). 240.0.0.0/4 is the recommended
//! range because nothing routes it; loopback is captured by the inbound listener and
//! multicast has no route, so those are refused, as is 240.240.0.0/16, which Istio's DNS
//! proxy hands out to address-less ServiceEntries when `ISTIO_META_DNS_AUTO_ALLOCATE` is on.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The default `--address-pool`.
pub const DEFAULT_POOL: &str = "240.0.0.0/16";

/// Ranges a pool may not overlap, and why.
const RESERVED: [(Ipv4Addr, u8, &str); 3] = [
    (
        Ipv4Addr::new(240, 240, 0, 0),
        16,
        "the range Istio's DNS auto-allocation hands out",
    ),
    (
        Ipv4Addr::new(127, 0, 0, 0),
        8,
        "loopback, which the sidecar's inbound listener captures",
    ),
    (
        Ipv4Addr::new(224, 0, 0, 0),
        4,
        "multicast, which is not routed to the sidecar",
    ),
];

const ACCEPTED: &str = "expected an IPv4 CIDR such as 240.0.0.0/16";

/// A validated IPv4 CIDR to allocate `.global` addresses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    network: u32,
    prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn overlaps(a_net: u32, a_prefix: u8, b_net: u32, b_prefix: u8) -> bool {
    // Two CIDRs overlap exactly when they agree on the shorter prefix.
    let m = mask(a_prefix.min(b_prefix));
    a_net & m == b_net & m
}

impl Pool {
    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The last address of the range (the broadcast address for prefixes up to /30).
    fn last(&self) -> u32 {
        self.network | !mask(self.prefix)
    }

    /// The lowest and highest address handed out: network and broadcast addresses are skipped
    /// where a subnet has them (/30 and larger); a /31 or /32 uses every address.
    pub fn usable(&self) -> (Ipv4Addr, Ipv4Addr) {
        if self.prefix >= 31 {
            (Ipv4Addr::from(self.network), Ipv4Addr::from(self.last()))
        } else {
            (
                Ipv4Addr::from(self.network + 1),
                Ipv4Addr::from(self.last() - 1),
            )
        }
    }

    /// How many addresses the pool can hand out.
    pub fn capacity(&self) -> u64 {
        let (lo, hi) = self.usable();
        u64::from(u32::from(hi)) - u64::from(u32::from(lo)) + 1
    }

    /// Whether the pool lies outside 240.0.0.0/4, the reserved class E range nothing routes:
    /// its addresses may belong to real pods, Services or VMs, which a `.global` VIP would
    /// shadow in every sidecar of the calling cluster.
    pub fn routable(&self) -> bool {
        !overlaps(
            self.network,
            self.prefix.max(4),
            u32::from(Ipv4Addr::new(240, 0, 0, 0)),
            4,
        )
    }

    /// Whether `ip` lies in the pool's range (including network and broadcast addresses).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.network
    }

    /// An allocator that hands out the lowest free addresses, skipping `used`.
    pub fn allocator(&self, used: BTreeSet<Ipv4Addr>) -> Allocator {
        Allocator {
            pool: *self,
            used,
            next: u64::from(u32::from(self.usable().0)),
        }
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            network: u32::from(Ipv4Addr::new(240, 0, 0, 0)),
            prefix: 16,
        }
    }
}

impl FromStr for Pool {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let Some((addr, prefix)) = s.split_once('/') else {
            return Err(format!("{s:?} is not a CIDR: {ACCEPTED}"));
        };
        if addr.contains(':') {
            return Err(format!(
                "{s:?} is IPv6: .global addresses are IPv4 ({ACCEPTED})"
            ));
        }
        let ip = Ipv4Addr::from_str(addr)
            .map_err(|_| format!("{s:?}: {addr:?} is not an IPv4 address ({ACCEPTED})"))?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{s:?}: the prefix length must be a number from 0 to 32 ({ACCEPTED})"
            ));
        }
        let prefix: u8 = prefix.parse().map_err(|_| {
            format!("{s:?}: the prefix length must be a number from 0 to 32 ({ACCEPTED})")
        })?;
        if prefix > 32 {
            return Err(format!(
                "{s:?}: the prefix length must be a number from 0 to 32 ({ACCEPTED})"
            ));
        }
        let bits = u32::from(ip);
        let network = bits & mask(prefix);
        if network != bits {
            return Err(format!(
                "{s:?} has host bits set: did you mean {}/{prefix}?",
                Ipv4Addr::from(network)
            ));
        }
        for (r_net, r_prefix, why) in RESERVED {
            if overlaps(network, prefix, u32::from(r_net), r_prefix) {
                return Err(format!(
                    "{s:?} overlaps {r_net}/{r_prefix} ({why}): use a range such as {DEFAULT_POOL}"
                ));
            }
        }
        Ok(Pool { network, prefix })
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// The pool has no free address left.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the address pool {pool} is exhausted: all {capacity} addresses are in use; pass a larger --address-pool (e.g. 240.0.0.0/12), or unlink services you no longer call")]
pub struct Exhausted {
    /// The pool, as given.
    pub pool: Pool,
    /// How many addresses it holds.
    pub capacity: u64,
}

/// Hands out the lowest addresses not in use, in increasing order.
///
/// Within one run nothing is freed, so a cursor that only moves forward gives the same answer
/// as searching from the bottom every time, in time linear in the pool walked.
#[derive(Debug, Clone)]
pub struct Allocator {
    pool: Pool,
    used: BTreeSet<Ipv4Addr>,
    next: u64,
}

impl Allocator {
    /// Marks an address as taken (outside the pool is fine: it is simply never handed out).
    pub fn reserve(&mut self, ip: Ipv4Addr) {
        self.used.insert(ip);
    }

    /// Whether an address is already taken.
    pub fn is_used(&self, ip: Ipv4Addr) -> bool {
        self.used.contains(&ip)
    }

    /// The lowest free address, now taken.
    pub fn take(&mut self) -> Result<Ipv4Addr, Exhausted> {
        let hi = u64::from(u32::from(self.pool.usable().1));
        while self.next <= hi {
            // `next` never exceeds u32::MAX here, because `hi` does not.
            let ip = Ipv4Addr::from(self.next as u32);
            self.next += 1;
            if self.used.insert(ip) {
                return Ok(ip);
            }
        }
        Err(Exhausted {
            pool: self.pool,
            capacity: self.pool.capacity(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(s: &str) -> Pool {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn default_pool() {
        let p = pool(DEFAULT_POOL);
        assert_eq!(p, Pool::default());
        assert_eq!(p.to_string(), "240.0.0.0/16");
        assert_eq!(p.usable(), (ip("240.0.0.1"), ip("240.0.255.254")));
        assert_eq!(p.capacity(), 65_534);
        assert!(p.contains(ip("240.0.12.3")));
        assert!(!p.contains(ip("240.1.0.1")));
    }

    #[test]
    fn accepted_pools() {
        for (s, lo, hi, cap) in [
            ("240.0.0.0/24", "240.0.0.1", "240.0.0.254", 254),
            ("240.0.0.0/30", "240.0.0.1", "240.0.0.2", 2),
            ("240.0.0.4/31", "240.0.0.4", "240.0.0.5", 2),
            ("240.0.0.9/32", "240.0.0.9", "240.0.0.9", 1),
            ("10.200.0.0/16", "10.200.0.1", "10.200.255.254", 65_534),
            ("241.0.0.0/8", "241.0.0.1", "241.255.255.254", 16_777_214),
            (" 240.1.0.0/16 ", "240.1.0.1", "240.1.255.254", 65_534),
        ] {
            let p = pool(s);
            assert_eq!(p.usable(), (ip(lo), ip(hi)), "{s}");
            assert_eq!(p.capacity(), cap, "{s}");
        }
    }

    #[test]
    fn the_auto_allocation_range_is_refused() {
        for s in [
            "240.240.0.0/16",
            "240.240.1.0/24",
            "240.240.255.255/32",
            "240.0.0.0/4",
            "240.0.0.0/8",
            "240.240.0.0/12",
            "240.128.0.0/9",
            "0.0.0.0/0",
        ] {
            let e = s.parse::<Pool>().expect_err(s);
            assert!(e.contains("overlaps"), "{s}: {e}");
        }
        let e = "240.240.0.0/16".parse::<Pool>().expect_err("refused");
        assert!(e.contains("auto-allocation"), "{e}");
        // Neighbours of the reserved range are fine.
        assert!("240.239.0.0/16".parse::<Pool>().is_ok());
        assert!("240.241.0.0/16".parse::<Pool>().is_ok());
    }

    #[test]
    fn loopback_and_multicast_are_refused() {
        for s in [
            "127.0.0.0/8",
            "127.255.0.0/16",
            "224.0.0.0/24",
            "239.1.0.0/16",
            "192.0.0.0/2",
        ] {
            assert!(s.parse::<Pool>().is_err(), "{s}");
        }
    }

    #[test]
    fn malformed_cidrs_say_what_is_accepted() {
        for s in [
            "",
            "240.0.0.0",
            "240.0.0/16",
            "240.0.0.0/33",
            "240.0.0.0/",
            "240.0.0.0/-1",
            "240.0.0.0/+8",
            "240.0.0.0/016",
            "/16",
            "a.b.c.d/16",
            "240.0.0.256/24",
            "fd00::/64",
            "240.0.0.0/16/1",
        ] {
            let e = s.parse::<Pool>().expect_err(s);
            assert!(!e.is_empty(), "{s}");
        }
        assert!("fd00::/64"
            .parse::<Pool>()
            .expect_err("v6")
            .contains("IPv6"));
        assert!("240.0.0.0"
            .parse::<Pool>()
            .expect_err("no /")
            .contains("240.0.0.0/16"));
    }

    #[test]
    fn host_bits_get_a_suggestion() {
        let e = "240.0.0.5/16".parse::<Pool>().expect_err("host bits");
        assert!(e.contains("did you mean 240.0.0.0/16"), "{e}");
    }

    #[test]
    fn lowest_free_first() {
        let p = pool("240.0.0.0/24");
        let mut a = p.allocator(BTreeSet::new());
        assert_eq!(a.take(), Ok(ip("240.0.0.1")));
        assert_eq!(a.take(), Ok(ip("240.0.0.2")));
        let used: BTreeSet<Ipv4Addr> = [
            "240.0.0.1",
            "240.0.0.2",
            "240.0.0.4",
            "10.0.0.1",
            "240.0.1.1",
        ]
        .into_iter()
        .map(ip)
        .collect();
        let mut a = p.allocator(used);
        assert_eq!(a.take(), Ok(ip("240.0.0.3")));
        assert_eq!(a.take(), Ok(ip("240.0.0.5")));
        assert!(a.is_used(ip("240.0.0.5")));
    }

    #[test]
    fn holes_are_filled_before_the_top() {
        let p = pool("240.0.0.0/29");
        let used: BTreeSet<Ipv4Addr> = ["240.0.0.1", "240.0.0.3", "240.0.0.6"]
            .into_iter()
            .map(ip)
            .collect();
        let mut a = p.allocator(used);
        let got: Vec<Ipv4Addr> = (0..3).map(|_| a.take().expect("free")).collect();
        assert_eq!(got, vec![ip("240.0.0.2"), ip("240.0.0.4"), ip("240.0.0.5")]);
        assert!(a.take().is_err());
    }

    #[test]
    fn reserving_during_a_run_skips_the_address() {
        let p = pool("240.0.0.0/24");
        let mut a = p.allocator(BTreeSet::new());
        a.reserve(ip("240.0.0.1"));
        a.reserve(ip("240.0.0.3"));
        assert_eq!(a.take(), Ok(ip("240.0.0.2")));
        assert_eq!(a.take(), Ok(ip("240.0.0.4")));
    }

    #[test]
    fn exhaustion_is_an_error_naming_the_pool() {
        let p = pool("240.0.0.0/30");
        let mut a = p.allocator(BTreeSet::new());
        assert!(a.take().is_ok());
        assert!(a.take().is_ok());
        let e = a.take().expect_err("exhausted");
        assert_eq!(e.capacity, 2);
        let msg = e.to_string();
        assert!(
            msg.contains("240.0.0.0/30") && msg.contains("exhausted"),
            "{msg}"
        );
        // Still exhausted on the next call.
        assert!(a.take().is_err());
    }

    #[test]
    fn network_and_broadcast_are_never_handed_out() {
        let p = pool("240.0.0.0/30");
        let mut a = p.allocator(BTreeSet::new());
        let got = [a.take(), a.take()];
        assert_eq!(got, [Ok(ip("240.0.0.1")), Ok(ip("240.0.0.2"))]);
        let single = pool("240.0.0.7/32");
        let mut a = single.allocator(BTreeSet::new());
        assert_eq!(a.take(), Ok(ip("240.0.0.7")));
        assert!(a.take().is_err());
        // The very top of the address space does not overflow the cursor.
        let top = pool("254.255.255.254/31");
        let mut a = top.allocator(BTreeSet::new());
        assert_eq!(a.take(), Ok(ip("254.255.255.254")));
        assert_eq!(a.take(), Ok(ip("254.255.255.255")));
        assert!(a.take().is_err());
    }

    #[test]
    fn a_full_pool_given_as_used_is_exhausted() {
        let p = pool("240.0.0.0/28");
        let used: BTreeSet<Ipv4Addr> = (1..=14).map(|i| Ipv4Addr::new(240, 0, 0, i)).collect();
        let mut a = p.allocator(used);
        assert_eq!(a.take().map_err(|e| e.capacity), Err(14));
    }

    #[test]
    fn overlap_rule() {
        let n = |s: &str| u32::from(ip(s));
        assert!(overlaps(n("10.0.0.0"), 8, n("10.1.0.0"), 16));
        assert!(overlaps(n("10.1.0.0"), 16, n("10.0.0.0"), 8));
        assert!(!overlaps(n("10.0.0.0"), 16, n("10.1.0.0"), 16));
        assert!(overlaps(n("0.0.0.0"), 0, n("10.1.0.0"), 16));
    }

    #[test]
    fn only_class_e_pools_are_unroutable() {
        for (p, routable) in [
            ("240.0.0.0/16", false),
            ("250.1.0.0/16", false),
            ("10.0.0.0/8", true),
            ("192.168.10.0/24", true),
            ("224.0.0.0/3", true),
        ] {
            match p.parse::<Pool>() {
                Ok(pool) => assert_eq!(pool.routable(), routable, "{p}"),
                Err(_) => assert!(routable, "{p} refused"),
            }
        }
    }
}
