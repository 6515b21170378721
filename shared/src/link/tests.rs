//! Command-line tests and golden tests of the link builders (snapshots in `snapshots/`).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use clap::{CommandFactory, Parser};
use serde_json::{json, Value};

use super::plan::{plan, Action, Selection};
use super::*;
use crate::error::exit_code;
use crate::ports::Protocol;

fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
    Args::try_parse_from(std::iter::once("kubectl-mesh_link").chain(argv.iter().copied()))
}

fn planned(argv: &[&str]) -> anyhow::Result<plan::Plan> {
    plan(&parse(argv).map_err(anyhow::Error::from)?)
}

#[test]
fn clap_definition_is_consistent() {
    Args::command().debug_assert();
}

#[test]
fn link_services() {
    let p = planned(&[
        "--from",
        "cluster1",
        "--to",
        "cluster2",
        "adservice",
        "checkoutservice",
    ])
    .expect("plan");
    assert_eq!(
        p.selection,
        Selection::Names(vec!["adservice".into(), "checkoutservice".into()])
    );
    assert_eq!(
        p.action,
        Action::Link {
            prune: false,
            setup_dns: false
        }
    );
    assert_eq!(
        (p.from.as_deref(), p.to.as_str()),
        (Some("cluster1"), "cluster2")
    );
    let p = planned(&[
        "--from",
        "a",
        "--to",
        "b",
        "-l",
        "app in (x,y)",
        "--bidirectional",
        "--prune",
    ])
    .expect("plan");
    assert!(matches!(p.selection, Selection::Selector(_)));
    assert!(p.bidirectional);
    assert_eq!(
        p.action,
        Action::Link {
            prune: true,
            setup_dns: false
        }
    );
}

#[test]
fn check_is_a_verb() {
    let args = parse(&["check", "--from", "cluster1", "--to", "cluster2"]).expect("parse");
    assert!(matches!(args.command, Some(Command::Check)));
    assert_eq!(
        planned(&["check", "--from", "a", "--to", "b"])
            .expect("plan")
            .action,
        Action::Check
    );
    // Flags before the verb work too.
    assert_eq!(
        planned(&["--from", "a", "--to", "b", "check"])
            .expect("plan")
            .action,
        Action::Check
    );
    // But linking arguments do not mix with it.
    assert!(parse(&["check", "--from", "a", "--to", "b", "--all"]).is_err());
    assert!(parse(&["check", "adservice"]).is_err());
    assert!(planned(&["--all", "check", "--from", "a", "--to", "b"]).is_err());
    // A Service named like the verb is linked when it is not the first SERVICE, or after `--`.
    let p = planned(&["--from", "a", "--to", "b", "--", "check"]).expect("plan");
    assert_eq!(p.selection, Selection::Names(vec!["check".into()]));
}

#[test]
fn other_verbs() {
    assert_eq!(
        planned(&["--list", "--to", "b"]).expect("plan").action,
        Action::List
    );
    assert_eq!(
        planned(&["--to", "b", "--setup-dns"]).expect("plan").action,
        Action::Dns { undo: false }
    );
    assert_eq!(
        planned(&["--to", "b", "--setup-dns", "--undo"])
            .expect("plan")
            .action,
        Action::Dns { undo: true }
    );
    assert_eq!(
        planned(&["--from", "a", "--to", "b", "--all", "--setup-dns"])
            .expect("plan")
            .action,
        Action::Link {
            prune: false,
            setup_dns: true
        }
    );
    assert_eq!(
        planned(&["--from", "a", "--to", "b", "--prune"])
            .expect("plan")
            .action,
        Action::Link {
            prune: true,
            setup_dns: false
        }
    );
    assert_eq!(
        planned(&["--from", "a", "--to", "b", "--unlink", "--all"])
            .expect("plan")
            .action,
        Action::Unlink
    );
}

