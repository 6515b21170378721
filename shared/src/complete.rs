//! Shell completion: one engine that answers kubectl's plugin-completion protocol (cobra's
//! `__complete` output: candidates, then a `:DIRECTIVE` line), used by `kubectl <TAB>` through the
//! `kubectl_complete-mesh_*` helpers and by the standalone bash, zsh and fish scripts.

use std::io::Write;
use std::time::Duration;

use clap::{Arg, Command};
use serde_json::Value;

use crate::api::{resolve_targets, Cluster};
use crate::cli::KubeArgs;
use crate::duration::HumanDuration;
use crate::objects;
use crate::ports::Protocol;

/// cobra's ShellCompDirectiveNoSpace: do not add a space after the completion.
pub const NO_SPACE: u32 = 2;
/// cobra's ShellCompDirectiveNoFileComp: do not fall back to file names.
pub const NO_FILE: u32 = 4;
/// cobra's ShellCompDirectiveFilterFileExt: candidates are file extensions.
pub const FILTER_EXT: u32 = 8;
/// cobra's ShellCompDirectiveFilterDirs: complete directories only.
pub const FILTER_DIRS: u32 = 16;
/// cobra's ShellCompDirectiveKeepOrder.
pub const KEEP_ORDER: u32 = 32;

/// How long a live lookup may take before completion gives up with no candidates.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Completion candidates and the directive for the shell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// `(value, description)` pairs.
    pub candidates: Vec<(String, String)>,
    /// cobra directive bits.
    pub directive: u32,
}

impl Reply {
    fn values(values: impl IntoIterator<Item = String>, directive: u32) -> Self {
        Reply {
            candidates: values.into_iter().map(|v| (v, String::new())).collect(),
            directive,
        }
    }

    /// Prints in cobra's format: `value[\tdescription]` lines, then `:N`.
    pub fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for (v, d) in &self.candidates {
            if d.is_empty() {
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "{v}\t{d}")?;
            }
        }
        writeln!(out, ":{}", self.directive)
    }
}

/// What the words already typed say about the cluster to ask.
#[derive(Debug, Clone, Default)]
pub struct Typed {
    /// `--kubeconfig`.
    pub kubeconfig: Option<String>,
    /// `--context` (the first one).
    pub context: Option<String>,
    /// `-n/--namespace`.
    pub namespace: Option<String>,
    /// mesh-link's `--from` context.
    pub from: Option<String>,
    /// The subcommand, if any.
    pub subcommand: Option<String>,
    /// Positional words before the current one (after the subcommand).
    pub positionals: Vec<String>,
    /// The other cluster and auth flags typed (`--server`, `--token`, `--as`, ...), so live
    /// lookups reach the cluster the command will.
    pub kube: KubeArgs,
}

/// Live values a position can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Services of the namespace (of the `--from` cluster for mesh-link).
    Services,
    /// WorkloadGroups of the namespace.
    WorkloadGroups,
    /// Hosts of the namespace's VirtualServices.
    VirtualServiceHosts,
    /// `80/20`-style weight presets.
    WeightPresets,
    /// `grpc:` and the other protocol prefixes.
    PortSpecs,
}

/// Which sources a plugin's positional argument completes from (pure).
pub fn positional_sources(plugin: &str, typed: &Typed) -> Vec<Source> {
    let index = typed.positionals.len();
    let sub = typed.subcommand.as_deref();
    match (plugin, sub) {
        ("register", _) => match index {
            0 => vec![Source::Services],
            1 => vec![],
            _ => vec![Source::PortSpecs],
        },
        ("vm", Some("group")) => vec![],
        ("vm", Some(_)) if index == 0 => vec![Source::WorkloadGroups],
        ("link", Some("check")) => vec![],
        ("link", _) => vec![Source::Services],
        ("split", Some(_)) if index == 0 => vec![Source::VirtualServiceHosts],
        ("split", None) => match index {
            0 => vec![Source::VirtualServiceHosts, Source::WeightPresets],
            1 if !looks_like_weights(&typed.positionals[0]) => vec![Source::WeightPresets],
            _ => vec![],
        },
        _ => vec![],
    }
}

fn looks_like_weights(s: &str) -> bool {
    s.contains('/') && s.split('/').all(|p| p.chars().all(|c| c.is_ascii_digit()))
        || s.contains('=')
}

/// Weight presets offered for mesh-split, in migration order.
pub const WEIGHT_PRESETS: [&str; 6] = ["100/0", "90/10", "80/20", "50/50", "20/80", "0/100"];

