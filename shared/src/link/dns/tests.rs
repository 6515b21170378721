//! setup and undo of each DNS flavor, and reading back where `global` points.

use std::net::IpAddr;

use serde_json::json;

use super::*;

const COREFILE: &str = ".:53 {\n    errors\n    health\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n    }\n    forward . /etc/resolv.conf\n    cache 30\n    reload\n}\n";

fn coredns() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "coredns", "namespace": "kube-system", "resourceVersion": "5", "managedFields": []},
           "data": {"Corefile": COREFILE, "other": "kept"}})
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn coredns_block_is_added_kept_and_removed() {
    let cm = coredns();
    assert_eq!(flavor(Some(&cm), None), Flavor::CoreDns);
    assert_eq!(flavor(Some(&cm), Some(&cm)), Flavor::CoreDnsCustom);
    let set = setup(Flavor::CoreDns, Some(&cm), ip("10.96.0.53"))
        .expect("setup")
        .expect("changed");
    let corefile = set["data"]["Corefile"].as_str().expect("corefile");
    assert!(corefile.starts_with(COREFILE), "{corefile}");
    assert!(corefile.contains("global:53 {\n    errors\n    cache 30\n    forward . 10.96.0.53\n}"));
    assert_eq!(set["data"]["other"], "kept");
    assert_eq!(objects::resource_version(&set), "5");
    assert!(set["metadata"].get("managedFields").is_none());
    let saved: Value = serde_json::from_str(
        set["metadata"]["annotations"][BACKUP_ANNOTATION]
            .as_str()
            .expect("backup"),
    )
    .expect("json");
    assert_eq!(saved["Corefile"], COREFILE);
    assert_eq!(
        configured_target(Flavor::CoreDns, Some(&set)),
        Some(vec!["10.96.0.53".to_string()])
    );
    assert_eq!(configured_target(Flavor::CoreDns, Some(&cm)), None);

    // Again: nothing to do. With a new IP: the block moves, the backup stays the original.
    assert_eq!(
        setup(Flavor::CoreDns, Some(&set), ip("10.96.0.53")),
        Ok(None)
    );
    let moved = setup(Flavor::CoreDns, Some(&set), ip("10.96.0.54"))
        .expect("setup")
        .expect("changed");
    assert_eq!(
        moved["data"]["Corefile"]
            .as_str()
            .map(|c| c.matches("global:53").count()),
        Some(1)
    );
    assert_eq!(
        moved["metadata"]["annotations"][BACKUP_ANNOTATION],
        set["metadata"]["annotations"][BACKUP_ANNOTATION]
    );

    let undone = undo(Flavor::CoreDns, Some(&moved))
        .expect("undo")
        .expect("changed");
    assert_eq!(undone["data"]["Corefile"], COREFILE);
    assert!(undone["metadata"]["annotations"]
        .get(BACKUP_ANNOTATION)
        .is_none());
    assert_eq!(undo(Flavor::CoreDns, Some(&cm)), Ok(None));
}

#[test]
fn undo_keeps_edits_made_after_setup() {
    let set = setup(Flavor::CoreDns, Some(&coredns()), ip("10.96.0.53"))
        .expect("setup")
        .expect("changed");
    let mut edited = set.clone();
    let text = format!(
        "example.org:53 {{\n    forward . 8.8.8.8\n}}\n{}",
        set["data"]["Corefile"].as_str().expect("text")
    );
    edited["data"]["Corefile"] = json!(text);
    let undone = undo(Flavor::CoreDns, Some(&edited))
        .expect("undo")
        .expect("changed");
    let back = undone["data"]["Corefile"].as_str().expect("text");
    assert!(back.starts_with("example.org:53"));
    assert!(!back.contains("global"));
}

#[test]
fn a_foreign_global_block_is_not_overwritten() {
    let mut cm = coredns();
    cm["data"]["Corefile"] = json!(format!(
        "{COREFILE}global:53 {{\n    forward . 10.0.0.9\n}}\n"
    ));
    let e = setup(Flavor::CoreDns, Some(&cm), ip("10.96.0.53")).expect_err("refused");
    assert!(e.contains("did not write"), "{e}");
    assert_eq!(
        configured_target(Flavor::CoreDns, Some(&cm)),
        Some(vec!["10.0.0.9".to_string()])
    );
}

