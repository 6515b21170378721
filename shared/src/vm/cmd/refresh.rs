//! `kubectl mesh-vm refresh`: a new istio-token and, when the gateway has an address, a new
//! hosts file in a directory `files` wrote (e.g. from cron).

use std::io::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::api::Cluster;
use crate::cli::KubeArgs;
use crate::io::Io;
use crate::vm::address;
use crate::vm::bootstrap;
use crate::vm::cli::RefreshArgs;
use crate::vm::facts;
use crate::vm::outdir;
use crate::vm::plan;
use crate::vm::report;
use crate::vm::token;

/// `kubectl mesh-vm refresh NAME --out-dir DIR`.
pub(in crate::vm) async fn run(kube: &KubeArgs, a: RefreshArgs, io: &mut Io) -> Result<()> {
    plan::check_refresh(&a)?;
    let cluster = Cluster::connect_one(kube).await?;
    let group = facts::fetch_group(&cluster, &cluster.namespace, &a.name.0).await?;
    let renew = &a.renew;
    let gateway = address::gateway_address(&cluster, renew, io).await?;
    let minted = facts::mint_token(&cluster, &group, renew.token_duration).await?;

    let old_hosts = read_existing(&a.out_dir, "hosts");
    let old_exp = read_existing(&a.out_dir, "istio-token").and_then(|t| token::jwt_expiry(&t));
    let mut files: Vec<(&str, Vec<u8>)> = vec![("istio-token", minted.token.clone().into_bytes())];
    let new_hosts = gateway.as_ref().map(|g| {
        bootstrap::hosts(
            Some(g.ip),
            &renew.control_plane.istio_namespace,
            renew.control_plane.revision.as_deref(),
        )
    });
    if let Some(h) = &new_hosts {
        files.push(("hosts", h.clone().into_bytes()));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    outdir::write_all(&a.out_dir, &refs)?;

    writeln!(
        io.out,
        "{}",
        report::token_renewed(&minted.expires, old_exp)
    )?;
    writeln!(
        io.out,
        "{}",
        report::hosts_line(new_hosts.as_deref(), old_hosts.as_deref())
    )?;
    Ok(())
}

/// A regular file of the directory as it is now, `None` when there is none (or a link).
fn read_existing(dir: &Path, name: &str) -> Option<String> {
    let p = dir.join(name);
    let meta = std::fs::symlink_metadata(&p).ok()?;
    if !meta.is_file() {
        return None;
    }
    std::fs::read_to_string(p).ok()
}
