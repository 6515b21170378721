//! Target choice when no TARGET is given: the one VirtualService of the first context that
//! fits, a pick-list on a terminal, or a usage error listing the candidates.

use anyhow::{anyhow, Result};

use super::build;
use super::facts;
use super::plan::Plan;
use super::target::{self, Target};
use crate::api::Cluster;
use crate::error::usage;
use crate::istio::VirtualService;
use crate::objects::Kind;
use crate::prompt::{self, Prompter};
use crate::Io;

/// The TARGET given, else the one VirtualService of the first context that fits (a pick-list
/// on a terminal); `for_undo` looks for recorded previous weights instead of split routes.
pub(super) async fn target_or_choose(
    plan: &Plan,
    clusters: &[Cluster],
    io: &Io,
    prompter: &mut dyn Prompter,
    for_undo: bool,
    hint: &str,
) -> Result<Target> {
    if let Some(t) = &plan.target {
        return Ok(t.clone());
    }
    let first = clusters
        .first()
        .ok_or_else(|| anyhow!("no context to work on"))?;
    let kind = facts::vs_kind(first).await?;
    let may = prompt::may_prompt(io.terminal, plan.write.yes);
    choose(first, &kind, for_undo, hint, may, prompter).await
}

/// Without TARGET: the only candidate in the first cluster, a pick-list, or a usage error.
async fn choose(
    cluster: &Cluster,
    kind: &Kind,
    undo: bool,
    example_rest: &str,
    may_prompt: bool,
    prompter: &mut dyn Prompter,
) -> Result<Target> {
    let ns = cluster.namespace.as_str();
    let all = facts::list(cluster, kind).await?;
    let with_previous: Vec<VirtualService> = all
        .iter()
        .filter(|v| build::previous_raw(v).is_some())
        .cloned()
        .collect();
    let pool = if undo { &with_previous } else { &all };
    let cands = target::candidates(pool);
    let verb = if undo { "undo " } else { "" };
    match cands.len() {
        0 if undo => Err(usage(
            "TARGET",
            format!(
                "no VirtualService in namespace {ns} (context {}) has previous weights recorded by kubectl mesh-split",
                cluster.context
            ),
        )),
        0 => Err(usage(
            "TARGET",
            format!(
                "no VirtualService in namespace {ns} (context {}) has a route with two or more destinations: name one as vs/NAME or a host, or create one with TARGET WEIGHTS --create --to HOST_A,HOST_B",
                cluster.context
            ),
        )),
        // The result lines name it; a note here would precede a usage error's one line.
        1 => Ok(Target::Vs(cands[0].name.clone())),
        n if may_prompt => {
            let items: Vec<String> = cands.iter().map(|c| c.line()).collect();
            let i = prompter.select(
                &format!(
                    "VirtualService to {} ({n} in namespace {ns})",
                    if undo { "undo" } else { "split" }
                ),
                &items,
            )?;
            let c = cands
                .get(i)
                .ok_or_else(|| anyhow!("no VirtualService was picked"))?;
            Ok(Target::Vs(c.name.clone()))
        }
        n => {
            let list: Vec<String> = cands.iter().map(|c| c.line()).collect();
            Err(usage(
                "TARGET",
                format!(
                    "{n} VirtualServices in namespace {ns} (context {}) have a route with two or more destinations: {}; name one, e.g. kubectl mesh-split {verb}vs/{}{example_rest}",
                    cluster.context,
                    list.join("; "),
                    cands[0].name
                ),
            ))
        }
    }
}
