//! The address ledger: which `.global` host holds which address in a target cluster, kept in the
//! ConfigMap `kubectl-mesh-addresses` in `istio-system` and updated by compare-and-swap, so two
//! runs at the same time never hand out the same address.
//!
//! The ServiceEntries are the truth for hosts that have one (an address, once served, never
//! changes: istiocoredns answers it with a one-hour TTL). The ledger adds what the entries
//! cannot say: addresses handed out by a run whose ServiceEntries are not written yet. It is
//! always written before the entries, and rebuilt from the entries when lost.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use anyhow::Result;
use serde_json::{json, Value};

use super::pool::{Exhausted, Pool};
use super::service_entry::{self, Listed};
use crate::api::{Cluster, WriteMode};
use crate::cli::DryRun;
use crate::objects::{self, Kind};
use crate::write::cas::{update_cas, Change, Target};

/// The ledger ConfigMap's name.
pub const NAME: &str = "kubectl-mesh-addresses";
/// The ledger ConfigMap's namespace.
pub const NAMESPACE: &str = "istio-system";

/// Host → address, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger(pub BTreeMap<String, Ipv4Addr>);

impl Ledger {
    /// Reads the ConfigMap's `data`; entries that are not an IPv4 address are reported and dropped.
    pub fn from_configmap(cm: &Value) -> (Ledger, Vec<String>) {
        let mut entries = BTreeMap::new();
        let mut bad = Vec::new();
        if let Some(data) = cm["data"].as_object() {
            for (host, v) in data {
                match v.as_str().and_then(|s| s.trim().parse::<Ipv4Addr>().ok()) {
                    Some(ip) => {
                        entries.insert(host.clone(), ip);
                    }
                    None => bad.push(format!("{host}={v}")),
                }
            }
        }
        (Ledger(entries), bad)
    }

    /// The ConfigMap holding this ledger; `base` (the object read) keeps its identity and
    /// resourceVersion, so the write is a compare-and-swap.
    pub fn to_configmap(&self, base: Option<&Value>) -> Value {
        let mut cm = match base {
            Some(b) => objects::for_display(b.clone()),
            None => {
                let mut cm =
                    objects::new_object(&objects::core("ConfigMap"), Some(NAMESPACE), NAME);
                objects::add_annotations(
                    &mut cm,
                    &BTreeMap::from([(
                        "kubectl-mesh/description".to_string(),
                        "Addresses of .global hosts handed out by kubectl mesh-link (host: address). Rebuilt from the ServiceEntries when deleted."
                            .to_string(),
                    )]),
                );
                cm
            }
        };
        let data: serde_json::Map<String, Value> = self
            .0
            .iter()
            .map(|(h, ip)| (h.clone(), json!(ip.to_string())))
            .collect();
        cm["data"] = Value::Object(data);
        cm
    }
}

/// The outcome of an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The address of every requested host.
    pub addresses: BTreeMap<String, Ipv4Addr>,
    /// Hosts that got a new address in this run.
    pub fresh: BTreeSet<String>,
    /// The ledger to record.
    pub ledger: Ledger,
    /// Things worth telling the user (repaired ledger entries).
    pub warnings: Vec<String>,
}

/// Gives every requested host its address.
///
/// - A host that has a ServiceEntry keeps that entry's address (a linked entry first).
/// - Else a host in the ledger keeps the ledger's address, unless another host now uses it.
/// - Else the lowest pool address that no ServiceEntry (of any host, in any namespace) and no
///   ledger entry uses.
///
/// The returned ledger also records every linked ServiceEntry's host, which rebuilds a lost
/// ledger from the entries.
pub fn allocate(
    pool: &Pool,
    hosts: &[String],
    ses: &[Listed],
    ledger: &Ledger,
) -> Result<Allocation, Exhausted> {
    let entries = Entries::read(ses);
    let mut next = ledger.clone();
    for (h, ip) in &entries.linked {
        if next.0.get(*h) != Some(ip) {
            next.0.insert((*h).to_string(), *ip);
        }
    }

    let mut used: BTreeSet<Ipv4Addr> = entries.owners.keys().copied().collect();
    used.extend(next.0.values().copied());
    // Count ledger holders of each address, to spot an address recorded for two hosts.
    let mut holders: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for ip in next.0.values() {
        *holders.entry(*ip).or_default() += 1;
    }
    let mut alloc = pool.allocator(used);

    let mut warnings = Vec::new();
    let mut addresses = BTreeMap::new();
    let mut fresh = BTreeSet::new();
    for host in hosts {
        let kept = match entries.address.get(host.as_str()) {
            Some(ip) => Some(*ip),
            None => next
                .0
                .get(host)
                .copied()
                .and_then(|ip| ledger_address(host, ip, &entries, &mut holders, &mut warnings)),
        };
        let ip = match kept {
            Some(ip) => ip,
            None => {
                fresh.insert(host.clone());
                alloc.take()?
            }
        };
        next.0.insert(host.clone(), ip);
        addresses.insert(host.clone(), ip);
    }
    Ok(Allocation {
        addresses,
        fresh,
        ledger: next,
        warnings,
    })
}

