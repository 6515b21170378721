//! Golden tests of the split builders: the objects mesh-split applies, byte for byte.

use serde_json::{json, Value};

use super::*;

/// The VirtualService of Istio's VM migration sample in cluster1, applied by hand with kubectl,
/// with match, retries and header rules that a weight change must keep exactly.
fn migration_vs() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": "productcatalog-migration",
            "namespace": "default",
            "resourceVersion": "7",
            "labels": {"app": "productcatalog"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "managedFields": [{
                "manager": "kubectl-client-side-apply", "operation": "Update",
                "apiVersion": "networking.istio.io/v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                             "f:spec": {".": {}, "f:hosts": {}, "f:http": {}}}
            }]
        },
        "spec": {
            "hosts": ["productcatalogservice"],
            "http": [
                {
                    "name": "debug",
                    "match": [{"headers": {"x-debug": {"exact": "1"}}}],
                    "route": [{"destination": {"host": "productcatalogservice-gke.default.global"}}]
                },
                {
                    "retries": {"attempts": 3, "perTryTimeout": "2s"},
                    "route": [
                        {"destination": {"host": "productcatalogservice", "port": {"number": 3550}}, "weight": 100,
                         "headers": {"request": {"set": {"x-backend": "vm"}}}},
                        {"destination": {"host": "productcatalogservice-gke.default.global", "port": {"number": 3550}}, "weight": 0}
                    ]
                }
            ]
        }
    })
}

fn typed(vs: &Value) -> crate::istio::VirtualService {
    serde_json::from_value(vs.clone()).expect("a VirtualService")
}

fn split_route(vs: &Value) -> Route {
    select(&typed(vs), None).expect("one split route")
}

#[test]
fn eighty_twenty_keeps_every_other_field_of_the_routes() {
    let vs = migration_vs();
    let route = split_route(&vs);
    let prev = Previous::of(&route).to_annotation();
    let obj = weights_object(&typed(&vs), &route.at, &[80, 20], Some(&prev));
    // Only the weights differ from the route list as read.
    let mut expect = vs["spec"]["http"].clone();
    expect[1]["route"][0]["weight"] = json!(80);
    expect[1]["route"][1]["weight"] = json!(20);
    assert_eq!(obj["spec"]["http"], expect);
    insta::assert_yaml_snapshot!(obj);
}

#[test]
fn a_second_change_repeats_what_kubectl_mesh_owns() {
    // After mesh-split created it, kubectl-mesh owns hosts, the label and the annotation too:
    // leaving any out of the next apply would delete it.
    let created = created_object(
        "v1",
        "default",
        "productcatalogservice-split",
        "productcatalogservice",
        &[
            "productcatalogservice".into(),
            "productcatalogservice-gke".into(),
        ],
        &[100, 0],
    );
    let mut live = created.clone();
    live["metadata"]["annotations"] =
        json!({PREVIOUS_ANNOTATION: "{\"route\":\"http/0\",\"destinations\":[]}", "other": "x"});
    live["metadata"]["labels"]["team"] = json!("a");
    live["metadata"]["managedFields"] = json!([{
        "manager": "kubectl-mesh", "operation": "Apply", "apiVersion": "networking.istio.io/v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}},
                                    "f:annotations": {("f:".to_string() + PREVIOUS_ANNOTATION): {}}},
                     "f:spec": {"f:hosts": {}, "f:http": {}}}
    }]);
    let route = split_route(&live);
    let obj = weights_object(
        &typed(&live),
        &route.at,
        &[0, 100],
        Some("{\"route\":\"http/0\"}"),
    );
    insta::assert_yaml_snapshot!(obj);
    // Restoring to "no previous weights" drops the annotation from the apply.
    let restore = weights_object(&typed(&live), &route.at, &[100, 0], None);
    assert!(restore["metadata"].get("annotations").is_none());
    assert_eq!(restore["spec"]["hosts"], json!(["productcatalogservice"]));
}

