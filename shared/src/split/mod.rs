//! `kubectl mesh-split`: move traffic between the destinations of a VirtualService route, in one
//! or several clusters at once, with `undo`, `status` and progressive `--steps`.

mod analysis;
mod build;
mod choose;
mod cli;
mod cmd;
mod commit;
mod facts;
mod gate;
mod ownership;
mod plan;
mod report;
mod route;
mod site;
mod steps;
mod target;
mod traffic;
mod walk;
mod weights;

pub use analysis::{selector, Analysis, CheckArgs, Checks, Percent, Queries};
pub use build::{created_object, default_name, weights_object, Previous, PREVIOUS_ANNOTATION};
pub use cli::{Args, RouteArg, StatusArgs, UndoArgs, Verb};
pub use ownership::{decide, Decision, HAND_MANAGERS};
pub use plan::{Action, Plan, SetPlan};
pub use route::{routes, select, Destination, Route, RouteKind, RouteRef, RouteSelector};
pub use target::{canonical_host, Candidate, Target};
pub use weights::{step_weights, Weights};

use anyhow::Result;

use crate::prompt::{self, Prompter};
use crate::Io;

/// Runs `kubectl mesh-split`, asking on the terminal when a choice is needed.
pub async fn run(args: Args, io: &mut Io) -> Result<()> {
    run_with(args, io, &mut prompt::Terminal).await
}

/// [`run`] with the prompter given, so tests can script the pick-list.
pub async fn run_with(args: Args, io: &mut Io, prompter: &mut dyn Prompter) -> Result<()> {
    let plan = Plan::from_args(&args)?;
    let clusters = facts::connect(&args.kube).await?;
    match plan.action.clone() {
        Action::Status => cmd::status::run(&plan, &clusters, io).await,
        Action::Undo => cmd::undo::run(&plan, clusters, io, prompter).await,
        Action::Set(set) => cmd::set::run(&plan, &set, clusters, io, prompter).await,
    }
}

#[cfg(test)]
mod tests;