fn long_flag<'a>(cmd: &'a Command, name: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|a| a.get_long() == Some(name))
}

fn short_flag(cmd: &Command, c: char) -> Option<&Arg> {
    cmd.get_arguments().find(|a| a.get_short() == Some(c))
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.takes_values()) && !arg.is_require_equals_set()
}

/// Walks the typed words (all but the current one), following subcommands and flag values.
fn walk<'a>(root: &'a Command, words: &[String]) -> (&'a Command, Typed, Option<&'a Arg>) {
    let mut cmd = root;
    let mut typed = Typed::default();
    let mut pending: Option<&Arg> = None;
    for w in words {
        if let Some(arg) = pending.take() {
            record(&mut typed, arg, w);
            continue;
        }
        if let Some(rest) = w.strip_prefix("--") {
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            };
            if let Some(arg) = long_flag(cmd, name) {
                match value {
                    Some(v) => record(&mut typed, arg, v),
                    None if takes_value(arg) => pending = Some(arg),
                    // A bare `--insecure-skip-tls-verify` is `=true`.
                    None => record(&mut typed, arg, "true"),
                }
            }
        } else if let Some(rest) = w.strip_prefix('-').filter(|r| !r.is_empty()) {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                if let Some(arg) = short_flag(cmd, c) {
                    let tail: String = chars.collect();
                    if takes_value(arg) {
                        if tail.is_empty() {
                            pending = Some(arg);
                        } else {
                            record(&mut typed, arg, tail.trim_start_matches('='));
                        }
                    }
                }
            }
        } else if typed.subcommand.is_none()
            && typed.positionals.is_empty()
            && cmd.find_subcommand(w).is_some()
        {
            if let Some(sub) = cmd.find_subcommand(w) {
                typed.subcommand = Some(w.clone());
                cmd = sub;
            }
        } else {
            typed.positionals.push(w.clone());
        }
    }
    (cmd, typed, pending)
}

fn record(typed: &mut Typed, arg: &Arg, value: &str) {
    match arg.get_id().as_str() {
        "kubeconfig" => typed.kubeconfig = Some(value.to_string()),
        "contexts" | "context" if typed.context.is_none() => {
            typed.context = Some(value.to_string())
        }
        "namespace" => typed.namespace = Some(value.to_string()),
        "from" => typed.from = Some(value.to_string()),
        "cluster" => typed.kube.cluster = Some(value.to_string()),
        "user" => typed.kube.user = Some(value.to_string()),
        "server" => typed.kube.server = Some(value.to_string()),
        "token" => typed.kube.token = Some(crate::cli::Token(value.to_string())),
        "certificate_authority" => typed.kube.certificate_authority = Some(value.into()),
        "client_certificate" => typed.kube.client_certificate = Some(value.into()),
        "client_key" => typed.kube.client_key = Some(value.into()),
        "insecure_skip_tls_verify" => typed.kube.insecure_skip_tls_verify = value.parse().ok(),
        "tls_server_name" => typed.kube.tls_server_name = Some(value.to_string()),
        "as_user" => typed.kube.as_user = Some(value.to_string()),
        "as_groups" => typed.kube.as_groups.push(value.to_string()),
        "as_uid" => typed.kube.as_uid = Some(value.to_string()),
        _ => {}
    }
}

/// Answers one completion request: `words` are the words after the plugin name, the last one
/// being the word under the cursor ('' when empty).
pub async fn complete(plugin: &str, root: &Command, words: &[String]) -> Reply {
    let (current, before) = match words.split_last() {
        Some((c, b)) => (c.as_str(), b),
        None => ("", &[][..]),
    };
    // clap fills in value counts and possible values only when a command is built.
    let mut root = root.clone();
    root.build();
    let (cmd, typed, pending) = walk(&root, before);
    if let Some(arg) = pending {
        return flag_values(arg, current, "", &typed).await;
    }
    if let Some(rest) = current.strip_prefix("--") {
        if let Some((name, partial)) = rest.split_once('=') {
            return match long_flag(cmd, name) {
                Some(arg) => flag_values(arg, partial, &format!("--{name}="), &typed).await,
                None => Reply {
                    directive: NO_FILE,
                    ..Reply::default()
                },
            };
        }
    }
    if current.starts_with('-') {
        return flags(cmd, current);
    }
    let mut reply = Reply {
        directive: NO_FILE,
        ..Reply::default()
    };
    if typed.subcommand.is_none() && typed.positionals.is_empty() {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            reply
                .candidates
                .push((sub.get_name().to_string(), first_line(sub.get_about())));
        }
    }
    for source in positional_sources(plugin, &typed) {
        let more = live(plugin, source, current, &typed).await;
        reply.directive |= more.directive;
        reply.candidates.extend(more.candidates);
    }
    reply.candidates.retain(|(v, _)| v.starts_with(current));
    reply
}