#[test]
fn create_builds_one_http_route_in_order() {
    let obj = created_object(
        "v1beta1",
        "default",
        &default_name("productcatalogservice"),
        "productcatalogservice",
        &[
            "productcatalogservice".into(),
            "productcatalogservice-gke.default.global".into(),
        ],
        &[100, 0],
    );
    insta::assert_yaml_snapshot!(obj);
}

#[test]
fn tcp_route_weights() {
    let vs = json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
        "metadata": {"name": "db", "namespace": "data"},
        "spec": {"hosts": ["db"], "tcp": [{"match": [{"port": 5432}], "route": [
            {"destination": {"host": "db-vm"}, "weight": 50},
            {"destination": {"host": "db"}, "weight": 50}]}]}
    });
    let route = split_route(&vs);
    assert_eq!(route.at.to_string(), "tcp/0");
    insta::assert_yaml_snapshot!(weights_object(&typed(&vs), &route.at, &[10, 90], None));
}

#[test]
fn previous_weights_round_trip() {
    let vs = migration_vs();
    let route = split_route(&vs);
    let p = Previous::of(&route);
    assert_eq!(
        p.to_annotation(),
        r#"{"route":"http/1","destinations":[{"host":"productcatalogservice","port":3550,"weight":100},{"host":"productcatalogservice-gke.default.global","port":3550,"weight":0}]}"#
    );
    let mut annotated = vs.clone();
    annotated["metadata"]["annotations"][PREVIOUS_ANNOTATION] = json!(p.to_annotation());
    assert_eq!(build::read_previous(&typed(&annotated)), Some(Ok(p)));
    annotated["metadata"]["annotations"][PREVIOUS_ANNOTATION] = json!("80/20");
    assert!(matches!(
        build::read_previous(&typed(&annotated)),
        Some(Err(_))
    ));
    assert_eq!(build::read_previous(&typed(&vs)), None);
}

#[test]
fn default_names() {
    assert_eq!(
        default_name("productcatalogservice"),
        "productcatalogservice-split"
    );
    assert_eq!(
        default_name("reviews.prod.svc.cluster.local"),
        "reviews-split"
    );
    assert_eq!(default_name(&"a".repeat(70)).len(), 63);
}

fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
    use clap::Parser as _;
    Args::try_parse_from(std::iter::once("kubectl mesh-split").chain(argv.iter().copied()))
}

fn plan(argv: &[&str]) -> anyhow::Result<Plan> {
    Plan::from_args(&parse(argv)?)
}

#[test]
fn clap_definition_is_sound() {
    use clap::CommandFactory as _;
    Args::command().debug_assert();
}

#[test]
fn every_form_of_the_issue_parses() {
    let p = plan(&["80/20"]).expect("80/20");
    assert!(p.target.is_none());
    assert!(matches!(&p.action, Action::Set(s) if s.weights == Weights::Ordered(vec![80, 20])));

    let p = plan(&[
        "productcatalogservice",
        "80/20",
        "--context",
        "cluster1",
        "--context",
        "cluster2",
        "-n",
        "default",
    ])
    .expect("host");
    assert_eq!(p.target, Some(Target::Host("productcatalogservice".into())));
    assert_eq!(
        p.repeat_flags,
        vec!["--context cluster1", "--context cluster2", "-n default"]
    );

    let p = plan(&[
        "vs/productcatalog-migration",
        "0/100",
        "--steps",
        "20,50,80",
        "--interval",
        "2m",
    ])
    .expect("steps");
    assert_eq!(
        p.target,
        Some(Target::Vs("productcatalog-migration".into()))
    );
    let Action::Set(s) = &p.action else {
        panic!("set")
    };
    assert_eq!(s.steps, vec![20, 50, 80]);
    assert_eq!(s.interval, std::time::Duration::from_secs(120));

    assert!(matches!(
        plan(&["undo"]).expect("undo").action,
        Action::Undo
    ));
    assert!(matches!(
        plan(&["status"]).expect("status").action,
        Action::Status
    ));
    let p =
        plan(&["-n", "default", "undo", "vs/x", "--dry-run", "-o", "yaml"]).expect("undo flags");
    assert!(matches!(p.action, Action::Undo));
    assert_eq!(p.target, Some(Target::Vs("x".into())));
    assert_eq!(p.write.dry_run, crate::cli::DryRun::Client);
    let p = plan(&[
        "status",
        "productcatalogservice",
        "--context",
        "a",
        "--context",
        "b",
        "-o",
        "json",
    ])
    .expect("status");
    assert_eq!(p.repeat_flags, vec!["--context a", "--context b"]);
    // Flags anywhere, as kubectl users type them.
    let p = plan(&[
        "--context",
        "c1",
        "80/20",
        "-n",
        "default",
        "--dry-run=server",
    ])
    .expect("flags first");
    assert_eq!(p.write.dry_run, crate::cli::DryRun::Server);
    let p = plan(&["--dry-run=server", "undo", "-o", "name"]).expect("flags before the verb");
    assert_eq!(p.write.dry_run, crate::cli::DryRun::Server);
    assert_eq!(p.write.output, Some(crate::cli::OutputFormat::Name));
    let p = plan(&["v1=80,v2=20", "--route", "http/1", "-y"]).expect("named");
    assert_eq!(p.route, Some(RouteSelector::At(RouteKind::Http, 1)));
}

