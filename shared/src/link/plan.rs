//! What a `kubectl mesh-link` command line asks for, checked before any request is sent.

use anyhow::Result;

use super::{Args, Command, GatewayAddress, GatewayRef, Pool, Selector};
use crate::api::WriteMode;
use crate::error::usage;
use crate::kubeconfig::Target;

/// Which Services of the source namespace a run is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// None given (allowed for --prune, --setup-dns and --list).
    Nothing,
    /// These names.
    Names(Vec<String>),
    /// `--all`.
    All,
    /// `-l SELECTOR`.
    Selector(Selector),
}

/// The verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `check`.
    Check,
    /// `--list`.
    List,
    /// Link the selection; optionally prune and set up DNS in the same run.
    Link {
        /// `--prune`.
        prune: bool,
        /// `--setup-dns`.
        setup_dns: bool,
    },
    /// `--unlink`.
    Unlink,
    /// `--setup-dns` alone, or `--setup-dns --undo`.
    Dns {
        /// `--undo`.
        undo: bool,
    },
}

/// A validated command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The verb.
    pub action: Action,
    /// `--from` (absent only for `--list` and DNS-only runs).
    pub from: Option<String>,
    /// `--to`.
    pub to: String,
    /// The Services.
    pub selection: Selection,
    /// `--bidirectional`.
    pub bidirectional: bool,
}

const SYNOPSIS: &str =
    "kubectl mesh-link --from CONTEXT --to CONTEXT (SERVICE... | --all | -l SELECTOR)";

/// Turns the arguments into a plan, or the one usage error that says what to fix.
pub fn plan(args: &Args) -> Result<Plan> {
    if !args.kube.contexts.is_empty() {
        return Err(usage(
            "--context",
            "mesh-link works on two clusters: name them with --from and --to (the current context is never used)",
        ));
    }
    let to = args.to.clone().ok_or_else(|| {
        usage(
            "--to",
            "required: the context of the calling cluster, where the ServiceEntries go",
        )
    })?;
    let selection = selection(args);
    let action = action(args, &selection)?;
    let from_needed = match action {
        Action::Check | Action::Link { .. } | Action::Unlink => true,
        Action::List => false,
        Action::Dns { .. } => args.bidirectional,
    };
    if from_needed && args.from.is_none() {
        return Err(usage(
            "--from",
            "required: the context of the cluster that runs the services",
        ));
    }
    if let Some(from) = &args.from {
        if *from == to {
            return Err(usage(
                "--to",
                format!("names the same context as --from ({to}): link two different clusters"),
            ));
        }
    }
    Ok(Plan {
        action,
        from: args.from.clone(),
        to,
        selection,
        bidirectional: args.bidirectional,
    })
}

/// The Services named on the command line.
fn selection(args: &Args) -> Selection {
    if !args.services.is_empty() {
        Selection::Names(args.services.clone())
    } else if args.all {
        Selection::All
    } else if let Some(s) = &args.selector {
        Selection::Selector(s.clone())
    } else {
        Selection::Nothing
    }
}

/// The verb, or the usage error of a flag that does not go with it.
fn action(args: &Args, selection: &Selection) -> Result<Action> {
    let nothing = *selection == Selection::Nothing;
    Ok(if matches!(args.command, Some(Command::Check)) {
        if !nothing
            || args.list
            || args.unlink
            || args.prune
            || args.setup_dns
            || args.bidirectional
        {
            return Err(usage(
                "check",
                "takes only --from, --to and the gateway flags",
            ));
        }
        Action::Check
    } else if args.list {
        Action::List
    } else if args.unlink {
        if nothing {
            return Err(usage(
                "--unlink",
                "name the SERVICEs to unlink, or pass --all or -l SELECTOR",
            ));
        }
        Action::Unlink
    } else if args.setup_dns && (args.undo || (nothing && !args.prune)) {
        if args.undo && (!nothing || args.prune) {
            return Err(usage(
                "--undo",
                "only removes the global stub domain: drop SERVICE, --all, -l and --prune",
            ));
        }
        Action::Dns { undo: args.undo }
    } else {
        if nothing && !args.prune {
            return Err(usage(
                "SERVICE",
                format!("name the Services to link, or pass --all or -l SELECTOR: {SYNOPSIS}"),
            ));
        }
        Action::Link {
            prune: args.prune,
            setup_dns: args.setup_dns,
        }
    })
}

/// Refuses the flags that only `--mode remote-secret` reads, naming the first one given.
pub fn global_only(args: &Args) -> Result<()> {
    let remote_only = [
        (args.cluster_id.is_some(), "--cluster-id"),
        (args.remote_server.is_some(), "--remote-server"),
        (args.token_duration.is_some(), "--token-duration"),
        (args.show_secrets, "--show-secrets"),
        (args.rotate, "--rotate"),
        (args.network, "--network"),
        (args.from_network.is_some(), "--from-network"),
        (args.to_network.is_some(), "--to-network"),
        (args.istiod_debug.is_some(), "--istiod-debug"),
        (args.istio_namespace != "istio-system", "--istio-namespace"),
    ];
    match remote_only.iter().find(|(given, _)| *given) {
        Some((_, flag)) => Err(usage(flag, "only with --mode remote-secret")),
        None => Ok(()),
    }
}

impl Plan {
    /// The contexts the run reaches: `--from` (when given), then `--to`.
    pub fn contexts(&self) -> Vec<String> {
        self.from.iter().chain([&self.to]).cloned().collect()
    }

    /// Fails with a usage error naming the flag when `--from` or `--to` is not among the
    /// kubeconfig's contexts, before any connection.
    pub fn check_contexts(&self, known: &[String]) -> Result<()> {
        for (flag, ctx) in [
            ("--from", self.from.as_deref()),
            ("--to", Some(self.to.as_str())),
        ] {
            if let Some(ctx) = ctx {
                known_context(flag, ctx, known)?;
            }
        }
        Ok(())
    }
}

/// Fails with a usage error naming `flag` when `ctx` is not among the kubeconfig's contexts.
pub(super) fn known_context(flag: &str, ctx: &str, known: &[String]) -> Result<()> {
    if known.iter().any(|k| k == ctx) {
        return Ok(());
    }
    Err(usage(
        flag,
        format!(
            "context {ctx:?} not found in the kubeconfig (known: {})",
            known.join(", ")
        ),
    ))
}

/// Settings shared by every direction of a run.
pub struct Options {
    /// The namespace of the Services, and of their ServiceEntries in the target.
    pub namespace: String,
    /// `--address-pool`.
    pub pool: Pool,
    /// `--gateway-service`.
    pub gateway: GatewayRef,
    /// `--gateway-address`.
    pub gateway_address: Option<GatewayAddress>,
    /// `--dry-run`, `--force-conflicts`.
    pub mode: WriteMode,
}

/// The run's settings; the namespace is `-n`, else that of the source's context (of the
/// target's when there is no source).
pub fn options(args: &Args, src: Option<&Target>, dst: &Target) -> Options {
    let namespace = args
        .kube
        .namespace
        .clone()
        .unwrap_or_else(|| src.unwrap_or(dst).namespace.clone());
    Options {
        namespace,
        pool: args.address_pool,
        gateway: args.gateway_service.clone(),
        gateway_address: args.gateway_address.clone(),
        mode: args.write.mode(),
    }
}
