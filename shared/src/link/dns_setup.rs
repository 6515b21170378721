//! `--setup-dns` (and `--setup-dns --undo`): point the `global` DNS domain of the calling
//! cluster (and of the source too, when linking both ways) at istiocoredns.

use anyhow::Result;

use super::dns;
use super::report::Report;
use crate::api::{Applied, Cluster, WriteMode};

/// `--setup-dns` (or `--undo`) in the target, and in the source too when linking both ways.
pub(super) async fn setup_dns(
    dst: &Cluster,
    src: Option<&Cluster>,
    two_way: bool,
    undo: bool,
    mode: WriteMode,
    report: &mut Report,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut targets = vec![dst];
    if let (true, Some(s)) = (two_way, src) {
        targets.push(s);
    }
    for t in targets {
        let mut notes = Vec::new();
        let applied = dns::apply(t, undo, mode, &mut notes).await?;
        notes.into_iter().for_each(|n| report.note(n));
        lines.push(dns_line(t, &applied, mode, report));
    }
    Ok(lines)
}

fn dns_line(cluster: &Cluster, applied: &Applied, mode: WriteMode, report: &mut Report) -> String {
    report.object(crate::objects::for_display(applied.object.clone()));
    format!(
        "{} (context {})",
        crate::output::result_line(&applied.object, applied.outcome, mode.dry_run),
        cluster.context
    )
}
