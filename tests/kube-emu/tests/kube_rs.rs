//! kube-rs against kube-emu: CRUD, selectors, patches, SSA, validation, hooks.
#![allow(missing_docs, clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_emu::{Emu, Fault, FaultAction};
use serde_json::json;
use std::time::{Duration, Instant};

fn se_api(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "ServiceEntry"),
        "serviceentries",
    );
    Api::namespaced_with(client, ns, &ar)
}

fn se(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": name}, "spec": spec})
}

fn err_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other:?}"),
    }
}

fn api_status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test]
async fn create_get_list_selectors_and_pages() {
    let emu = Emu::builder().start().unwrap();
    let client = emu.client("cluster1").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (i, tier) in ["web", "web", "db", "cache"].iter().enumerate() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("cm{i}"), "labels": {"tier": tier, "idx": i.to_string()}},
            "data": {"k": "v"}
        }))
        .unwrap();
        let created = cms.create(&PostParams::default(), &cm).await.unwrap();
        assert!(created.metadata.uid.is_some());
        assert!(created.metadata.creation_timestamp.is_some());
        assert!(created.metadata.resource_version.is_some());
    }
    // AlreadyExists.
    let dup: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cm0"}})).unwrap();
    let e = api_status(cms.create(&PostParams::default(), &dup).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    // generateName.
    let gen: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let g = cms.create(&PostParams::default(), &gen).await.unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier=web"))
                .await
                .unwrap()
        ),
        ["cm0", "cm1"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier in (db,cache)"))
                .await
                .unwrap()
        ),
        ["cm2", "cm3"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier notin (web),tier"))
                .await
                .unwrap()
        ),
        ["cm2", "cm3"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier!=web,idx"))
                .await
                .unwrap()
        ),
        ["cm2", "cm3"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("!idx"))
                .await
                .unwrap()
        )
        .len(),
        2
    ); // gen-* and kube-root-ca.crt
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=cm3"))
                .await
                .unwrap()
        ),
        ["cm3"]
    );
    // Pages.
    let p1 = cms
        .list(&ListParams::default().labels("tier").limit(3))
        .await
        .unwrap();
    assert_eq!(p1.items.len(), 3);
    let token = p1.metadata.continue_.clone().unwrap();
    let p2 = cms
        .list(
            &ListParams::default()
                .labels("tier")
                .limit(3)
                .continue_token(&token),
        )
        .await
        .unwrap();
    assert_eq!(names(p2), ["cm3"]);
    // Cluster-wide list.
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert!(all.list(&ListParams::default()).await.unwrap().items.len() >= 7);
    // 404s.
    let e = api_status(cms.get("nope").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, "configmaps \"nope\" not found");
    let missing_ns: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let e = api_status(
        missing_ns
            .create(&PostParams::default(), &dup)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
    assert!(
        e.message.contains("namespaces \"nowhere\" not found"),
        "{}",
        e.message
    );
    // Delete.
    cms.delete("cm0", &DeleteParams::default()).await.unwrap();
    assert!(emu
        .get_json("cluster1", "/api/v1/namespaces/default/configmaps/cm0")
        .is_none());
    assert!(emu
        .get_json("cluster1", "/api/v1/namespaces/default/configmaps/cm1")
        .is_some());
}

#[tokio::test]
async fn stale_update_conflicts_and_noop_keeps_resource_version() {
    let emu = Emu::builder().start().unwrap();
    let client = emu.client("cluster1").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "a"}, "data": {"x": "1"}})).unwrap();
    let v1 = cms.create(&PostParams::default(), &cm).await.unwrap();
    let mut v2 = v1.clone();
    v2.data.as_mut().unwrap().insert("x".into(), "2".into());
    let v2 = cms.replace("a", &PostParams::default(), &v2).await.unwrap();
    assert_ne!(v1.metadata.resource_version, v2.metadata.resource_version);
    // Stale.
    let mut stale = v1.clone();
    stale.data.as_mut().unwrap().insert("x".into(), "3".into());
    let e = api_status(
        cms.replace("a", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("the object has been modified"),
        "{}",
        e.message
    );
    // No-op.
    let v3 = cms.replace("a", &PostParams::default(), &v2).await.unwrap();
    assert_eq!(v2.metadata.resource_version, v3.metadata.resource_version);
    // Merge patch, JSON patch and strategic merge patch.
    let p = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"y": "9"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.data.as_ref().unwrap().len(), 2);
    let req = http::Request::patch("/api/v1/namespaces/default/configmaps/a")
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&json!([{"op": "remove", "path": "/data/x"}])).unwrap())
        .unwrap();
    let p: ConfigMap = client.request(req).await.unwrap();
    assert_eq!(p.data.as_ref().unwrap().keys().collect::<Vec<_>>(), ["y"]);
    let p = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"z": "1"}, "metadata": {"labels": {"l": "v"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.data.as_ref().unwrap().len(), 2);
    assert_eq!(p.metadata.labels.unwrap()["l"], "v");
}

