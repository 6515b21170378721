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

    /// The API server's address, instead of the kubeconfig cluster's (https:// when no scheme)
    // `-s` is added where no other flag of the plugin has it (see `app::kubectl_shorts`):
    // mesh-register and mesh-vm keep `-s` for the service account, as istioctl has it.
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,

    /// Bearer token for the API server, instead of the kubeconfig user's credentials
    #[arg(long, value_name = "TOKEN", global = true)]
    pub token: Option<Token>,

    /// Path to a CA certificate file (PEM) to check the server's certificate with
    #[arg(long, value_name = "PATH", global = true)]
    pub certificate_authority: Option<PathBuf>,

    /// Path to a client certificate file (PEM) for TLS client authentication
    #[arg(long, value_name = "PATH", global = true)]
    pub client_certificate: Option<PathBuf>,

    /// Path to the client certificate's private key file (PEM)
    #[arg(long, value_name = "PATH", global = true)]
    pub client_key: Option<PathBuf>,

    /// Do not check the server's certificate (insecure: anyone on the path can read the traffic)
    #[arg(long, value_name = "BOOL", global = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    pub insecure_skip_tls_verify: Option<bool>,

    /// The name to check the server's certificate against, instead of the server's host
    #[arg(long, value_name = "NAME", global = true)]
    pub tls_server_name: Option<String>,

    /// User to impersonate for the requests (a user name or a service account)
    #[arg(long = "as", value_name = "USER", global = true)]
    pub as_user: Option<String>,

    /// Group to impersonate (repeatable); needs --as
    #[arg(long = "as-group", value_name = "GROUP", global = true, action = ArgAction::Append)]
    pub as_groups: Vec<String>,

    /// UID to impersonate; needs --as
    #[arg(long = "as-uid", value_name = "UID", global = true)]
    pub as_uid: Option<String>,

    /// Log verbosity, as kubectl's: 4 the decisions made (context, namespace, Istio version,
    /// field manager), 6 one line per API request, 7 with request headers, 8 with bodies.
    /// Credentials and Secret data are never shown
    #[arg(
        short = 'v',
        long = "v",
        value_name = "LEVEL",
        global = true,
        help_heading = "Logging options"
    )]
    pub verbosity: Option<u8>,
}

/// A bearer token from `--token`: kept out of `Debug` output so no log or panic shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::str::FromStr for Token {
    // Never fails here: clap quotes a refused value in its error, and this one is a secret, so
    // it is checked later (`overrides`), by a message that does not repeat it.
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Token(s.to_string()))
    }
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

impl KubeArgs {
    /// The namespace when no cluster is contacted (client dry runs, offline commands): `-n`,
    /// else the namespace of the first context in the kubeconfig (when one is readable), else
    /// `default`.
    pub fn offline_namespace(&self) -> String {
        if let Some(ns) = &self.namespace {
            return ns.clone();
        }
        crate::api::resolve_targets(self, &self.contexts)
            .ok()
            .and_then(|(_, t)| t.into_iter().next())
            .map_or_else(|| "default".to_string(), |t| t.namespace)
    }
}

impl WriteArgs {
    /// How the write engine sends this command's writes.
    pub fn mode(&self) -> crate::api::WriteMode {
        crate::api::WriteMode {
            dry_run: self.dry_run,
            force: self.force_conflicts,
        }
    }
}

/// Output flag of commands that only read.
#[derive(Debug, Clone, Default, Args)]
pub struct ReadArgs {
    /// Print the objects instead of a table: yaml, json or name
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
}
