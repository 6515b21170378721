//! The flags every plugin shares: kubectl's cluster flags, output and dry-run, write options.

use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};

use crate::duration::HumanDuration;

/// kubectl-compatible cluster selection flags.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Cluster options")]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, several paths merged, else ~/.kube/config)
    #[arg(long, value_name = "PATH", global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (repeatable where a command works on several clusters)
    #[arg(long = "context", value_name = "CONTEXT", global = true, action = ArgAction::Append)]
    pub contexts: Vec<String>,

    /// The kubeconfig cluster to use instead of the context's
    #[arg(long, value_name = "CLUSTER", global = true)]
    pub cluster: Option<String>,

    /// The kubeconfig user to use instead of the context's
    #[arg(long, value_name = "USER", global = true)]
    pub user: Option<String>,

    /// Namespace (default: the context's namespace, else "default")
    #[arg(short = 'n', long, value_name = "NAMESPACE", global = true)]
    pub namespace: Option<String>,

    /// How long to wait for one API request before giving up (default 32s, as kubectl's
    /// discovery; 0: no limit)
    #[arg(long, value_name = "DURATION", global = true)]
    pub request_timeout: Option<HumanDuration>,
}

/// `-o` formats, as kubectl spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Multi-document YAML, ready for `kubectl apply -f -`
    Yaml,
    /// A JSON `List`, ready for `kubectl apply -f -`
    Json,
    /// `kind.group/name` per object
    Name,
}

/// `--dry-run` modes, as kubectl spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DryRun {
    /// Write for real
    #[default]
    None,
    /// Print what would be applied; no cluster needed where the command allows it
    Client,
    /// Send the writes with dryRun=All so the server validates them, and store nothing
    Server,
}

/// Output and dry-run flags of commands that write.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Output options")]
pub struct WriteArgs {
    /// Print the objects instead of the result lines: yaml, json or name
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,

    /// none, client (print only) or server (validate on the server, store nothing)
    #[arg(long, value_enum, value_name = "MODE", default_value = "none", num_args = 0..=1,
          default_missing_value = "client", require_equals = true)]
    pub dry_run: DryRun,

    /// Take ownership of fields another field manager owns (server-side apply force)
    #[arg(long)]
    pub force_conflicts: bool,

    /// Answer yes to every question; never prompt
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// Output flag of commands that only read.
#[derive(Debug, Clone, Default, Args)]
pub struct ReadArgs {
    /// Print the objects instead of a table: yaml, json or name
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
}