#[tokio::test]
async fn service_defaults_and_strategic_ports() {
    let emu = Emu::builder().start().unwrap();
    let client = emu.client("cluster1").await.unwrap();
    let svcs: Api<Service> = Api::namespaced(client, "default");
    let s: Service = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]}}),
    )
    .unwrap();
    let s = svcs.create(&PostParams::default(), &s).await.unwrap();
    let spec = s.spec.unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("10.96."));
    assert_eq!(
        spec.ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );
    let p = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ports": [{"name": "grpc", "port": 9090}]}})),
        )
        .await
        .unwrap();
    let ports: Vec<i32> = p
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [80, 9090]);
    let p = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ports": [{"port": 80, "$patch": "delete"}]}})),
        )
        .await
        .unwrap();
    let ports: Vec<i32> = p
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [9090]);
    // Status subresource only changes status; main resource keeps status.
    let st = json!({"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
    svcs.patch_status("web", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    let got = svcs.get("web").await.unwrap();
    assert_eq!(
        got.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
            .ip
            .as_deref(),
        Some("1.2.3.4")
    );
    let p = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {}}})),
        )
        .await
        .unwrap();
    assert!(p.status.unwrap().load_balancer.unwrap().ingress.is_some());
    // As on kube-apiserver: no longer a LoadBalancer, no load-balancer status, node ports or
    // external traffic policy; and only a LoadBalancer may be given a load-balancer status.
    let p = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "ClusterIP"}})),
        )
        .await
        .unwrap();
    assert!(p.status.unwrap().load_balancer.unwrap().ingress.is_none());
    let spec = p.spec.unwrap();
    assert!(spec.external_traffic_policy.is_none());
    assert!(spec.ports.unwrap().iter().all(|p| p.node_port.is_none()));
    let err = svcs
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("status.loadBalancer.ingress: Forbidden"),
        "{err}"
    );
}