/// What the ServiceEntries say about addresses.
struct Entries<'a> {
    /// Address of each host that has a ServiceEntry; linked entries win over foreign ones.
    address: BTreeMap<&'a str, Ipv4Addr>,
    /// Hosts behind each address, over every ServiceEntry.
    owners: BTreeMap<Ipv4Addr, BTreeSet<&'a str>>,
    /// Each linked entry's host and first address.
    linked: Vec<(&'a str, Ipv4Addr)>,
}

impl<'a> Entries<'a> {
    fn read(ses: &'a [Listed]) -> Self {
        let mut entries = Entries {
            address: BTreeMap::new(),
            owners: BTreeMap::new(),
            linked: Vec::new(),
        };
        for se in ses {
            let addrs = service_entry::ipv4_addresses(se);
            let is_link = service_entry::is_link(se);
            for h in service_entry::hosts(se) {
                for ip in &addrs {
                    entries.owners.entry(*ip).or_default().insert(h);
                }
                if let Some(first) = addrs.first() {
                    if is_link {
                        entries.address.insert(h, *first);
                        entries.linked.push((h, *first));
                    } else {
                        entries.address.entry(h).or_insert(*first);
                    }
                }
            }
        }
        entries
    }
}

/// The ledger's address `ip` for `host` when it is still the host's alone; else `None` (the
/// host gets a new address), with a warning, and the address counts one holder less.
fn ledger_address(
    host: &str,
    ip: Ipv4Addr,
    entries: &Entries,
    holders: &mut BTreeMap<Ipv4Addr, usize>,
    warnings: &mut Vec<String>,
) -> Option<Ipv4Addr> {
    let other = entries
        .owners
        .get(&ip)
        .and_then(|hs| hs.iter().find(|h| **h != host).copied());
    let shared = holders.get(&ip).copied().unwrap_or(0) > 1;
    if other.is_none() && !shared {
        return Some(ip);
    }
    let holder = other.unwrap_or("another ledger entry");
    if let Some(n) = holders.get_mut(&ip) {
        *n -= 1;
    }
    warnings.push(format!(
        "the ledger gave {host} the address {ip}, which {holder} uses: {host} gets a new address"
    ));
    None
}

/// Reads the ledger, lets `change` compute the new one, and writes it back by compare-and-swap
/// ([`update_cas`]: on a conflict, read again and `change` again). `change` returns `None` when
/// the ledger needs no write. Nothing is written on a client dry run.
pub async fn update<T>(
    cluster: &Cluster,
    mode: WriteMode,
    mut change: impl FnMut(&Ledger) -> Result<(Option<Ledger>, T)>,
    warn: &mut Vec<String>,
) -> Result<T> {
    let kind = objects::core("ConfigMap");
    let mut out = None;
    let mut dropped = Vec::new();
    update_cas(cluster, target(&kind), mode, |current| {
        dropped.clear();
        let (ledger, bad) = current.map(Ledger::from_configmap).unwrap_or_default();
        let (next, value) = change(&ledger)?;
        out = Some(value);
        let Some(next) = next else {
            return Ok(Change::Keep);
        };
        let same = match current {
            Some(_) => next == ledger && bad.is_empty(),
            None => next.0.is_empty(),
        };
        if same || mode.dry_run == DryRun::Client {
            return Ok(Change::Keep);
        }
        dropped = bad;
        Ok(Change::Write(next.to_configmap(current)))
    })
    .await?;
    if !dropped.is_empty() {
        warn.push(format!(
            "dropped ledger entries that are not IPv4 addresses from configmap {NAMESPACE}/{NAME}: {}",
            dropped.join(", ")
        ));
    }
    out.ok_or_else(|| anyhow::anyhow!("the ledger of context {:?} was not read", cluster.context))
}

