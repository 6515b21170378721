//! End to end: `kubectl mesh-split` against two clusters loaded with Istio's real CRDs, on both
//! tiers (kube-emu, and real kube-apiservers), replaying the VM migration of Istio's multicluster
//! sample (100/0 → 80/20 → 0/100). On the real tier, istiod also shows what Envoy is sent.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::fixtures::{VS_CLUSTER1, VS_CLUSTER2};
use crate::common::{kubectl, plugin, writes, Fault, FaultAction, Run, Server, Target, Tier};
use mesh_shared::prompt::Prompter;
use serde_json::Value;

const VS_PATH: &str =
    "/apis/networking.istio.io/v1/namespaces/default/virtualservices/productcatalog-migration";

const BOTH: [&str; 5] = ["--context", "cluster1", "--context", "cluster2", "-n"];

fn two_clusters(tier: Tier) -> Server {
    Server::builder(tier)
        .clusters(&["cluster1", "cluster2"])
        .start()
}

/// Applies YAML with the real `kubectl apply` (client-side), as the sample's scripts do.
fn kubectl_apply(srv: &dyn Target, context: &str, yaml: &str) {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(yaml.as_bytes()).expect("write yaml");
    let path = f.path().to_string_lossy().into_owned();
    kubectl(srv, &["apply", "--context", context, "-f", &path]).ok();
}

/// The sample at step 9: the migration VirtualService at 100/0 in both clusters.
fn migration(tier: Tier) -> Server {
    let srv = two_clusters(tier);
    kubectl_apply(&srv, "cluster1", VS_CLUSTER1);
    kubectl_apply(&srv, "cluster2", VS_CLUSTER2);
    clear_requests(&srv);
    srv
}

/// Forgets kube-emu's request log (the real tier keeps none).
fn clear_requests(srv: &Server) {
    if let Some(emu) = srv.emu() {
        emu.clear_requests();
    }
}

fn split(srv: &dyn Target, args: &[&str]) -> Run {
    plugin(Some(srv), "split", args)
}

fn with_both<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend_from_slice(&BOTH);
    v.push("default");
    v
}

fn vs(srv: &Server, cluster: &str) -> Value {
    srv.get_json(cluster, VS_PATH).expect("virtualservice")
}