#[tokio::test]
async fn server_side_apply_conflicts_force_and_removal() {
    let emu = Emu::builder().start().unwrap();
    let client = emu.client("cluster1").await.unwrap();
    let api = se_api(client, "default");
    let spec = json!({"hosts": ["a.example.com"], "location": "MESH_EXTERNAL", "resolution": "DNS",
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]});
    let obj = se("s1", spec.clone());
    let created = api
        .patch("s1", &PatchParams::apply("alice"), &Patch::Apply(&obj))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone();
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(&mf[0].fields_v1).unwrap();
    assert!(
        fields
            .pointer("/f:spec/f:ports/k:{\"name\":\"http\"}/f:number")
            .is_some(),
        "{fields}"
    );
    // Same apply again: no change, same resourceVersion.
    let again = api
        .patch("s1", &PatchParams::apply("alice"), &Patch::Apply(&obj))
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, rv);
    // Bob applies a different resolution: conflict.
    let bob = se("s1", json!({"resolution": "STATIC"}));
    let e = api_status(
        api.patch("s1", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    assert!(
        e.message.contains("conflict with \"alice\""),
        "{}",
        e.message
    );
    let causes = e.details.unwrap().causes;
    assert_eq!(causes[0].field, ".spec.resolution");
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    // Bob applies the same value: shared ownership, no conflict.
    api.patch(
        "s1",
        &PatchParams::apply("bob"),
        &Patch::Apply(&se("s1", json!({"location": "MESH_EXTERNAL"}))),
    )
    .await
    .unwrap();
    // Force takes ownership.
    let forced = api
        .patch(
            "s1",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["resolution"], "STATIC");
    assert_eq!(forced.metadata.generation, Some(2));
    // Alice drops `ports` (sole owner): removed. Drops resolution (now Bob's): kept.
    let alice2 = se(
        "s1",
        json!({"hosts": ["a.example.com"], "location": "MESH_EXTERNAL"}),
    );
    let after = api
        .patch("s1", &PatchParams::apply("alice"), &Patch::Apply(&alice2))
        .await
        .unwrap();
    assert!(after.data["spec"].get("ports").is_none(), "{}", after.data);
    assert_eq!(after.data["spec"]["resolution"], "STATIC");
    // dryRun stores nothing.
    let dry = PatchParams {
        dry_run: true,
        ..PatchParams::apply("carol")
    };
    api.patch("s2", &dry, &Patch::Apply(&se("s2", spec)))
        .await
        .unwrap();
    assert!(emu
        .get_json(
            "cluster1",
            "/apis/networking.istio.io/v1/namespaces/default/serviceentries/s2"
        )
        .is_none());
    // fieldManager is required for apply.
    let e = api_status(
        api.patch("s1", &PatchParams::default(), &Patch::Apply(&alice2))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
}

#[tokio::test]
async fn crd_validation_rejects_with_422_and_strict_unknown_fields() {
    let emu = Emu::builder().start().unwrap();
    let client = emu.client("cluster1").await.unwrap();
    let api = se_api(client, "default");
    let missing_hosts = se("bad", json!({"resolution": "DNS"}));
    let e = api_status(
        api.create(
            &PostParams::default(),
            &serde_json::from_value(missing_hosts.clone()).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.contains("spec.hosts: Required value"),
        "{}",
        e.message
    );
    let e = api_status(
        api.patch(
            "bad",
            &PatchParams::apply("t"),
            &Patch::Apply(&missing_hosts),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    let none_with_endpoints = se(
        "bad",
        json!({"hosts": ["x.example.com"], "resolution": "NONE", "endpoints": [{"address": "1.1.1.1"}]}),
    );
    let e = api_status(
        api.patch(
            "bad",
            &PatchParams::apply("t"),
            &Patch::Apply(&none_with_endpoints),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("NONE mode cannot set endpoints"),
        "{}",
        e.message
    );
    // Several faults are all named.
    let multi = se(
        "bad",
        json!({"hosts": "notalist", "resolution": "SOMETIMES", "ports": [{"number": 99999999999u64, "name": "x"}]}),
    );
    let e = api_status(
        api.patch("bad", &PatchParams::apply("t"), &Patch::Apply(&multi))
            .await
            .unwrap_err(),
    );
    let fields: Vec<String> = e
        .details
        .unwrap()
        .causes
        .iter()
        .map(|c| c.field.clone())
        .collect();
    assert!(fields.contains(&"spec.hosts".to_string()), "{fields:?}");
    assert!(
        fields.contains(&"spec.resolution".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with("spec.ports[0]")),
        "{fields:?}"
    );
    // Unknown fields: 400 under Strict, pruned with a warning otherwise.
    let unknown = se("u", json!({"hosts": ["u.example.com"], "bogus": 1}));
    let strict = PatchParams {
        field_validation: Some(kube::api::ValidationDirective::Strict),
        ..PatchParams::apply("t")
    };
    let e = api_status(
        api.patch("u", &strict, &Patch::Apply(&unknown))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    assert!(
        e.message.contains("unknown field \"spec.bogus\""),
        "{}",
        e.message
    );
    let ok = api
        .patch("u", &PatchParams::apply("t"), &Patch::Apply(&unknown))
        .await
        .unwrap();
    assert!(ok.data["spec"].get("bogus").is_none());
}

#[tokio::test]
async fn tokens_namespaces_and_service_accounts() {
    let emu = Emu::builder().start().unwrap();
    let client = emu.client("cluster1").await.unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in ["default", "kube-system", "istio-system"] {
        nss.get(ns).await.unwrap();
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        sas.get("default").await.unwrap();
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "vm"}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "vm");
    sas.get("default").await.unwrap();
    let tr = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": ["istio-ca"], "expirationSeconds": 600}});
    let req = http::Request::post("/api/v1/namespaces/vm/serviceaccounts/default/token")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&tr).unwrap())
        .unwrap();
    let resp: serde_json::Value = client.request(req).await.unwrap();
    let token = resp["status"]["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], json!(["istio-ca"]));
    assert_eq!(claims["kubernetes.io"]["namespace"], "vm");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "default");
    assert!(resp["status"]["expirationTimestamp"].is_string());
    let req = http::Request::post("/api/v1/namespaces/vm/serviceaccounts/nobody/token")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&tr).unwrap())
        .unwrap();
    let e = client.request::<serde_json::Value>(req).await.unwrap_err();
    assert_eq!(err_code(&e), 404);
}

#[tokio::test]
async fn discovery_both_modes_and_runtime_crds() {
    let emu = Emu::builder().start().unwrap();
    let client = emu.client("cluster1").await.unwrap();
    for d in [
        kube::Discovery::new(client.clone()).run().await.unwrap(),
        kube::Discovery::new(client.clone())
            .run_aggregated()
            .await
            .unwrap(),
    ] {
        assert!(d.has_group("networking.istio.io"));
        let (ar, caps) = d
            .resolve_gvk(&GroupVersionKind::gvk(
                "networking.istio.io",
                "v1",
                "ServiceEntry",
            ))
            .unwrap();
        assert_eq!(ar.plural, "serviceentries");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    }
    // A CRD created at run time registers its kind.
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "required": ["size"],
                    "properties": {"size": {"type": "integer", "minimum": 1}}}}}}}]}
    });
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(crd).unwrap(),
    )
    .await
    .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 0}});
    let e = api_status(
        widgets
            .create(&PostParams::default(), &serde_json::from_value(w).unwrap())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("spec.size"), "{}", e.message);
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}});
    widgets
        .create(&PostParams::default(), &serde_json::from_value(w).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn faults_log_auth_and_deterministic_mode() {
    let emu = Emu::builder().deterministic().start().unwrap();
    let client = emu.client("cluster1").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    emu.clear_requests();
    emu.inject(
        "cluster1",
        Fault::new("GET", "/configmaps/x", FaultAction::Status(500)).nth(2),
    );
    assert_eq!(err_code(&cms.get("x").await.unwrap_err()), 404);
    assert_eq!(err_code(&cms.get("x").await.unwrap_err()), 500);
    assert_eq!(err_code(&cms.get("x").await.unwrap_err()), 404);
    emu.inject(
        "cluster1",
        Fault::new("GET", "/configmaps/y", FaultAction::Reset),
    );
    assert!(!matches!(
        cms.get("y").await.unwrap_err(),
        kube::Error::Api(_)
    ));
    emu.inject(
        "cluster1",
        Fault::new(
            "GET",
            "/configmaps/z",
            FaultAction::Delay(Duration::from_millis(300)),
        ),
    );
    let t = Instant::now();
    assert_eq!(err_code(&cms.get("z").await.unwrap_err()), 404);
    assert!(t.elapsed() >= Duration::from_millis(300));
    emu.inject(
        "cluster1",
        Fault::new("POST", "/configmaps", FaultAction::Status(403)),
    );
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    assert_eq!(
        err_code(&cms.create(&PostParams::default(), &cm).await.unwrap_err()),
        403
    );
    assert!(emu
        .get_json("cluster1", "/api/v1/namespaces/default/configmaps/c")
        .is_none());
    let c = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(
        c.metadata.creation_timestamp.unwrap().0.to_string(),
        "2026-01-01T00:00:00Z"
    );
    assert!(c
        .metadata
        .uid
        .unwrap()
        .starts_with("00000000-0000-4000-8000-"));
    let log: Vec<_> = emu
        .requests("cluster1")
        .into_iter()
        .filter(|r| !r.is_discovery())
        .collect();
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404, 500, 404, 0, 404, 403, 201]);
    assert_eq!(log[6].method, "POST");
    assert_eq!(log[6].path, "/api/v1/namespaces/default/configmaps");
    // A wrong token gets 401.
    emu.set_token("cluster1", "other");
    assert_eq!(err_code(&cms.get("c").await.unwrap_err()), 401);
}