fn usage_line(argv: &[&str]) -> String {
    match plan(argv) {
        Ok(p) => panic!("{argv:?} parsed: {p:?}"),
        Err(e) => {
            let is_clap = e.downcast_ref::<clap::Error>().is_some();
            assert!(
                is_clap || crate::error::exit_code(&e) == 2,
                "{argv:?}: {e:#}"
            );
            if is_clap {
                format!("clap: {e}")
            } else {
                e.to_string()
            }
        }
    }
}

#[test]
fn bad_weights_are_usage_errors_naming_weights() {
    for (argv, want) in [
        (&["80/30"][..], "WEIGHTS: 80/30 adds up to 110, not 100"),
        (&["abc"][..], "WEIGHTS: missing after TARGET abc"),
        (&["-5/105"][..], "WEIGHTS: \"-5\" is not a weight"),
        (&["80/"][..], "WEIGHTS: \"80/\" has an empty weight"),
        (&["x", "80/30"][..], "WEIGHTS: 80/30 adds up to 110"),
        (&["x", "-5/105"][..], "WEIGHTS: \"-5\" is not a weight"),
        (&["svc/x", "80/20"][..], "TARGET: \"svc/x\" is neither"),
        (&[][..], "WEIGHTS: missing"),
        (
            &["80/20", "--steps", "20,50,30"][..],
            "--steps: 20,50,30 must be strictly increasing",
        ),
        (&["80/20", "undo"][..], "undo: \"80/20\" before undo"),
        (
            &["--steps", "20", "status"][..],
            "--steps: does not go with status",
        ),
        (
            &["vs/x", "80/20", "--create", "--to", "a,b"][..],
            "--create: needs TARGET as a host",
        ),
        (
            &["x", "80/20", "--create", "--to", "a"][..],
            "--to: give two or more",
        ),
        (
            &["x", "80/20/0", "--create", "--to", "a,b"][..],
            "WEIGHTS: 3 weights for 2 destinations given with --to a,b",
        ),
        (
            &["x", "80/20", "--create", "--to", "a,B_"][..],
            "--to: invalid name",
        ),
        (
            &["x", "80/20", "--create", "--to", "a,b", "--name", "Bad"][..],
            "--name: invalid name",
        ),
    ] {
        let line = usage_line(argv);
        assert!(line.starts_with(want), "{argv:?}: {line}");
    }
}

#[test]
fn clap_catches_the_rest() {
    for argv in [
        &["80/20", "--steps", "0"][..],
        &["80/20", "--steps", "100"][..],
        &["80/20", "--interval", "2m"][..],
        &["80/20", "--to", "a,b"][..],
        &["80/20", "--create"][..],
        &["undo", "80/20"][..],
        &["status", "-y"][..],
        &["80/20", "--interval", "2x", "--steps", "50"][..],
    ] {
        let line = usage_line(argv);
        assert!(line.starts_with("clap: "), "{argv:?}: {line}");
    }
}