fn first_line(s: Option<&clap::builder::StyledStr>) -> String {
    s.map(|s| s.to_string().lines().next().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn flags(cmd: &Command, current: &str) -> Reply {
    let mut candidates = Vec::new();
    for arg in cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_positional())
    {
        let help = first_line(arg.get_help());
        if let Some(l) = arg.get_long() {
            candidates.push((format!("--{l}"), help.clone()));
        }
        if let Some(s) = arg.get_short() {
            candidates.push((format!("-{s}"), help));
        }
    }
    candidates.push(("--help".to_string(), "Print help".to_string()));
    candidates.retain(|(v, _)| v.starts_with(current));
    candidates.dedup();
    Reply {
        candidates,
        directive: NO_FILE,
    }
}

async fn flag_values(arg: &Arg, partial: &str, prefix: &str, typed: &Typed) -> Reply {
    let id = arg.get_id().as_str();
    let mut reply = match id {
        // File names: the shell's own completion (directive 0).
        "kubeconfig" | "file" | "certificate_authority" | "client_certificate" | "client_key" => {
            return Reply::default()
        }
        "out_dir" => {
            return Reply {
                directive: FILTER_DIRS,
                ..Reply::default()
            }
        }
        "contexts" | "context" | "from" | "to" => Reply::values(contexts(typed), NO_FILE),
        "namespace" => {
            live_names(
                typed,
                typed.context.as_deref(),
                &objects::core("Namespace"),
                false,
            )
            .await
        }
        _ => {
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_string())
                .collect();
            Reply::values(values, NO_FILE)
        }
    };
    reply.candidates.retain(|(v, _)| v.starts_with(partial));
    for c in &mut reply.candidates {
        c.0 = format!("{prefix}{}", c.0);
    }
    reply
}

fn kube_args(typed: &Typed, context: Option<&str>) -> KubeArgs {
    KubeArgs {
        kubeconfig: typed.kubeconfig.clone().map(Into::into),
        contexts: context.map(|c| vec![c.to_string()]).unwrap_or_default(),
        namespace: typed.namespace.clone(),
        request_timeout: Some(HumanDuration(LIVE_TIMEOUT)),
        ..typed.kube.clone()
    }
}

fn contexts(typed: &Typed) -> Vec<String> {
    crate::kubeconfig::load(&kube_args(typed, None))
        .map(|kc| crate::kubeconfig::context_names(&kc))
        .unwrap_or_default()
}

