//! `kubectl mesh-vm`: the WorkloadGroup for a set of VMs, the five files each VM needs to join the
//! mesh, renewing them, and the group's WorkloadEntries.
//!
//! `group` applies the WorkloadGroup; `files` does what `istioctl x workload entry configure`
//! does, deterministically and without its traps (empty `hosts`, world-readable token, wrong
//! cluster ID); `refresh` re-mints the token and re-detects the gateway for a cron job; `status`
//! lists the entries.

mod address;
pub mod bootstrap;
mod cli;
mod cmd;
pub mod control_plane;
pub mod detect;
pub mod entries;
mod facts;
#[cfg(test)]
mod golden;
pub mod goyaml;
pub mod group;
pub mod mtls;
pub mod outdir;
mod plan;
pub mod probe;
mod report;
pub mod token;

pub use cli::{
    Args, Command, ControlPlaneArgs, FilesArgs, GroupArgs, PortList, RefreshArgs, RenewArgs,
    StatusArgs,
};
pub use plan::group_from_flags;

use anyhow::Result;

use crate::io::Io;

/// Runs `kubectl mesh-vm`.
pub async fn run(args: Args, io: &mut Io) -> Result<()> {
    let kube = args.kube;
    plan::check_namespace(&kube)?;
    match args.command {
        Command::Group(g) => cmd::group::run(&kube, *g, io).await,
        Command::Files(f) => cmd::files::run(&kube, *f, io).await,
        Command::Refresh(r) => cmd::refresh::run(&kube, r, io).await,
        Command::Status(s) => cmd::status::run(&kube, s, io).await,
    }
}