#[test]
fn kube_dns_stub_domains_are_merged() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "kube-dns", "namespace": "kube-system"},
                    "data": {"stubDomains": "{\"acme.local\": [\"1.2.3.4\"]}", "upstreamNameservers": "[\"8.8.8.8\"]"}});
    assert_eq!(flavor(None, None), Flavor::KubeDns);
    let set = setup(Flavor::KubeDns, Some(&cm), ip("10.0.0.53"))
        .expect("setup")
        .expect("changed");
    let stubs: Value =
        serde_json::from_str(set["data"]["stubDomains"].as_str().expect("text")).expect("json");
    assert_eq!(
        stubs,
        json!({"acme.local": ["1.2.3.4"], "global": ["10.0.0.53"]})
    );
    assert_eq!(set["data"]["upstreamNameservers"], "[\"8.8.8.8\"]");
    assert_eq!(
        configured_target(Flavor::KubeDns, Some(&set)),
        Some(vec!["10.0.0.53".to_string()])
    );
    assert_eq!(
        setup(Flavor::KubeDns, Some(&set), ip("10.0.0.53")),
        Ok(None)
    );
    let undone = undo(Flavor::KubeDns, Some(&set))
        .expect("undo")
        .expect("changed");
    let stubs: Value =
        serde_json::from_str(undone["data"]["stubDomains"].as_str().expect("text")).expect("json");
    assert_eq!(stubs, json!({"acme.local": ["1.2.3.4"]}));
    assert!(undone["metadata"]["annotations"]
        .get(BACKUP_ANNOTATION)
        .is_none());
}

#[test]
fn kube_dns_without_a_configmap() {
    let set = setup(Flavor::KubeDns, None, ip("10.0.0.53"))
        .expect("setup")
        .expect("changed");
    assert_eq!(objects::name(&set), "kube-dns");
    assert_eq!(set["data"]["stubDomains"], "{\"global\":[\"10.0.0.53\"]}");
    let undone = undo(Flavor::KubeDns, Some(&set))
        .expect("undo")
        .expect("changed");
    assert!(undone["data"].get("stubDomains").is_none());
    let mut bad = set.clone();
    bad["data"]["stubDomains"] = json!("not json");
    bad["metadata"]["annotations"] = json!({});
    assert!(setup(Flavor::KubeDns, Some(&bad), ip("10.0.0.53")).is_err());
}

#[test]
fn aks_gets_its_own_key_in_coredns_custom_and_undo_takes_only_that() {
    let ip: IpAddr = "10.0.0.53".parse().expect("ip");
    let custom = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": COREDNS_CUSTOM, "namespace": NAMESPACE, "resourceVersion": "7"},
        "data": {"azurestack.server": "azurestack.local:53 {\n    forward . 1.2.3.4\n}\n"}});
    let set = setup(Flavor::CoreDnsCustom, Some(&custom), ip)
        .expect("setup")
        .expect("a change");
    assert_eq!(set["data"][CUSTOM_KEY], json!(block(ip)));
    assert_eq!(
        set["data"]["azurestack.server"],
        custom["data"]["azurestack.server"]
    );
    assert_eq!(
        configured_target(Flavor::CoreDnsCustom, Some(&set)),
        Some(vec!["10.0.0.53".to_string()])
    );
    assert_eq!(setup(Flavor::CoreDnsCustom, Some(&set), ip), Ok(None));
    let undone = undo(Flavor::CoreDnsCustom, Some(&set))
        .expect("undo")
        .expect("a change");
    assert_eq!(undone["data"], custom["data"]);
    assert_eq!(undo(Flavor::CoreDnsCustom, Some(&custom)), Ok(None));
    // Someone else's global block in another key is never overwritten.
    let mut theirs = custom.clone();
    theirs["data"]["mine.server"] = json!("global:53 {\n    forward . 9.9.9.9\n}\n");
    let err = setup(Flavor::CoreDnsCustom, Some(&theirs), ip).expect_err("foreign");
    assert!(err.contains("\"mine.server\""), "{err}");
}
