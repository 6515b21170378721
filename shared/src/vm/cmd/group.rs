//! `kubectl mesh-vm group`: the WorkloadGroup (and its ServiceAccount when missing), on the
//! cluster's network unless told otherwise, and with `--mtls` a PeerAuthentication for exactly
//! the VMs, written through the write engine.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::api::Cluster;
use crate::cli::{DryRun, KubeArgs, OutputFormat};
use crate::error::usage;
use crate::io::Io;
use crate::objects;
use crate::output;
use crate::vm::cli::GroupArgs;
use crate::vm::detect::ControlPlane;
use crate::vm::facts;
use crate::vm::group::{self, Group};
use crate::vm::mtls::{self, MtlsMode};
use crate::vm::plan::{self, GroupPlan};
use crate::write::{self, Step};

/// `kubectl mesh-vm group NAME ...`.
pub(in crate::vm) async fn run(kube: &KubeArgs, a: GroupArgs, io: &mut Io) -> Result<()> {
    let GroupPlan { mut group, mtls } = GroupPlan::from_args(kube, &a)?;
    if a.write.dry_run == DryRun::Client {
        return dry_run(&a, &group, mtls.map(|(mode, _)| mode), io);
    }
    let cluster = Cluster::connect_one(kube).await?;
    if group.namespace.is_empty() {
        group.namespace = cluster.namespace.clone();
    }
    group_network(&cluster, &a, &mut group, io).await?;
    let mut steps = group_steps(&cluster, &group).await?;
    if let Some((mode, selector)) = mtls {
        check_mtls_selector(&cluster, &group, &selector, a.force, io).await?;
        steps.push(mtls_step(&cluster, &group, mode).await?);
    }
    let results = write::execute(&cluster, steps, a.write.mode()).await?;
    output::print_results(&mut io.out, a.write.output, a.write.dry_run, &results)
}

/// `--dry-run=client`: the objects, built without a cluster, as YAML unless `-o` says otherwise.
fn dry_run(a: &GroupArgs, group: &Group, mtls: Option<MtlsMode>, io: &mut Io) -> Result<()> {
    let mut objs = vec![group.to_object(objects::ISTIO_VERSIONS[0])];
    if let Some(mode) = mtls {
        objs.push(mtls::peer_authentication(
            group,
            mode,
            objects::SECURITY_VERSIONS[0],
        ));
    }
    let format = a.write.output.unwrap_or(OutputFormat::Yaml);
    output::print_objects(&mut io.out, format, &objs)
}

/// The ServiceAccount, when missing, then the WorkloadGroup over the one there is.
async fn group_steps(cluster: &Cluster, group: &Group) -> Result<Vec<Step>> {
    let version = cluster.istio_version().await?;
    let kind = objects::istio("WorkloadGroup", &version);
    let desired = group.to_object(&version);
    let existing = cluster
        .get(&kind, Some(&group.namespace), &group.name)
        .await?;
    let sa_kind = objects::core("ServiceAccount");
    let sa = &group.template.service_account;
    let mut steps = Vec::new();
    if cluster
        .get(&sa_kind, Some(&group.namespace), sa)
        .await?
        .is_none()
    {
        steps.push(Step::apply(
            group::service_account(&group.namespace, sa),
            None,
        ));
    }
    steps.push(Step::apply(desired, existing));
    Ok(steps)
}

/// The PeerAuthentication of `--mtls`, over the one there is.
async fn mtls_step(cluster: &Cluster, group: &Group, mode: MtlsMode) -> Result<Step> {
    let version = cluster.security_version().await?;
    let pa = mtls::peer_authentication(group, mode, &version);
    let existing = cluster
        .get(
            &objects::peer_authentication(&version),
            Some(&group.namespace),
            &group.name,
        )
        .await?;
    Ok(Step::apply(pa, existing))
}

/// Detects the cluster's network and prints it; a group from flags without `--network` takes
/// it, and a network that differs is a warning naming both. With `--network` given the
/// detection is only a check, so a failure to read is a warning rather than the end.
async fn group_network(
    cluster: &Cluster,
    a: &GroupArgs,
    group: &mut Group,
    io: &mut Io,
) -> Result<()> {
    let mut cp = ControlPlane::new(
        cluster,
        &a.control_plane.istio_namespace,
        a.control_plane.revision.as_deref(),
    );
    let given = if a.network.is_some() {
        Some(format!("--network {}", group.template.network))
    } else if let (Some(path), false) = (&a.filename, group.template.network.is_empty()) {
        Some(format!(
            "network {} of {}",
            group.template.network,
            path.display()
        ))
    } else {
        None
    };
    let net = match cp.network(None).await {
        Ok(net) => net,
        Err(e) if given.is_some() => {
            return Ok(io.warn(format!(
                "cannot check the group's network against the cluster's: {}",
                crate::error::one_line(&e)
            ))?)
        }
        Err(e) => {
            return Err(e.context("cannot detect the cluster's network (give it with --network)"))
        }
    };
    io.note(format!("network: {net}"))?;
    match given {
        None if a.filename.is_none() => group.template.network = net.name,
        Some(given) if !net.name.is_empty() && group.template.network != net.name => {
            io.warn(format!(
                "{given} is not the cluster's network {} ({}): the VMs will reach the cluster's pods through its east-west gateway, not at their pod IPs; leave --network out to use {}",
                net.name, net.source, net.name
            ))?
        }
        _ => {}
    }
    Ok(())
}

/// Refuses (exit 2) a PeerAuthentication whose selector also matches Pods or workload templates
/// of the namespace, naming them; with `--force`, names them in a warning.
async fn check_mtls_selector(
    cluster: &Cluster,
    group: &Group,
    selector: &BTreeMap<String, String>,
    force: bool,
    io: &mut Io,
) -> Result<()> {
    let ns = &group.namespace;
    let text = plan::selector_text(selector);
    let found = facts::workloads(cluster, ns, &text).await?;
    let caught = mtls::caught(selector, &found);
    if caught.is_empty() {
        return Ok(());
    }
    let what = format!(
        "PeerAuthentication {ns}/{} selects {text}, which also matches {} in namespace {ns}",
        group.name,
        caught.join(", ")
    );
    if force {
        io.warn(format!("{what}: their mTLS mode changes too (--force)"))?;
        return Ok(());
    }
    Err(usage(
        "--mtls",
        format!("{what}, not only the VMs: give the group a label those lack (-l), or pass --force; nothing was written"),
    ))
}