/// Takes back the addresses handed to `hosts` by a run that then failed, so a failed run leaves
/// the ledger as it found it. A ledger left empty is deleted (it is rebuilt from the entries);
/// only the ledger as read, since another run may have reserved an address meanwhile.
pub async fn release(cluster: &Cluster, mode: WriteMode, hosts: &BTreeSet<String>) -> Result<()> {
    if hosts.is_empty() || mode.dry_run != DryRun::None {
        return Ok(());
    }
    let kind = objects::core("ConfigMap");
    update_cas(cluster, target(&kind), mode, |current| {
        let Some(current) = current else {
            return Ok(Change::Keep);
        };
        let (ledger, _) = Ledger::from_configmap(current);
        let mut next = ledger.clone();
        next.0.retain(|h, _| !hosts.contains(h));
        Ok(if next == ledger {
            Change::Keep
        } else if next.0.is_empty() {
            Change::Delete
        } else {
            Change::Write(next.to_configmap(Some(current)))
        })
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e:#} (while the addresses of the failed run were released from configmap {NAMESPACE}/{NAME})"
        )
    })?;
    Ok(())
}

/// The ledger ConfigMap, to be read afresh.
fn target(kind: &Kind) -> Target<'_> {
    Target {
        kind,
        namespace: Some(NAMESPACE),
        name: NAME,
        read: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::GatewayAddress;
    use crate::link::service_entry::{build, Link, LinkPort, SourceService};
    use crate::ports::Protocol;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn linked(svc: &str, addr: &str) -> Listed {
        let s = SourceService {
            name: svc.into(),
            namespace: "default".into(),
            ports: vec![LinkPort {
                name: "grpc".into(),
                number: 9555,
                protocol: Protocol::Grpc,
            }],
            skipped_ports: vec![],
        };
        let gw = GatewayAddress::Ip("203.0.113.10".parse().expect("ip"));
        let se = build(
            &Link {
                service: &s,
                address: ip(addr),
                gateway: &gw,
                source_context: "cluster1",
            },
            "v1",
        );
        Listed::read(se).expect("a ServiceEntry")
    }

    fn foreign(host: &str, addr: &str) -> Listed {
        let se = json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
               "metadata": {"name": "x", "namespace": "other"},
               "spec": {"hosts": [host], "addresses": [addr]}});
        Listed::read(se).expect("a ServiceEntry")
    }

    fn hosts(hs: &[&str]) -> Vec<String> {
        hs.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn fresh_hosts_get_the_lowest_free_addresses() {
        let ses = vec![
            foreign("db.example.com", "240.0.0.1"),
            linked("ad", "240.0.0.3"),
        ];
        let a = allocate(
            &Pool::default(),
            &hosts(&["x.default.global", "y.default.global"]),
            &ses,
            &Ledger::default(),
        )
        .expect("alloc");
        assert_eq!(a.addresses["x.default.global"], ip("240.0.0.2"));
        assert_eq!(a.addresses["y.default.global"], ip("240.0.0.4"));
        assert_eq!(a.fresh.len(), 2);
        // The linked entry is recorded (ledger rebuilt), the foreign one is not.
        assert_eq!(a.ledger.0.get("ad.default.global"), Some(&ip("240.0.0.3")));
        assert!(!a.ledger.0.contains_key("db.example.com"));
    }

    #[test]
    fn existing_entries_keep_their_address_forever() {
        let ses = vec![linked("ad", "240.0.0.9")];
        let ledger = Ledger(BTreeMap::from([(
            "ad.default.global".to_string(),
            ip("240.0.0.1"),
        )]));
        let a = allocate(
            &Pool::default(),
            &hosts(&["ad.default.global"]),
            &ses,
            &ledger,
        )
        .expect("alloc");
        assert_eq!(a.addresses["ad.default.global"], ip("240.0.0.9"));
        assert!(a.fresh.is_empty());
        assert_eq!(a.ledger.0["ad.default.global"], ip("240.0.0.9"));
        // Even outside the current pool.
        let p: Pool = "240.1.0.0/16".parse().expect("pool");
        let a =
            allocate(&p, &hosts(&["ad.default.global"]), &ses, &Ledger::default()).expect("alloc");
        assert_eq!(a.addresses["ad.default.global"], ip("240.0.0.9"));
    }

    #[test]
    fn a_foreign_entry_for_the_host_lends_its_address() {
        let ses = vec![foreign("ad.default.global", "240.0.0.2")];
        let a = allocate(
            &Pool::default(),
            &hosts(&["ad.default.global"]),
            &ses,
            &Ledger::default(),
        )
        .expect("alloc");
        assert_eq!(a.addresses["ad.default.global"], ip("240.0.0.2"));
        assert_eq!(a.ledger.0["ad.default.global"], ip("240.0.0.2"));
    }

    #[test]
    fn ledger_only_hosts_keep_their_reservation() {
        // Another run reserved x but has not written its entry yet.
        let ledger = Ledger(BTreeMap::from([
            ("x.default.global".to_string(), ip("240.0.0.1")),
            ("y.default.global".to_string(), ip("240.0.0.2")),
        ]));
        let a = allocate(
            &Pool::default(),
            &hosts(&["x.default.global", "z.default.global"]),
            &[],
            &ledger,
        )
        .expect("alloc");
        assert_eq!(a.addresses["x.default.global"], ip("240.0.0.1"));
        assert_eq!(a.addresses["z.default.global"], ip("240.0.0.3"));
        assert_eq!(a.fresh, BTreeSet::from(["z.default.global".to_string()]));
        assert_eq!(a.ledger.0.len(), 3);
    }

    #[test]
    fn a_ledger_address_taken_by_another_host_is_repaired() {
        let ses = vec![foreign("db.example.com", "240.0.0.1")];
        let ledger = Ledger(BTreeMap::from([(
            "x.default.global".to_string(),
            ip("240.0.0.1"),
        )]));
        let a = allocate(
            &Pool::default(),
            &hosts(&["x.default.global"]),
            &ses,
            &ledger,
        )
        .expect("alloc");
        assert_eq!(a.addresses["x.default.global"], ip("240.0.0.2"));
        assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
        assert!(a.warnings[0].contains("db.example.com"));
    }

    #[test]
    fn a_doubly_recorded_address_is_repaired_once() {
        let ledger = Ledger(BTreeMap::from([
            ("a.default.global".to_string(), ip("240.0.0.1")),
            ("b.default.global".to_string(), ip("240.0.0.1")),
        ]));
        let a = allocate(
            &Pool::default(),
            &hosts(&["a.default.global", "b.default.global"]),
            &[],
            &ledger,
        )
        .expect("alloc");
        assert_eq!(a.addresses["a.default.global"], ip("240.0.0.2"));
        assert_eq!(a.addresses["b.default.global"], ip("240.0.0.1"));
    }

    #[test]
    fn a_lost_ledger_is_rebuilt_and_nothing_moves() {
        let ses = vec![linked("a", "240.0.0.1"), linked("b", "240.0.0.2")];
        let a = allocate(
            &Pool::default(),
            &hosts(&["a.default.global", "b.default.global", "c.default.global"]),
            &ses,
            &Ledger::default(),
        )
        .expect("alloc");
        assert_eq!(
            a.ledger
                .0
                .values()
                .map(|i| i.to_string())
                .collect::<Vec<_>>(),
            vec!["240.0.0.1", "240.0.0.2", "240.0.0.3"]
        );
        assert_eq!(a.fresh, BTreeSet::from(["c.default.global".to_string()]));
    }

    #[test]
    fn exhaustion() {
        let p: Pool = "240.0.0.0/30".parse().expect("pool");
        let err = allocate(
            &p,
            &hosts(&["a.x.global", "b.x.global", "c.x.global"]),
            &[],
            &Ledger::default(),
        )
        .expect_err("full");
        assert_eq!(err.capacity, 2);
    }

    #[test]
    fn configmap_round_trip() {
        let ledger = Ledger(BTreeMap::from([(
            "a.default.global".to_string(),
            ip("240.0.0.1"),
        )]));
        let cm = ledger.to_configmap(None);
        assert_eq!(objects::name(&cm), NAME);
        assert_eq!(objects::namespace(&cm), Some(NAMESPACE));
        assert!(objects::is_managed(&cm));
        assert_eq!(Ledger::from_configmap(&cm), (ledger.clone(), vec![]));
        let mut read = cm.clone();
        read["metadata"]["resourceVersion"] = json!("42");
        read["metadata"]["managedFields"] = json!([]);
        read["data"]["junk"] = json!("not-an-ip");
        let (l, bad) = Ledger::from_configmap(&read);
        assert_eq!(l, ledger);
        assert_eq!(bad, vec!["junk=\"not-an-ip\"".to_string()]);
        let back = l.to_configmap(Some(&read));
        assert_eq!(objects::resource_version(&back), "42");
        assert!(back["metadata"].get("managedFields").is_none());
        assert!(back["data"].get("junk").is_none());
    }
}