async fn live(plugin: &str, source: Source, current: &str, typed: &Typed) -> Reply {
    let context = if plugin == "link" {
        typed.from.as_deref().or(typed.context.as_deref())
    } else {
        typed.context.as_deref()
    };
    match source {
        Source::WeightPresets => Reply::values(
            WEIGHT_PRESETS.iter().map(|s| s.to_string()),
            NO_FILE | KEEP_ORDER,
        ),
        Source::PortSpecs => {
            if current.contains(':') || current.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                Reply {
                    directive: NO_FILE,
                    ..Reply::default()
                }
            } else {
                Reply::values(
                    Protocol::ALL.iter().map(|p| format!("{}:", p.prefix())),
                    NO_FILE | NO_SPACE,
                )
            }
        }
        Source::Services => live_names(typed, context, &objects::core("Service"), true).await,
        Source::WorkloadGroups => {
            live_istio(typed, context, "WorkloadGroup", |o| {
                vec![objects::name(o).to_string()]
            })
            .await
        }
        Source::VirtualServiceHosts => {
            live_istio(typed, context, "VirtualService", |o| {
                o["spec"]["hosts"]
                    .as_array()
                    .map(|h| {
                        h.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .await
        }
    }
}

/// Names of the objects of a kind, from the typed cluster, within [`LIVE_TIMEOUT`]; nothing on any error.
async fn live_names(
    typed: &Typed,
    context: Option<&str>,
    kind: &objects::Kind,
    namespaced: bool,
) -> Reply {
    let args = kube_args(typed, context);
    let kind = kind.clone();
    let found = tokio::time::timeout(LIVE_TIMEOUT, async move {
        let (kc, targets) = resolve_targets(&args, &args.contexts).ok()?;
        let cluster = Cluster::connect(&kc, targets.first()?, &args).await.ok()?;
        let ns = namespaced.then(|| cluster.namespace.clone());
        cluster.list(&kind, ns.as_deref(), None).await.ok()
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default();
    Reply::values(found.iter().map(|o| objects::name(o).to_string()), NO_FILE)
}

async fn live_istio(
    typed: &Typed,
    context: Option<&str>,
    kind: &'static str,
    pick: impl Fn(&Value) -> Vec<String>,
) -> Reply {
    let args = kube_args(typed, context);
    let found = tokio::time::timeout(LIVE_TIMEOUT, async move {
        let (kc, targets) = resolve_targets(&args, &args.contexts).ok()?;
        let cluster = Cluster::connect(&kc, targets.first()?, &args).await.ok()?;
        let version = cluster.istio_version().await.ok()?;
        let ns = cluster.namespace.clone();
        cluster
            .list(&objects::istio(kind, &version), Some(&ns), None)
            .await
            .ok()
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default();
    let mut values: Vec<String> = found.iter().flat_map(&pick).collect();
    values.sort();
    values.dedup();
    Reply::values(values, NO_FILE)
}

/// The script that wires a standalone binary's completion into a shell; it calls
/// `BIN __complete WORDS...` and reads the same cobra format kubectl reads.
pub fn script(shell: &str, bin: &str) -> Option<String> {
    let func = bin.replace(['-', '.'], "_");
    let text = match shell {
        "bash" => BASH.to_string(),
        "zsh" => ZSH.to_string(),
        "fish" => FISH.to_string(),
        _ => return None,
    };
    Some(text.replace("@BIN@", bin).replace("@FUNC@", &func))
}

const BASH: &str = r#"# bash completion for @BIN@ (generated by `COMPLETE=bash @BIN@`; do not edit)
_@FUNC@() {
    local cur="${COMP_WORDS[COMP_CWORD]}" out directive line
    out=$("@BIN@" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return
    directive=${out##*:}
    COMPREPLY=()
    while IFS= read -r line; do
        [[ -z $line || $line == :* ]] && continue
        COMPREPLY+=("${line%%$'\t'*}")
    done <<< "$out"
    if (( directive & 16 )); then
        COMPREPLY=($(compgen -d -- "$cur"))
    elif (( ${#COMPREPLY[@]} == 0 && (directive & 4) == 0 )); then
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
    (( directive & 2 )) && compopt -o nospace 2>/dev/null
    return 0
}
complete -F _@FUNC@ @BIN@
"#;

const ZSH: &str = r#"#compdef @BIN@
# zsh completion for @BIN@ (generated by `COMPLETE=zsh @BIN@`; do not edit)
_@FUNC@() {
    local -a words_before candidates
    local out directive line
    words_before=("${(@)words[2,CURRENT]}")
    out=$("@BIN@" __complete "${words_before[@]}" 2>/dev/null) || return 1
    directive=${${(f)out}[-1]#:}
    for line in ${(f)out}; do
        [[ $line == :* ]] && continue
        candidates+=("${line//:/\\:}")
    done
    if (( directive & 16 )); then
        _path_files -/
    elif (( ${#candidates} == 0 && (directive & 4) == 0 )); then
        _files
    elif (( directive & 2 )); then
        _describe -t values 'values' candidates -S ''
    else
        _describe -t values 'values' candidates
    fi
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _@FUNC@ "$@"
else
    compdef _@FUNC@ @BIN@
fi
"#;

const FISH: &str = r#"# fish completion for @BIN@ (generated by `COMPLETE=fish @BIN@`; do not edit)
function __@FUNC@_complete
    set -l words (commandline -opc)[2..-1] (commandline -ct)
    set -l out (@BIN@ __complete $words 2>/dev/null)
    set -l directive (string replace ':' '' -- $out[-1])
    for line in $out[1..-2]
        echo $line
    end
    if test (count $out) -le 1; and test (math "bitand($directive, 4)") -eq 0
        __fish_complete_path (commandline -ct)
    end
end
complete -c @BIN@ -f -a '(__@FUNC@_complete)'
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    fn run(plugin: &str, cmd: &Command, w: &[&str]) -> Reply {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(complete(plugin, cmd, &words(w)))
    }

    #[test]
    fn flags_complete_without_a_cluster() {
        let cmd = crate::register::Args::command();
        let r = run("register", &cmd, &["--mo"]);
        assert_eq!(
            r.candidates,
            vec![(
                "--mode".to_string(),
                "How the service is represented in the cluster".to_string()
            )]
        );
        assert_eq!(r.directive, NO_FILE);
        let r = run("register", &cmd, &["--mode", ""]);
        let values: Vec<&str> = r.candidates.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(values, vec!["serviceentry", "workloadentry", "endpoints"]);
        let r = run("register", &cmd, &["--dry-run=s"]);
        assert_eq!(r.candidates[0].0, "--dry-run=server");
        let r = run("register", &cmd, &["-o", "y"]);
        assert_eq!(r.candidates[0].0, "yaml");
    }

    #[test]
    fn port_specs_offer_protocol_prefixes() {
        let cmd = crate::register::Args::command();
        let r = run("register", &cmd, &["svc", "10.0.0.1", "gr"]);
        let values: Vec<&str> = r.candidates.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(values, vec!["grpc:", "grpc-web:"]);
        assert_eq!(r.directive, NO_FILE | NO_SPACE);
    }

    #[test]
    fn walk_tracks_flags_values_and_positionals() {
        let cmd = crate::register::Args::command();
        let mut cmd = cmd;
        cmd.build();
        let (_, typed, pending) = walk(
            &cmd,
            &words(&["--context", "c1", "-n", "shop", "--kubeconfig=/k", "svc"]),
        );
        assert_eq!(typed.context.as_deref(), Some("c1"));
        assert_eq!(typed.namespace.as_deref(), Some("shop"));
        assert_eq!(typed.kubeconfig.as_deref(), Some("/k"));
        assert_eq!(typed.positionals, vec!["svc"]);
        assert!(pending.is_none());
    }

    #[test]
    fn path_flags_complete_file_names() {
        let cmd = crate::app::kubectl_shorts(crate::split::Args::command());
        for flag in [
            "--certificate-authority",
            "--client-certificate",
            "--client-key",
            "--kubeconfig",
        ] {
            // No candidates and directive 0: the shell completes file names.
            assert_eq!(run("split", &cmd, &[flag, ""]), Reply::default(), "{flag}");
        }
        let r = run("split", &cmd, &["--insecure-skip-tls-verify="]);
        let values: Vec<&str> = r.candidates.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            values,
            vec![
                "--insecure-skip-tls-verify=true",
                "--insecure-skip-tls-verify=false"
            ]
        );
    }

    #[test]
    fn walk_keeps_the_auth_flags_for_live_lookups() {
        let mut cmd = crate::app::kubectl_shorts(crate::split::Args::command());
        cmd.build();
        let (_, typed, _) = walk(
            &cmd,
            &words(&[
                "-s",
                "https://10.0.0.1:6443",
                "--token=t0ken",
                "--as",
                "jane",
                "--as-group",
                "dev",
                "--as-group=ops",
                "--insecure-skip-tls-verify",
                "--tls-server-name",
                "kube",
            ]),
        );
        let k = typed.kube;
        assert_eq!(k.server.as_deref(), Some("https://10.0.0.1:6443"));
        assert_eq!(k.token.as_ref().map(|t| t.0.as_str()), Some("t0ken"));
        assert_eq!(k.as_user.as_deref(), Some("jane"));
        assert_eq!(k.as_groups, vec!["dev", "ops"]);
        assert_eq!(k.insecure_skip_tls_verify, Some(true));
        assert_eq!(k.tls_server_name.as_deref(), Some("kube"));
        let args = kube_args(
            &Typed {
                kube: k,
                ..Typed::default()
            },
            Some("c"),
        );
        assert_eq!(args.contexts, vec!["c"]);
        assert_eq!(args.as_user.as_deref(), Some("jane"));
    }

    #[test]
    fn scripts_exist_for_three_shells() {
        for shell in ["bash", "zsh", "fish"] {
            let s = script(shell, "kubectl-mesh_register").expect("script");
            assert!(
                s.contains("kubectl-mesh_register __complete")
                    || s.contains("\"kubectl-mesh_register\" __complete"),
                "{shell}"
            );
            assert!(!s.contains("@BIN@") && !s.contains("@FUNC@"));
        }
        assert!(script("tcsh", "x").is_none());
    }
}
