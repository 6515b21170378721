//! Golden tests of the registration builders: every mode's objects, byte for byte.

use super::*;
use crate::ports::PortSpec;

fn reg(mode: Mode) -> Registration {
    Registration {
        service: "productcatalog".into(),
        namespace: "default".into(),
        ips: vec![
            "10.128.0.13".parse().expect("ip"),
            "fd00::13".parse().expect("ip"),
        ],
        ports: vec![
            "grpc:3550".parse::<PortSpec>().expect("port"),
            "8080".parse().expect("port"),
        ],
        mode,
        labels: [("version".to_string(), "v1".to_string())].into(),
        annotations: [("owner".to_string(), "team-a".to_string())].into(),
        service_account: "productcatalog".into(),
        network: None,
        cluster_domain: "cluster.local".into(),
    }
}

#[test]
fn serviceentry_mode() {
    insta::assert_yaml_snapshot!(fresh(&reg(Mode::ServiceEntry), "v1"));
}

#[test]
fn workloadentry_mode_with_network() {
    let mut r = reg(Mode::WorkloadEntry);
    r.network = Some("vm-network".into());
    insta::assert_yaml_snapshot!(fresh(&r, "v1beta1"));
}

#[test]
fn endpoints_mode() {
    insta::assert_yaml_snapshot!(fresh(&reg(Mode::Endpoints), "v1"));
}

#[test]
fn second_ip_is_appended_and_known_ip_is_not_repeated() {
    let r = reg(Mode::ServiceEntry);
    let existing = service_entry(&r, "v1", &r.ips[..1]);
    let known = build::service_entry_ips(&serde_json::from_value(existing).expect("typed"));
    assert_eq!(build::union(&known, &r.ips), r.ips);
    assert_eq!(build::union(&r.ips, &r.ips[..1]), r.ips);
}

#[test]
fn list_rows_from_objects() {
    let r = reg(Mode::ServiceEntry);
    let se = service_entry(&r, "v1", &r.ips);
    let wr = reg(Mode::WorkloadEntry);
    let wes: Vec<_> = wr
        .ips
        .iter()
        .map(|ip| workload_entry(&wr, "v1", ip))
        .collect();
    fn typed<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> T {
        serde_json::from_value(v.clone()).expect("typed")
    }
    let wes: Vec<_> = wes.iter().map(typed).collect();
    let rows = listing::rows(&[typed(&se)], &wes, &[]);
    let text = listing::render(&rows, false);
    assert_eq!(
        text,
        "NAME             MODE            HOST                                       ADDRESSES              PORTS                 AGE\n\
         productcatalog   serviceentry    productcatalog.default.svc.cluster.local   10.128.0.13,fd00::13   grpc:3550,http:8080   <unknown>\n\
         productcatalog   workloadentry   productcatalog.default.svc                 10.128.0.13,fd00::13   grpc:3550,http:8080   <unknown>\n"
    );
}

#[test]
fn a_rerun_warns_of_changed_ports_and_refuses_a_malformed_serviceentry() {
    let r = reg(Mode::ServiceEntry);
    let mut old = service_entry(&r, "v1", &r.ips[..1]);
    old["spec"]["ports"] =
        serde_json::json!([{"number": 3551, "name": "grpc", "protocol": "GRPC"}]);
    let facts = |list: serde_json::Value| facts::Facts {
        context: "cluster1".into(),
        version: "v1".into(),
        namespace_exists: true,
        service: None,
        list: Some(list),
        workload_entries: Vec::new(),
    };
    let planned = add::plan(&r, &facts(old.clone()), false).expect("a plan");
    assert_eq!(
        planned.warnings,
        vec!["ports of serviceentry/mesh-expansion-productcatalog change from [grpc:3551/GRPC] to [grpc:3550/GRPC, http:8080/HTTP]".to_string()]
    );
    old["spec"]["endpoints"] = serde_json::json!("10.0.0.1");
    let err = add::plan(&r, &facts(old), false).err().expect("malformed");
    assert!(
        err.to_string()
            .starts_with("ServiceEntry default/mesh-expansion-productcatalog is malformed: "),
        "{err}"
    );
}