fn usage_error(argv: &[&str]) -> String {
    match parse(argv) {
        Err(e) => {
            assert!(e.use_stderr(), "{argv:?}: {e}");
            crate::app::clap_one_line(&e)
        }
        Ok(args) => {
            let e = plan(&args).expect_err("refused");
            assert_eq!(exit_code(&e), 2, "{argv:?}: {e}");
            e.to_string()
        }
    }
}

#[test]
fn malformed_input_names_the_argument() {
    let cases: [(&[&str], &str); 14] = [
        (&["--from", "a", "--to", "a", "x"], "--to"),
        (&["--from", "a", "x"], "--to"),
        (&["--to", "b", "x"], "--from"),
        (&["--from", "a", "--to", "b"], "SERVICE"),
        (
            &[
                "--from",
                "a",
                "--to",
                "b",
                "--address-pool",
                "240.240.0.0/16",
                "x",
            ],
            "--address-pool",
        ),
        (
            &[
                "--from",
                "a",
                "--to",
                "b",
                "--address-pool",
                "240.0.0.0/33",
                "x",
            ],
            "--address-pool",
        ),
        (
            &["--from", "a", "--to", "b", "--address-pool", "nope", "x"],
            "--address-pool",
        ),
        (&["--from", "a", "--to", "b", "Bad_Name"], "SERVICE"),
        (&["--from", "a", "--to", "b", "--all", "x"], "--all"),
        (
            &["--from", "a", "--to", "b", "-l", "a b", "--all"],
            "SELECTOR",
        ),
        (
            &["--from", "a", "--to", "b", "--undo", "--all"],
            "--setup-dns",
        ),
        (&["--from", "a", "--to", "b", "--unlink"], "--unlink"),
        (
            &["--from", "a", "--to", "b", "--context", "c", "x"],
            "--context",
        ),
        (
            &[
                "--from",
                "a",
                "--to",
                "b",
                "--gateway-address",
                "gw:15443",
                "x",
            ],
            "--gateway-address",
        ),
    ];
    for (argv, arg) in cases {
        let msg = usage_error(argv);
        assert!(msg.contains(arg), "{argv:?}: {msg:?} should name {arg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}

fn service(name: &str, ports: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": {"ports": ports}})
}

fn typed_service(svc: &Value) -> k8s_openapi::api::core::v1::Service {
    serde_json::from_value(svc.clone()).expect("a Service")
}

/// The Online Boutique services of the dual-control-plane sample, as their Services declare them.
fn boutique() -> Vec<Value> {
    vec![
        service(
            "adservice",
            json!([{"name": "grpc", "port": 9555, "targetPort": 9555}]),
        ),
        service(
            "cartservice",
            json!([{"name": "grpc", "port": 7070, "targetPort": 7070}]),
        ),
        service(
            "checkoutservice",
            json!([{"name": "grpc", "port": 5050, "targetPort": 5050}]),
        ),
        service(
            "currencyservice",
            json!([{"name": "grpc", "port": 7000, "targetPort": 7000}]),
        ),
        service(
            "frontend",
            json!([{"name": "http", "port": 80, "targetPort": 8080}]),
        ),
        service(
            "productcatalogservice",
            json!([{"name": "grpc", "port": 3550, "targetPort": 3550}]),
        ),
        service(
            "shippingservice",
            json!([{"name": "grpc", "port": 50051, "targetPort": 50051}]),
        ),
    ]
}

fn build_all(gw: &GatewayAddress, ctx: &str) -> Vec<Value> {
    let svcs: Vec<service_entry::SourceService> = boutique()
        .iter()
        .map(|s| service_entry::source_service(&typed_service(s)).expect("linkable"))
        .collect();
    let hosts: Vec<String> = svcs
        .iter()
        .map(|s| service_entry::host(&s.name, &s.namespace))
        .collect();
    let alloc =
        ledger::allocate(&Pool::default(), &hosts, &[], &ledger::Ledger::default()).expect("alloc");
    svcs.iter()
        .map(|s| {
            let address = alloc.addresses[&service_entry::host(&s.name, &s.namespace)];
            service_entry::build(
                &service_entry::Link {
                    service: s,
                    address,
                    gateway: gw,
                    source_context: ctx,
                },
                "v1",
            )
        })
        .collect()
}

#[test]
fn golden_service_entries_for_the_boutique() {
    let gw = GatewayAddress::Ip("203.0.113.10".parse().expect("ip"));
    insta::assert_yaml_snapshot!("boutique_service_entries", build_all(&gw, "cluster1"));
}

#[test]
fn golden_service_entry_behind_a_hostname_gateway() {
    let gw: GatewayAddress = "a1b2c3-1234567890.eu-west-1.elb.amazonaws.com"
        .parse()
        .expect("host");
    let svc = service(
        "frontend",
        json!([{"name": "http", "port": 80}, {"name": "metrics", "port": 9090, "appProtocol": "http"}, {"port": 53, "name": "dns", "protocol": "UDP"}]),
    );
    let s = service_entry::source_service(&typed_service(&svc)).expect("linkable");
    let se = service_entry::build(
        &service_entry::Link {
            service: &s,
            address: Ipv4Addr::new(240, 0, 0, 5),
            gateway: &gw,
            source_context: "arn:aws:eks:eu-west-1:123456789012:cluster/prod",
        },
        "v1alpha3",
    );
    insta::assert_yaml_snapshot!("hostname_gateway_service_entry", se);
}

#[test]
fn golden_ledger_configmap() {
    let gw = GatewayAddress::Ip("203.0.113.10".parse().expect("ip"));
    let ses = build_all(&gw, "cluster1");
    // The ledger is lost: rebuilt from the entries, plus one new host.
    let ses = service_entry::read_listed(ses).expect("ServiceEntries");
    let alloc = ledger::allocate(
        &Pool::default(),
        &["emailservice.default.global".to_string()],
        &ses,
        &ledger::Ledger::default(),
    )
    .expect("alloc");
    assert_eq!(
        alloc.fresh,
        BTreeSet::from(["emailservice.default.global".to_string()])
    );
    insta::assert_yaml_snapshot!("ledger_configmap", alloc.ledger.to_configmap(None));
}

#[test]
fn golden_list_table() {
    let gw = GatewayAddress::Ip("203.0.113.10".parse().expect("ip"));
    let mut ses = build_all(&gw, "cluster1");
    ses.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "foreign", "namespace": "default"}, "spec": {"hosts": ["x.example.com"]}}));
    let ses = service_entry::read_listed(ses).expect("ServiceEntries");
    let links = listing::links_of(ses, Some("cluster1"));
    assert_eq!(links.len(), 7);
    insta::assert_snapshot!("list_table", listing::render(&links));
}

#[test]
fn golden_coredns_corefile() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system", "resourceVersion": "3"},
                    "data": {"Corefile": ".:53 {\n    errors\n    health\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n    }\n    forward . /etc/resolv.conf\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n"}});
    let set = dns::setup(
        dns::Flavor::CoreDns,
        Some(&cm),
        "10.96.0.53".parse().expect("ip"),
    )
    .expect("setup")
    .expect("changed");
    insta::assert_snapshot!(
        "coredns_corefile",
        set["data"]["Corefile"].as_str().unwrap_or_default()
    );
}

#[test]
fn ports_follow_istio_protocol_selection() {
    let s = service_entry::source_service(&typed_service(&service(
        "x",
        json!([{"name": "tcp-db", "port": 5432}, {"name": "tls", "port": 443}]),
    )))
    .expect("linkable");
    assert_eq!(
        s.ports.iter().map(|p| p.protocol).collect::<Vec<_>>(),
        vec![Protocol::Tcp, Protocol::Tls]
    );
}
