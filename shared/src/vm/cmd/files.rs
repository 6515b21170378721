//! `kubectl mesh-vm files`: the five files a VM of a group needs (cluster.env, mesh.yaml,
//! root-cert.pem, istio-token, hosts), from the cluster's control plane, written all or none.

use std::io::Write as _;

use anyhow::Result;

use crate::api::Cluster;
use crate::cli::KubeArgs;
use crate::io::Io;
use crate::vm::address::{self, Gateway};
use crate::vm::bootstrap;
use crate::vm::cli::{FilesArgs, RenewArgs};
use crate::vm::control_plane::{self, Object};
use crate::vm::detect::{ClusterNetwork, ControlPlane};
use crate::vm::facts;
use crate::vm::group::Group;
use crate::vm::outdir;
use crate::vm::plan::FilesPlan;
use crate::vm::report;
use crate::vm::token;

/// `kubectl mesh-vm files NAME --out-dir DIR ...`.
pub(in crate::vm) async fn run(kube: &KubeArgs, a: FilesArgs, io: &mut Io) -> Result<()> {
    let plan = FilesPlan::from_args(kube, &a)?;
    let cluster = Cluster::connect_one(kube).await?;
    let name = a.name.as_ref().map(|n| n.0.as_str()).unwrap_or("");
    let group = facts::files_group(&cluster, plan.file_group, name).await?;
    let renew = &a.renew;
    let ins = &renew.control_plane.istio_namespace;
    let rev = renew.control_plane.revision.as_deref();

    let (mesh_cm, mesh) = facts::mesh_config(&cluster, ins, rev).await?;
    let mut cp = ControlPlane::new(&cluster, ins, rev);
    cp.preload(Object::Mesh, Some(mesh_cm));
    let (cluster_id, source) = cp.cluster_id(a.cluster_id.as_deref()).await?;
    io.note(format!("cluster ID: {cluster_id} ({source})"))?;
    let network = cp.network(Some(&cluster_id)).await?;
    io.note(format!("network: {network}"))?;

    let gns = &group.namespace;
    let root_cert = facts::root_cert(&cluster, gns).await?;
    let gateway = address::gateway_address(&cluster, renew, io).await?;
    note_path(&group, &network, renew, gateway.as_ref(), io)?;
    let opts = bootstrap::Options {
        cluster_id,
        istio_namespace: ins.clone(),
        revision: renew.control_plane.revision.clone(),
        autoregister: a.autoregister,
        capture_dns: a.capture_dns,
        svc_ip: plan.svc_ip,
    };
    let built = bootstrap::build(&group, &mesh, &opts)
        .map_err(|e| anyhow::anyhow!("WorkloadGroup {gns}/{}: {e}", group.name))?;
    for w in &built.warnings {
        io.warn(w)?;
    }
    let hosts = bootstrap::hosts(gateway.map(|g| g.ip), ins, rev);

    let minted = facts::mint_token(&cluster, &group, renew.token_duration).await?;

    if let Some(w) = outdir::prepare(&a.out_dir, &plan.state)? {
        io.warn(w)?;
    }
    let written = outdir::write_all(
        &a.out_dir,
        &[
            ("mesh.yaml", built.mesh_yaml.as_bytes()),
            ("cluster.env", built.cluster_env.as_bytes()),
            ("root-cert.pem", root_cert.as_bytes()),
            ("istio-token", minted.token.as_bytes()),
            ("hosts", hosts.as_bytes()),
        ],
    )?;
    io.note(format!(
        "istio-token: ServiceAccount {gns}/{}, audience {}, {}",
        group.template.service_account,
        token::AUDIENCE,
        report::expiry_words(&minted.expires)
    ))?;
    io.out.write_all(report::written(&written).as_bytes())?;
    Ok(())
}

/// Notes the gateway address found and the path from the VM's network to istiod.
fn note_path(
    group: &Group,
    network: &ClusterNetwork,
    renew: &RenewArgs,
    gateway: Option<&Gateway>,
    io: &mut Io,
) -> Result<()> {
    if let Some(g) = gateway {
        io.note(format!("gateway: {} ({})", g.ip, g.how))?;
    }
    let ins = &renew.control_plane.istio_namespace;
    let gateway_name = format!(
        "Service {}/{}{}",
        renew.ingress_service.namespace.as_deref().unwrap_or(ins),
        renew.ingress_service.name,
        gateway.map(|g| format!(" ({})", g.ip)).unwrap_or_default()
    );
    io.note(format!(
        "path: {}",
        control_plane::path(&group.template.network, &network.name, &gateway_name)
    ))?;
    Ok(())
}
