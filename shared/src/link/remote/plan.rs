//! What a `kubectl mesh-link --mode remote-secret` command line asks for, checked before any
//! request is sent.

use anyhow::Result;

use super::super::Args;
use crate::error::usage;
use crate::names;
use crate::vm::token::TokenDuration;

/// A validated remote-secret command line.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) istio_namespace: String,
    pub(super) cluster_id: Option<String>,
    pub(super) server: Option<String>,
    pub(super) token_duration: Option<TokenDuration>,
    pub(super) rotate: bool,
    /// `--network`, or a network named by `--from-network`/`--to-network`.
    pub(super) network: bool,
}

/// Checks the flags of `--mode remote-secret`, before any request.
pub(super) fn plan(args: &Args) -> Result<Plan> {
    if !args.kube.contexts.is_empty() {
        return Err(usage(
            "--context",
            "mesh-link works on two clusters: name them with --from and --to (the current context is never used)",
        ));
    }
    refuse_global_flags(args)?;
    refuse_conflicts(args)?;
    let from = match (&args.from, args.list) {
        (None, true) => String::new(),
        _ => args.from.clone().ok_or_else(|| {
            usage(
            "--from",
            "required: the context of the cluster whose services istiod in --to should discover",
        )
        })?,
    };
    let to = args.to.clone().ok_or_else(|| {
        usage(
            "--to",
            "required: the context of the cluster whose istiod gets the remote secret",
        )
    })?;
    if from == to {
        return Err(usage("--to", "must name another context than --from"));
    }
    check_names(args)?;
    Ok(Plan {
        from,
        to,
        istio_namespace: args.istio_namespace.clone(),
        cluster_id: args.cluster_id.clone(),
        server: args.remote_server.clone(),
        token_duration: args.token_duration,
        rotate: args.rotate,
        network: args.network || args.from_network.is_some() || args.to_network.is_some(),
    })
}

impl Plan {
    /// Fails with a usage error naming the flag when `--from` or `--to` is not among the
    /// kubeconfig's contexts, before any connection.
    pub(super) fn check_contexts(&self, known: &[String]) -> Result<()> {
        for (flag, ctx) in [("--from", &self.from), ("--to", &self.to)] {
            if !ctx.is_empty() {
                super::super::plan::known_context(flag, ctx, known)?;
            }
        }
        Ok(())
    }
}

/// Refuses the flags of `.global` linking, naming the first one given.
fn refuse_global_flags(args: &Args) -> Result<()> {
    let unsupported = [
        (!args.services.is_empty(), "SERVICE"),
        (args.all, "--all"),
        (args.selector.is_some(), "--selector"),
        (args.prune, "--prune"),
        (args.setup_dns, "--setup-dns"),
        (args.list && args.write.output.is_some(), "--output"),
        (args.gateway_address.is_some(), "--gateway-address"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(given, _)| *given) {
        return Err(usage(
            flag,
            "not available with --mode remote-secret (it links whole clusters: --from, --to and the remote-secret flags)",
        ));
    }
    Ok(())
}

/// Refuses flags that do not go together in remote-secret mode, naming the first one.
fn refuse_conflicts(args: &Args) -> Result<()> {
    let conflicts = [
        (
            args.bidirectional && args.cluster_id.is_some(),
            "--cluster-id",
            "names --from's cluster ID only: with --bidirectional both are detected (or link each direction on its own)",
        ),
        (
            args.bidirectional && args.remote_server.is_some(),
            "--remote-server",
            "names --from's API server only: with --bidirectional link each direction on its own",
        ),
        (
            args.unlink && args.bidirectional,
            "--unlink",
            "undoes one direction: run it once per direction",
        ),
        (
            args.list && (args.token_duration.is_some() || args.remote_server.is_some()),
            "--list",
            "shows the remote secrets: --token-duration and --remote-server are for linking",
        ),
        (
            args.network && (args.unlink || args.list),
            "--network",
            "checks the east-west gateway when linking: not with --unlink or --list",
        ),
        (
            args.rotate && (args.unlink || args.list || args.command.is_some()),
            "--rotate",
            "replaces the token of a link: not with --unlink, --list or check",
        ),
        (
            args.rotate && args.bidirectional,
            "--rotate",
            "replaces one target's token: run it once per direction",
        ),
        (
            (args.from_network.is_some() || args.to_network.is_some())
                && (args.unlink || args.list || args.command.is_some()),
            if args.from_network.is_some() { "--from-network" } else { "--to-network" },
            "labels the Istio namespace when linking: not with --unlink, --list or check",
        ),
        (
            args.unlink && args.token_duration.is_some(),
            "--token-duration",
            "makes a token: not with --unlink",
        ),
    ];
    if let Some((_, flag, why)) = conflicts.iter().find(|(given, _, _)| *given) {
        return Err(usage(flag, why));
    }
    Ok(())
}

/// Checks the names given: the Istio namespace, the cluster ID, the networks and the API server
/// URL.
fn check_names(args: &Args) -> Result<()> {
    names::dns1123_label(&args.istio_namespace).map_err(|e| usage("--istio-namespace", e))?;
    if let Some(id) = &args.cluster_id {
        names::dns1123_label(id).map_err(|e| usage("--cluster-id", e))?;
    }
    for (flag, net) in [
        ("--from-network", &args.from_network),
        ("--to-network", &args.to_network),
    ] {
        if let Some(n) = net {
            names::label_value(n)
                .ok()
                .filter(|()| !n.is_empty())
                .ok_or_else(|| {
                    usage(
                        flag,
                        format!("{n:?} is not a network name (a label value: up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"),
                    )
                })?;
        }
    }
    if let Some(s) = &args.remote_server {
        let ok = s
            .parse::<http::Uri>()
            .ok()
            .filter(|u| u.scheme_str() == Some("https") && u.host().is_some());
        if ok.is_none() {
            return Err(usage(
                "--remote-server",
                format!("{s:?} is not an https:// URL of an API server"),
            ));
        }
    }
    Ok(())
}