fn weights(srv: &Server, cluster: &str) -> Vec<u64> {
    let v = vs(srv, cluster);
    v["spec"]["http"][0]["route"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|d| d["weight"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

fn previous(srv: &Server, cluster: &str) -> Option<Value> {
    vs(srv, cluster)["metadata"]["annotations"]["mesh.kubectl.io/previous-weights"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
}

/// Nothing was written in either cluster: kube-emu's request log (the real tier has none).
fn no_writes(srv: &Server) {
    if let Some(emu) = srv.emu() {
        for c in ["cluster1", "cluster2"] {
            let w = writes(emu, c);
            assert!(w.is_empty(), "{c} was written: {w:?}");
        }
    }
}

const SECOND_VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
  annotations:
    kube-emu/cluster: cluster1
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v2
      weight: 50
";

const REVIEWS_PATH: &str =
    "/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews";
const FRONTEND_PATH: &str =
    "/apis/networking.istio.io/v1/namespaces/default/virtualservices/frontend";

/// Captured output of an in-process run.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// Answers the pick-list with a fixed index and records what it was shown.
struct Scripted {
    pick: usize,
    shown: Vec<String>,
}

impl Prompter for Scripted {
    fn select(&mut self, question: &str, items: &[String]) -> anyhow::Result<usize> {
        self.shown.push(question.to_string());
        self.shown.extend(items.iter().cloned());
        Ok(self.pick)
    }
    fn confirm(&mut self, _question: &str) -> anyhow::Result<bool> {
        Ok(false)
    }
}

fn in_process(
    srv: &Server,
    args: &[&str],
    prompter: &mut Scripted,
    terminal: bool,
) -> (anyhow::Result<()>, String, String) {
    let kubeconfig = srv.kubeconfig().to_string_lossy().into_owned();
    let mut argv = vec!["kubectl mesh-split", "--kubeconfig", kubeconfig.as_str()];
    argv.extend_from_slice(args);
    let parsed = mesh_shared::app::parse_from::<mesh_shared::split::Args, _, _>(argv)
        .unwrap_or_else(|_| panic!("parse {args:?}"));
    let (out, err) = (Buf::default(), Buf::default());
    let mut io = mesh_shared::Io {
        out: Box::new(out.clone()),
        err: Box::new(err.clone()),
        terminal,
    };
    let result =
        mesh_shared::app::block_on(mesh_shared::split::run_with(parsed, &mut io, prompter));
    (result, out.text(), err.text())
}

/// Faults are kube-emu's alone.
#[test]
fn a_failed_write_in_cluster2_puts_cluster1_back_and_exits_4() {
    let srv = migration(Tier::Emu);
    let emu = srv.emu().expect("kube-emu");
    emu.inject(
        "cluster2",
        Fault::new("PATCH", "virtualservices", FaultAction::Status(500)),
    );
    let run = split(&srv, &with_both(&["80/20"])).expect_code(4);
    assert_eq!(weights(&srv, "cluster1"), vec![100, 0]);
    assert_eq!(weights(&srv, "cluster2"), vec![100, 0]);
    // The restore removed the annotation the failed change had added.
    assert!(previous(&srv, "cluster1").is_none());
    assert!(run.stderr.contains("CONTEXT    STATE"), "{}", run.stderr);
    assert!(
        run.stderr.contains("cluster1   restored to 100/0"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("cluster2   FAILED: cannot apply VirtualService default/productcatalog-migration in context \"cluster2\""), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("error: the write failed in context cluster2"),
        "{}",
        run.stderr
    );
    // cluster1: the change and its restore.
    assert_eq!(writes(emu, "cluster1").len(), 2);

    // A failure in the first context: nothing was written anywhere else.
    emu.clear_requests();
    // An apply that gets no answer is retried once (it is idempotent), so reset both tries:
    // each fault fires once, on the first matching request after those before it fired.
    for _ in 0..2 {
        emu.inject(
            "cluster1",
            Fault::new("PATCH", "virtualservices", FaultAction::Reset),
        );
    }
    let run = split(&srv, &with_both(&["80/20"])).expect_code(4);
    assert!(
        run.stderr
            .contains("cluster2   unchanged (100/0), not attempted"),
        "{}",
        run.stderr
    );
    assert!(writes(emu, "cluster2").is_empty());
    assert_eq!(weights(&srv, "cluster1"), vec![100, 0]);
}

/// Three contexts: cluster1 goes first, alone; cluster2 and cluster3 go together. When
/// cluster3's write fails, cluster2 was written alongside it, so it is put back too, with
/// cluster1, and the error says so. Faults are kube-emu's alone.
#[test]
fn a_failure_among_the_rest_puts_back_the_ones_written_alongside() {
    let srv = Server::builder(Tier::Emu)
        .clusters(&["cluster1", "cluster2", "cluster3"])
        .start();
    for c in ["cluster1", "cluster2", "cluster3"] {
        kubectl_apply(&srv, c, VS_CLUSTER2);
    }
    let emu = srv.emu().expect("kube-emu");
    emu.clear_requests();
    emu.inject(
        "cluster3",
        Fault::new("PATCH", "virtualservices", FaultAction::Status(500)),
    );
    let args = [
        "80/20",
        "--context",
        "cluster1",
        "--context",
        "cluster2",
        "--context",
        "cluster3",
        "-n",
        "default",
    ];
    let run = split(&srv, &args).expect_code(4);
    for c in ["cluster1", "cluster2", "cluster3"] {
        assert_eq!(weights(&srv, c), vec![100, 0], "{c}");
        assert!(previous(&srv, c).is_none(), "{c}");
    }
    for line in [
        "cluster1   restored to 100/0",
        "cluster2   restored to 100/0",
        "cluster3   FAILED: cannot apply VirtualService default/productcatalog-migration in context \"cluster3\"",
        "error: the write failed in context cluster3; the other contexts written were put back",
    ] {
        assert!(run.stderr.contains(line), "{line}\n{}", run.stderr);
    }
    // cluster1 and cluster2: each its change and its restore.
    assert_eq!(writes(emu, "cluster1").len(), 2);
    assert_eq!(writes(emu, "cluster2").len(), 2);
}

/// A signal during a write across contexts (#18 item 17): cluster1's write is in flight when
/// it comes, so that write finishes, cluster2 is never written, cluster1 is put back, and the
/// state table is printed with exit 4. For SIGINT, SIGTERM and SIGHUP alike.
#[test]
fn a_signal_between_clusters_rolls_back_and_exits_4() {
    let srv = migration(Tier::Emu);
    let emu = srv.emu().expect("kube-emu");
    for sig in ["INT", "TERM", "HUP"] {
        emu.clear_requests();
        emu.inject(
            "cluster1",
            Fault::new(
                "PATCH",
                "virtualservices",
                FaultAction::Delay(Duration::from_millis(1500)),
            ),
        );
        let child = common::spawn_plugin(&srv, "split", &with_both(&["80/20"]));
        // The reads of both contexts come before any write; then cluster1's write is held.
        let deadline = Instant::now() + Duration::from_secs(20);
        while emu.requests("cluster2").is_empty() {
            assert!(Instant::now() < deadline, "the run never read cluster2");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(500));
        let killed = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let run: Run = child.wait_with_output().expect("wait").into();
        let run = run.expect_code(4);
        assert!(
            run.stderr.contains("cluster1   restored to 100/0"),
            "{sig}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!(
                "cluster2   FAILED: interrupted by SIG{sig}: context cluster2 was not written"
            )),
            "{sig}: {}",
            run.stderr
        );
        assert_eq!(
            writes(emu, "cluster1").len(),
            2,
            "the write and its restore"
        );
        assert!(writes(emu, "cluster2").is_empty());
        assert_eq!(weights(&srv, "cluster1"), vec![100, 0]);
        assert_eq!(weights(&srv, "cluster2"), vec![100, 0]);
    }
}

/// A rollback never overwrites an edit made after this run wrote (#18 item 13): cluster1 is
/// written, cluster2's write fails slowly, and meanwhile another writer sets cluster1 to 50/50.
#[test]
fn the_rollback_leaves_a_route_another_writer_changed_meanwhile() {
    let srv = migration(Tier::Emu);
    let emu = srv.emu().expect("kube-emu");
    emu.inject(
        "cluster2",
        Fault::new(
            "PATCH",
            "virtualservices",
            FaultAction::DelayThenStatus(Duration::from_secs(3), 500),
        ),
    );
    let child = common::spawn_plugin(&srv, "split", &with_both(&["80/20"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while weights(&srv, "cluster1") != [80, 20] {
        assert!(Instant::now() < deadline, "cluster1 was never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let fifty = r#"[{"op":"replace","path":"/spec/http/0/route/0/weight","value":50},{"op":"replace","path":"/spec/http/0/route/1/weight","value":50}]"#;
    kubectl(
        &srv,
        &[
            "patch",
            "--context",
            "cluster1",
            "-n",
            "default",
            "virtualservice",
            "productcatalog-migration",
            "--type=json",
            "-p",
            fifty,
        ],
    )
    .expect_code(0);
    let run: Run = child.wait_with_output().expect("wait").into();
    let run = run.expect_code(4);
    assert_eq!(
        weights(&srv, "cluster1"),
        vec![50, 50],
        "the other writer's edit stays"
    );
    assert_eq!(weights(&srv, "cluster2"), vec![100, 0]);
    assert!(
        run.stderr
            .contains("cluster1   NOT restored: changed by another writer since this run wrote it"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("it may have landed: it did not land"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("some contexts could NOT be put back"),
        "{}",
        run.stderr
    );
}

on_both_tiers! {
/// `undo` across contexts that were not changed by one run would leave them at different
/// weights (#18 item 8): here cluster2 alone was moved on after the joint 80/20.
fn undo_refuses_contexts_changed_separately(tier) {
    let srv = migration(tier);
    split(&srv, &with_both(&["80/20"])).ok();
    let c1 = previous(&srv, "cluster1").expect("annotation");
    let c2 = previous(&srv, "cluster2").expect("annotation");
    assert!(c1["change"].is_string(), "{c1}");
    assert_eq!(c1["change"], c2["change"], "one change ID for the run");
    // Undo of the joint change works in both, and records one new ID.
    split(&srv, &with_both(&["undo"])).ok();
    assert_eq!(weights(&srv, "cluster1"), vec![100, 0]);
    let u1 = previous(&srv, "cluster1").expect("annotation");
    assert_eq!(u1["change"], previous(&srv, "cluster2").expect("annotation")["change"]);
    assert_ne!(u1["change"], c1["change"]);
    split(&srv, &with_both(&["undo"])).ok();
    assert_eq!(weights(&srv, "cluster2"), vec![80, 20]);

    split(&srv, &["50/50", "--context", "cluster2", "-n", "default"]).ok();
    clear_requests(&srv);
    let run = split(&srv, &with_both(&["undo"])).expect_code(3);
    assert!(
        run.stderr.contains("error: the contexts were not changed by one run"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("cluster1 holds 80/20 (change "), "{}", run.stderr);
    assert!(run.stderr.contains("undo would set 100/0)"), "{}", run.stderr);
    assert!(run.stderr.contains("cluster2 holds 50/50 (change "), "{}", run.stderr);
    assert!(run.stderr.contains("undo would set 80/20)"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    no_writes(&srv);
    assert_eq!(weights(&srv, "cluster1"), vec![80, 20]);
    assert_eq!(weights(&srv, "cluster2"), vec![50, 50]);
    // One context at a time is still possible.
    split(&srv, &["undo", "--context", "cluster2", "-n", "default"]).ok();
    assert_eq!(weights(&srv, "cluster2"), vec![80, 20]);
}

fn vm_migration_80_20_undo_and_0_100_in_two_clusters(tier) {
    let srv = migration(tier);

    // Through the real kubectl, as a user types it.
    let mut args = vec!["mesh-split", "80/20"];
    args.extend(with_both(&[]));
    let run = kubectl(&srv, &args).ok();
    assert_eq!(
        run.stdout,
        "CONTEXT    DESTINATION                                BEFORE   AFTER
cluster1   productcatalogservice                      100      80
cluster1   productcatalogservice-gke.default.global   0        20
cluster2   productcatalogservice                      100      80
cluster2   productcatalogservice-gke                  0        20
"
    );
    assert!(
        run.stderr.contains(
            "cluster1: virtualservice.networking.istio.io/productcatalog-migration configured"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(weights(&srv, "cluster1"), vec![80, 20]);
    assert_eq!(weights(&srv, "cluster2"), vec![80, 20]);
    // The previous weights are recorded per cluster, with that cluster's hosts.
    let p2 = previous(&srv, "cluster2").expect("annotation");
    assert_eq!(p2["route"], "http/0");
    assert_eq!(p2["destinations"][1]["host"], "productcatalogservice-gke");
    assert_eq!(p2["destinations"][0]["weight"], 100);
    // Hosts are untouched, and no label is added to an object kubectl-mesh did not create.
    let v1 = vs(&srv, "cluster1");
    assert_eq!(
        v1["spec"]["hosts"],
        serde_json::json!(["productcatalogservice"])
    );
    assert!(v1["metadata"]["labels"].is_null(), "{v1}");
    // One write per cluster: a server-side apply by kubectl-mesh.
    if let Some(emu) = srv.emu() {
        for c in ["cluster1", "cluster2"] {
            let w = writes(emu, c);
            assert_eq!(w.len(), 1, "{c}: {w:?}");
            assert_eq!(w[0].method, "PATCH");
            assert!(
                w[0].query.contains("fieldManager=kubectl-mesh"),
                "{:?}",
                w[0]
            );
        }
    }

    // Again: nothing to do, nothing sent.
    clear_requests(&srv);
    let run = split(&srv, &with_both(&["80/20"])).ok();
    assert!(
        run.stderr.contains("productcatalog-migration unchanged"),
        "{}",
        run.stderr
    );
    no_writes(&srv);

    // undo: back to 100/0 everywhere.
    let run = split(&srv, &with_both(&["undo"])).ok();
    assert!(
        run.stdout
            .contains("cluster2   productcatalogservice-gke                  20       0"),
        "{}",
        run.stdout
    );
    assert_eq!(weights(&srv, "cluster1"), vec![100, 0]);
    assert_eq!(weights(&srv, "cluster2"), vec![100, 0]);

    // Complete the migration; kubectl still reads a valid VirtualService.
    split(&srv, &with_both(&["productcatalogservice", "0/100"])).ok();
    assert_eq!(weights(&srv, "cluster1"), vec![0, 100]);
    assert_eq!(weights(&srv, "cluster2"), vec![0, 100]);
    let got = kubectl(
        &srv,
        &[
            "get",
            "vs",
            "productcatalog-migration",
            "--context",
            "cluster2",
            "-o",
            "json",
        ],
    )
    .ok();
    let got: Value = serde_json::from_str(&got.stdout).expect("json");
    assert_eq!(got["spec"]["http"][0]["route"][1]["weight"], 100);

    // status shows both contexts.
    let run = split(&srv, &with_both(&["status"])).ok();
    assert_eq!(
        run.stdout,
        "CONTEXT    VIRTUALSERVICE             ROUTE    DESTINATION                                WEIGHT   PREVIOUS
cluster1   productcatalog-migration   http/0   productcatalogservice                      0        100
cluster1   productcatalog-migration   http/0   productcatalogservice-gke.default.global   100      0
cluster2   productcatalog-migration   http/0   productcatalogservice                      0        100
cluster2   productcatalog-migration   http/0   productcatalogservice-gke                  100      0
"
    );
}

fn bad_weights_exit_2_and_write_nothing(tier) {
    let srv = migration(tier);
    for (weights_arg, want) in [
        ("80/30", "error: WEIGHTS: 80/30 adds up to 110, not 100"),
        ("80/20/0", "error: WEIGHTS: 3 weights for 2 destinations: route http/0 of VirtualService default/productcatalog-migration in context cluster1 has productcatalogservice 100, productcatalogservice-gke.default.global 0"),
        ("abc", "error: WEIGHTS: missing after TARGET abc"),
        ("-5/105", "error: WEIGHTS: \"-5\" is not a weight"),
        ("80/", "error: WEIGHTS: \"80/\" has an empty weight"),
    ] {
        let run = split(&srv, &with_both(&[weights_arg])).expect_code(2);
        assert!(run.stderr.starts_with(want), "{weights_arg}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        no_writes(&srv);
    }
    // Named weights are matched per cluster: the short host names either cluster's destination.
    split(
        &srv,
        &with_both(&["productcatalogservice=80,productcatalogservice-gke=20"]),
    )
    .ok();
    assert_eq!(weights(&srv, "cluster2"), vec![80, 20]);
}

fn without_target_or_terminal_two_candidates_exit_2_listing_both(tier) {
    let srv = migration(tier);
    srv.apply_yaml("cluster1", SECOND_VS).expect("seed");
    clear_requests(&srv);
    let run = split(&srv, &["80/20"]).expect_code(2);
    assert!(
        run.stderr
            .contains("2 VirtualServices in namespace default (context cluster1)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("vs/productcatalog-migration  hosts productcatalogservice  100/0"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("vs/reviews  hosts reviews  50/50 (reviews (v1), reviews (v2))"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("e.g. kubectl mesh-split vs/productcatalog-migration 80/20"),
        "{}",
        run.stderr
    );
    no_writes(&srv);

    // Named by subset.
    split(&srv, &["reviews", "v2=90,v1=10"]).ok();
    let r = srv.get_json("cluster1", REVIEWS_PATH).expect("reviews");
    assert_eq!(r["spec"]["http"][0]["route"][0]["weight"], 10);
    assert_eq!(r["spec"]["http"][0]["route"][1]["weight"], 90);
}

fn the_pick_list_shows_current_weights_and_splits_the_pick(tier) {
    let srv = migration(tier);
    srv.apply_yaml("cluster1", SECOND_VS).expect("seed");
    let mut p = Scripted {
        pick: 1,
        shown: vec![],
    };
    let (result, out, _) = in_process(&srv, &["70/30"], &mut p, true);
    result.expect("split");
    assert_eq!(
        p.shown,
        vec![
            "VirtualService to split (2 in namespace default)".to_string(),
            "vs/productcatalog-migration  hosts productcatalogservice  100/0 (productcatalogservice, productcatalogservice-gke.default.global)".to_string(),
            "vs/reviews  hosts reviews  50/50 (reviews (v1), reviews (v2))".to_string(),
        ]
    );
    assert!(
        out.contains("cluster1   reviews (v2)   50       30"),
        "{out}"
    );
    assert_eq!(weights(&srv, "cluster1"), vec![100, 0]);

    // --yes never prompts: the list becomes an error.
    let mut p = Scripted {
        pick: 0,
        shown: vec![],
    };
    let (result, _, _) = in_process(&srv, &["70/30", "-y"], &mut p, true);
    let err = result.expect_err("no prompt with --yes");
    assert_eq!(mesh_shared::error::exit_code(&err), 2);
    assert!(p.shown.is_empty());
}

fn steps_walk_to_the_end_with_a_short_interval(tier) {
    let srv = migration(tier);
    let started = Instant::now();
    let run = split(
        &srv,
        &with_both(&[
            "vs/productcatalog-migration",
            "0/100",
            "--steps",
            "20,50,80",
            "--interval",
            "300ms",
        ]),
    )
    .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "three waits"
    );
    for step in [
        "Step 1/4: 80/20",
        "Step 2/4: 50/50",
        "Step 3/4: 20/80",
        "Step 4/4: 0/100",
    ] {
        assert!(run.stderr.contains(step), "{step}: {}", run.stderr);
    }
    // No terminal: a line per wait instead of a bar.
    assert!(
        run.stderr
            .contains("Step 1/4 done; step 2 (50/50) in 300ms"),
        "{}",
        run.stderr
    );
    assert_eq!(weights(&srv, "cluster1"), vec![0, 100]);
    assert_eq!(weights(&srv, "cluster2"), vec![0, 100]);
    if let Some(emu) = srv.emu() {
        for c in ["cluster1", "cluster2"] {
            assert_eq!(writes(emu, c).len(), 4, "{c}");
        }
    }
    // What undo restores is where the walk started.
    assert_eq!(
        previous(&srv, "cluster1").expect("annotation")["destinations"][0]["weight"],
        100
    );
    assert!(
        run.stdout
            .contains("cluster2   productcatalogservice-gke                  0        100"),
        "{}",
        run.stdout
    );
}

fn steps_dry_run_prints_the_plan_and_writes_nothing(tier) {
    let srv = migration(tier);
    let run = split(
        &srv,
        &with_both(&[
            "productcatalogservice",
            "0/100",
            "--steps",
            "20,50,80",
            "--interval",
            "2m",
            "--dry-run",
        ]),
    )
    .ok();
    assert!(
        run.stdout.ends_with(
            "STEP   WEIGHTS   THEN
1      80/20     wait 2m
2      50/50     wait 2m
3      20/80     wait 2m
4      0/100     done
"
        ),
        "{}",
        run.stdout
    );
    no_writes(&srv);
    // -o yaml: every object of every step, each context's own hosts.
    let run = split(
        &srv,
        &with_both(&[
            "productcatalogservice",
            "0/100",
            "--steps",
            "50",
            "--dry-run",
            "-o",
            "yaml",
        ]),
    )
    .ok();
    assert_eq!(
        run.stdout.matches("kind: VirtualService").count(),
        4,
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains("host: productcatalogservice-gke.default.global"));
    no_writes(&srv);
    // Steps against the direction of travel are refused before any write.
    let run = split(&srv, &with_both(&["0/100", "--steps", "80,50"])).expect_code(2);
    assert!(
        run.stderr
            .contains("--steps: steps must go from 0 toward 100"),
        "{}",
        run.stderr
    );
}

fn ctrl_c_stops_between_steps_and_says_how_to_resume_or_undo(tier) {
    let srv = migration(tier);
    let mut child = common::spawn_plugin(
        &srv,
        "split",
        &with_both(&[
            "vs/productcatalog-migration",
            "0/100",
            "--steps",
            "20,50,80",
            "--interval",
            "30s",
        ]),
    );
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("Step 1/4 done") {
            break;
        }
    }
    assert!(seen.contains("Step 1/4: 80/20"), "{seen}");
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("wait");
    let rest = rest.join("\n");
    assert_eq!(status.code(), Some(1), "{seen}{rest}");
    assert!(
        rest.contains("Interrupted: stopped at step 1/4 (80/20)."),
        "{rest}"
    );
    assert!(
        rest.contains("Resume: kubectl mesh-split vs/productcatalog-migration 0/100 --steps 50,80 --interval 30s --context cluster1 --context cluster2 -n default"),
        "{rest}"
    );
    assert!(
        rest.contains("Undo:   kubectl mesh-split undo vs/productcatalog-migration --context cluster1 --context cluster2 -n default"),
        "{rest}"
    );
    assert_eq!(weights(&srv, "cluster1"), vec![80, 20]);
    assert_eq!(weights(&srv, "cluster2"), vec![80, 20]);
    // Undo goes back to where the walk started.
    split(&srv, &with_both(&["undo", "vs/productcatalog-migration"])).ok();
    assert_eq!(weights(&srv, "cluster2"), vec![100, 0]);
}

fn a_gitops_owner_is_refused_by_name_unless_forced(tier) {
    let srv = migration(tier);
    // Argo CD applies the VirtualService server-side with its own field manager.
    let mut f = tempfile::NamedTempFile::new().expect("temp");
    f.write_all(
        SECOND_VS
            .replace("  annotations:\n    kube-emu/cluster: cluster1\n", "")
            .as_bytes(),
    )
    .expect("write");
    let path = f.path().to_string_lossy().into_owned();
    kubectl(
        &srv,
        &[
            "apply",
            "--server-side",
            "--field-manager=argocd-controller",
            "-f",
            &path,
        ],
    )
    .ok();
    clear_requests(&srv);

    let run = split(&srv, &["reviews", "80/20"]).expect_code(1);
    assert!(
        run.stderr.contains("spec.http is managed by argocd-controller: change the weights where it gets them from, or pass --force-conflicts"),
        "{}",
        run.stderr
    );
    no_writes(&srv);

    let run = split(&srv, &["reviews", "80/20", "--force-conflicts"]).ok();
    assert!(run.stderr.contains("Warning: VirtualService default/reviews in context cluster1: spec.http is managed by argocd-controller"), "{}", run.stderr);
    let r = srv.get_json("cluster1", REVIEWS_PATH).expect("reviews");
    assert_eq!(r["spec"]["http"][0]["route"][0]["weight"], 80);
}

fn create_makes_the_virtualservice_once(tier) {
    let srv = two_clusters(tier);
    let args = with_both(&[
        "productcatalogservice",
        "100/0",
        "--create",
        "--to",
        "productcatalogservice,productcatalogservice-gke",
    ]);
    let run = split(&srv, &args).ok();
    assert!(
        run.stdout
            .contains("cluster1   productcatalogservice-gke   -        0"),
        "{}",
        run.stdout
    );
    let path = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/productcatalogservice-split";
    for c in ["cluster1", "cluster2"] {
        let v = srv.get_json(c, path).expect("created");
        assert_eq!(
            v["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "kubectl-mesh"
        );
        assert_eq!(v["spec"]["http"][0]["route"][0]["weight"], 100);
    }
    // Again: it exists, nothing changes.
    clear_requests(&srv);
    let run = split(&srv, &args).ok();
    assert!(
        run.stderr.contains("productcatalogservice-split unchanged"),
        "{}",
        run.stderr
    );
    no_writes(&srv);
    // Later changes keep the hosts and the label kubectl-mesh set when it created it.
    split(&srv, &with_both(&["productcatalogservice", "50/50"])).ok();
    let v = srv.get_json("cluster1", path).expect("vs");
    assert_eq!(
        v["spec"]["hosts"],
        serde_json::json!(["productcatalogservice"])
    );
    assert_eq!(
        v["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubectl-mesh"
    );
    // Without --create, a host with no VirtualService is an error that says how to create one.
    let run = split(&srv, &["cartservice", "80/20"]).expect_code(1);
    assert!(run.stderr.contains("no VirtualService in namespace default (context cluster1) routes host cartservice: name one as vs/NAME, or create one with --create --to HOST_A,HOST_B"), "{}", run.stderr);
}

fn dry_runs_print_the_objects_and_store_nothing(tier) {
    let srv = migration(tier);
    let before = vs(&srv, "cluster1");
    let run = split(&srv, &with_both(&["80/20", "--dry-run", "-o", "yaml"])).ok();
    let docs: Vec<&str> = run.stdout.split("\n---\n").collect();
    assert_eq!(docs.len(), 2, "{}", run.stdout);
    assert!(run.stdout.contains("weight: 80"));
    assert!(run.stdout.contains("mesh.kubectl.io/previous-weights"));
    no_writes(&srv);
    // The server validates (dryRun=All) and stores nothing.
    let run = split(&srv, &with_both(&["80/20", "--dry-run=server"])).ok();
    assert!(
        run.stderr.contains("configured (server dry run)"),
        "{}",
        run.stderr
    );
    if let Some(emu) = srv.emu() {
        for c in ["cluster1", "cluster2"] {
            assert!(writes(emu, c)
                .iter()
                .all(|w| w.query.contains("dryRun=All")));
        }
    }
    assert_eq!(
        vs(&srv, "cluster1")["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
}

fn several_split_routes_need_route(tier) {
    let srv = two_clusters(tier);
    srv.apply_yaml(
        "cluster1",
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: frontend
  namespace: default
spec:
  hosts: [frontend]
  http:
  - name: beta
    match:
    - headers:
        x-beta:
          exact: \"1\"
    retries:
      attempts: 3
    route:
    - destination: {host: frontend, subset: v1}
      weight: 100
    - destination: {host: frontend, subset: v2}
      weight: 0
  - route:
    - destination: {host: frontend, subset: v1}
      weight: 100
    - destination: {host: frontend, subset: v2}
      weight: 0
",
    )
    .expect("seed");
    let run = split(&srv, &["frontend", "90/10"]).expect_code(2);
    assert!(run.stderr.contains("error: --route: VirtualService default/frontend in context cluster1 has several routes with two or more destinations (beta, http/1): pass --route"), "{}", run.stderr);
    split(&srv, &["frontend", "90/10", "--route", "beta"]).ok();
    let v = srv.get_json("cluster1", FRONTEND_PATH).expect("vs");
    assert_eq!(v["spec"]["http"][0]["route"][1]["weight"], 10);
    assert_eq!(v["spec"]["http"][0]["retries"]["attempts"], 3);
    assert_eq!(
        v["spec"]["http"][0]["match"][0]["headers"]["x-beta"]["exact"],
        "1"
    );
    assert_eq!(v["spec"]["http"][1]["route"][1]["weight"], 0);
    // undo finds the route from the annotation; a second undo goes forward again.
    split(&srv, &["undo", "frontend"]).ok();
    let v = srv.get_json("cluster1", FRONTEND_PATH).expect("vs");
    assert_eq!(v["spec"]["http"][0]["route"][1]["weight"], 0);
    split(&srv, &["undo"]).ok();
    let v = srv.get_json("cluster1", FRONTEND_PATH).expect("vs");
    assert_eq!(v["spec"]["http"][0]["route"][1]["weight"], 10);
}

fn undo_without_recorded_weights_says_so(tier) {
    let srv = migration(tier);
    let run = split(&srv, &with_both(&["undo", "productcatalogservice"])).expect_code(1);
    assert!(run.stderr.contains("nothing to undo: VirtualService default/productcatalog-migration in context cluster1 has no previous weights"), "{}", run.stderr);
    let run = split(&srv, &["undo"]).expect_code(2);
    assert!(
        run.stderr.contains("has previous weights recorded"),
        "{}",
        run.stderr
    );
    no_writes(&srv);
}

fn every_cluster_is_validated_before_any_is_written(tier) {
    let srv = two_clusters(tier);
    kubectl_apply(&srv, "cluster1", VS_CLUSTER1);
    // cluster2's route has a third destination: 80/20 fits cluster1 only.
    let three = VS_CLUSTER2.replace(
        "      weight: 0\n",
        "      weight: 0\n    - destination:\n        host: productcatalogservice-canary\n      weight: 0\n",
    );
    kubectl_apply(&srv, "cluster2", &three);
    clear_requests(&srv);
    let run = split(&srv, &with_both(&["80/20"])).expect_code(2);
    assert!(
        run.stderr.starts_with("error: WEIGHTS: 2 weights for 3 destinations: route http/0 of VirtualService default/productcatalog-migration in context cluster2"),
        "{}",
        run.stderr
    );
    no_writes(&srv);
    // Named weights fit both, but the routes differ in shape: refused too.
    let run = split(
        &srv,
        &with_both(&[
            "--route",
            "http/0",
            "productcatalogservice=100,productcatalogservice-gke=0",
        ]),
    )
    .expect_code(2);
    assert!(
        run.stderr
            .starts_with("error: WEIGHTS: no weight for productcatalogservice-canary"),
        "{}",
        run.stderr
    );
    no_writes(&srv);
    // status -o yaml prints both VirtualServices as they are.
    let run = split(&srv, &with_both(&["status", "-o", "yaml"])).ok();
    assert_eq!(
        run.stdout.matches("kind: VirtualService").count(),
        2,
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("managedFields"));
}
}

/// What istiod needs to build the sample's routes: the Services the VirtualServices route to
/// (with their gRPC port), in cluster1 also cluster2's Service as it is reached through
/// `.global` (a ServiceEntry, as in the sample's replicated control planes), and a namespace
/// for the sidecar that reads xDS.
const MESH: &str = "apiVersion: v1
kind: Namespace
metadata: {name: client}
---
apiVersion: v1
kind: Service
metadata: {name: productcatalogservice, namespace: default}
spec:
  ports:
  - {name: grpc, port: 3550, targetPort: 3550}
---
apiVersion: v1
kind: Service
metadata: {name: productcatalogservice-gke, namespace: default}
spec:
  ports:
  - {name: grpc, port: 3550, targetPort: 3550}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: productcatalogservice-gke-global
  namespace: default
  annotations: {kube-emu/cluster: cluster1}
spec:
  hosts: [productcatalogservice-gke.default.global]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {name: grpc, number: 3550, protocol: GRPC}
  endpoints:
  - address: 203.0.113.20
";

const PC: &str = "outbound|3550||productcatalogservice.default.svc.cluster.local";
const PC_GKE: &str = "outbound|3550||productcatalogservice-gke.default.svc.cluster.local";
const PC_GLOBAL: &str = "outbound|3550||productcatalogservice-gke.default.global";

/// The weighted clusters of the route a sidecar gets for productcatalogservice's port 3550.
fn xds_split(dump: &Value) -> Vec<(String, u64)> {
    let fqdn = "productcatalogservice.default.svc.cluster.local";
    dump["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r["config"] == "3550"
                && r["domains"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d == fqdn))
        })
        .and_then(|r| r["weightedClusters"].as_array())
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["weight"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn is_split<'a>(want: &'a [(&'a str, u64)]) -> impl Fn(&Value) -> bool + 'a {
    move |d| {
        let got = xds_split(d);
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g.0 == w.0 && g.1 == w.1)
    }
}

/// The sample's migration with an istiod per cluster; None unless the real tier is enabled.
fn real_migration(clusters: &[&str]) -> Option<Server> {
    if !Tier::Real.enabled() {
        return None;
    }
    let srv = Server::builder(Tier::Real)
        .clusters(clusters)
        .istiod()
        .seed_yaml(MESH)
        .start();
    for c in clusters {
        let vs = if *c == "cluster1" && clusters.len() > 1 {
            VS_CLUSTER1
        } else {
            VS_CLUSTER2
        };
        kubectl_apply(&srv, c, vs);
    }
    Some(srv)
}

/// istiod turns the new weights into the weighted clusters Envoy is sent, and undo's too.
#[test]
fn real_istiod_sends_the_split_and_the_undo() {
    let Some(srv) = real_migration(&["cluster1"]) else {
        return;
    };
    let real = srv.real().expect("real tier");
    // Envoy gets no cluster of weight 0: 100/0 is all to the first.
    real.wait_xds("cluster1", "client", "100/0", is_split(&[(PC, 100)]));

    let run = kubectl(&srv, &["mesh-split", "80/20"]).ok();
    assert!(
        run.stdout
            .contains("cluster1   productcatalogservice-gke   0        20"),
        "{}",
        run.stdout
    );
    let dump = real.wait_xds(
        "cluster1",
        "client",
        "80/20",
        is_split(&[(PC, 80), (PC_GKE, 20)]),
    );
    // Both destinations are clusters Envoy knows.
    for name in [PC, PC_GKE] {
        assert!(common::xds_cluster(&dump, name).is_some(), "{name}");
    }

    kubectl(&srv, &["mesh-split", "undo"]).ok();
    real.wait_xds(
        "cluster1",
        "client",
        "100/0 after undo",
        is_split(&[(PC, 100)]),
    );
}

/// One `mesh-split` across two clusters reaches both istiods, each with its own hosts.
#[test]
fn real_istiods_of_both_clusters_send_the_new_weights() {
    let Some(srv) = real_migration(&["cluster1", "cluster2"]) else {
        return;
    };
    let real = srv.real().expect("real tier");
    for c in ["cluster1", "cluster2"] {
        real.wait_xds(c, "client", "100/0", is_split(&[(PC, 100)]));
    }

    split(&srv, &with_both(&["80/20"])).ok();
    real.wait_xds(
        "cluster1",
        "client",
        "80/20 to .global",
        is_split(&[(PC, 80), (PC_GLOBAL, 20)]),
    );
    real.wait_xds(
        "cluster2",
        "client",
        "80/20",
        is_split(&[(PC, 80), (PC_GKE, 20)]),
    );

    split(&srv, &with_both(&["productcatalogservice", "0/100"])).ok();
    real.wait_xds("cluster1", "client", "0/100", is_split(&[(PC_GLOBAL, 100)]));
    real.wait_xds("cluster2", "client", "0/100", is_split(&[(PC_GKE, 100)]));

    split(&srv, &with_both(&["undo"])).ok();
    real.wait_xds(
        "cluster1",
        "client",
        "80/20 after undo",
        is_split(&[(PC, 80), (PC_GLOBAL, 20)]),
    );
    real.wait_xds(
        "cluster2",
        "client",
        "80/20 after undo",
        is_split(&[(PC, 80), (PC_GKE, 20)]),
    );
}