/// A far-away cluster: every request pays the round trip, discovery too, and only there.
/// (Lower bounds only: that the delay is paid, never how fast anything is.)
#[tokio::test]
async fn latency_delays_every_request_of_one_cluster() {
    let emu = Emu::builder()
        .clusters(&["near", "far"])
        .latency(Duration::from_millis(150))
        .start()
        .unwrap();
    emu.set_latency("near", Duration::ZERO);
    let far = emu.client("far").await.unwrap();
    let t = Instant::now();
    far.apiserver_version().await.unwrap();
    // The first request also pays the TLS handshake.
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    let cms: Api<ConfigMap> = Api::namespaced(far.clone(), "default");
    let t = Instant::now();
    assert_eq!(err_code(&cms.get("x").await.unwrap_err()), 404);
    let _ = far
        .list_api_group_resources("networking.istio.io/v1")
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(emu
        .get_json("far", "/api/v1/namespaces/default/configmaps/c")
        .is_some());
    assert!(emu.requests("far").iter().any(|r| r.is_discovery()));
    // Set back to zero, the same cluster answers at once again (no sleep at all).
    emu.set_latency("far", Duration::ZERO);
    let near = emu.client("near").await.unwrap();
    near.apiserver_version().await.unwrap();
}

#[tokio::test]
async fn seeds_honour_cluster_annotation_and_keep_status() {
    let seed = r#"
apiVersion: v1
kind: Service
metadata: {name: gw, namespace: istio-system}
spec: {type: LoadBalancer, ports: [{port: 15443, name: tls}]}
status: {loadBalancer: {ingress: [{ip: 203.0.113.7}]}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: vm1
  namespace: vms
  annotations: {kube-emu/cluster: cluster2}
spec: {address: 10.0.0.5}
status: {conditions: [{type: Healthy, status: "True"}]}
"#;
    let emu = Emu::builder()
        .clusters(&["cluster1", "cluster2"])
        .seed_yaml(seed)
        .start()
        .unwrap();
    for c in ["cluster1", "cluster2"] {
        let svc = emu
            .get_json(c, "/api/v1/namespaces/istio-system/services/gw")
            .unwrap();
        assert_eq!(
            svc["status"]["loadBalancer"]["ingress"][0]["ip"],
            "203.0.113.7"
        );
    }
    let we = "/apis/networking.istio.io/v1/namespaces/vms/workloadentries/vm1";
    assert!(emu.get_json("cluster1", we).is_none());
    let got = emu.get_json("cluster2", we).unwrap();
    assert_eq!(got["status"]["conditions"][0]["type"], "Healthy");
    assert!(got["metadata"].get("annotations").is_none());
    assert_eq!(
        emu.list_json("cluster2", "/apis/networking.istio.io/v1/workloadentries")
            .len(),
        1
    );
    // Through kube-rs, on the second context.
    let client = emu.client("cluster2").await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client, "vms");
    sas.get("default").await.unwrap();
    emu.apply_yaml(
        "cluster1",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late}\ndata: {a: b}\n",
    )
    .unwrap();
    assert!(emu
        .get_json("cluster1", "/api/v1/namespaces/default/configmaps/late")
        .is_some());
    assert!(emu.delete_path("cluster1", "/api/v1/namespaces/default/configmaps/late"));
    assert!(!emu.delete_path("cluster1", "/api/v1/namespaces/default/configmaps/late"));
}

#[tokio::test]
async fn no_crds_means_no_istio() {
    let emu = Emu::builder().no_crds().start().unwrap();
    let client = emu.client("cluster1").await.unwrap();
    let d = kube::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(!d.has_group("networking.istio.io"));
    let e = se_api(client, "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), 404);
}

/// A server dry-run delete keeps the object, whether `dryRun` comes in the query (kubectl) or
/// only in the DeleteOptions body (kube-rs), as on a real API server.
#[tokio::test]
async fn dry_run_delete_in_the_body_keeps_the_object() {
    let emu = Emu::builder().start().unwrap();
    let client = emu.client("cluster1").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "kept"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let dry = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    cms.delete("kept", &dry).await.unwrap();
    cms.get("kept").await.unwrap();
    cms.delete("kept", &DeleteParams::default()).await.unwrap();
    assert_eq!(err_code(&cms.get("kept").await.unwrap_err()), 404);
}
