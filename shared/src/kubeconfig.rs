//! kubectl's rules for finding the kubeconfig, the context and the default namespace.

use std::path::{Path, PathBuf};

use anyhow::Result;
use kube::config::Kubeconfig;

use crate::cli::KubeArgs;
use crate::error::usage;
use crate::names;

/// Loads the kubeconfig as kubectl does: `--kubeconfig`, else every file of `KUBECONFIG`
/// merged (missing ones skipped, first value wins), else `~/.kube/config`.
///
/// With `--server` and no kubeconfig anywhere the kubeconfig is empty, as kubectl's is: the
/// flags say everything.
pub fn load(args: &KubeArgs) -> Result<Kubeconfig> {
    // The cluster and auth flags are checked first: a bad one is a usage error naming it.
    crate::overrides::Overrides::from_args(args)?;
    let env = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty());
    let home = home_config();
    let none_at_all =
        args.kubeconfig.is_none() && env.is_none() && !home.as_deref().is_some_and(Path::exists);
    if none_at_all && args.server.is_some() {
        crate::vlog!(
            4,
            "\"No kubeconfig found: using the flags alone\" server={:?}",
            args.server.as_deref().unwrap_or_default()
        );
        return Ok(Kubeconfig::default());
    }
    load_from(args.kubeconfig.as_deref(), env, home)
}

fn home_config() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube").join("config"))
}

/// [`load`] with its inputs explicit, for tests.
pub fn load_from(
    flag: Option<&Path>,
    env: Option<std::ffi::OsString>,
    home: Option<PathBuf>,
) -> Result<Kubeconfig> {
    if let Some(path) = flag {
        crate::vlog!(
            4,
            "\"Config loaded from file\" path={:?} source=\"--kubeconfig\"",
            path.display().to_string()
        );
        return read(path).map_err(|e| {
            usage(
                "--kubeconfig",
                format!("cannot use {}: {e}", path.display()),
            )
        });
    }
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let mut merged: Option<Kubeconfig> = None;
        for path in paths.iter().filter(|p| p.exists()) {
            crate::vlog!(
                4,
                "\"Config loaded from file\" path={:?} source=\"KUBECONFIG\"",
                path.display().to_string()
            );
            let next = read(path)
                .map_err(|e| usage("KUBECONFIG", format!("cannot use {}: {e}", path.display())))?;
            merged = Some(match merged {
                None => next,
                Some(m) => m.merge(next).map_err(|e| usage("KUBECONFIG", e))?,
            });
        }
        return merged.ok_or_else(|| {
            usage(
                "KUBECONFIG",
                format!("none of its files exist ({})", value.to_string_lossy()),
            )
        });
    }
    match home {
        Some(path) if path.exists() => {
            crate::vlog!(
                4,
                "\"Config loaded from file\" path={:?} source=\"home\"",
                path.display().to_string()
            );
            read(&path)
                .map_err(|e| usage("kubeconfig", format!("cannot use {}: {e}", path.display())))
        }
        _ => Err(usage(
            "--kubeconfig",
            "no kubeconfig found: pass --kubeconfig or set KUBECONFIG",
        )),
    }
}

fn read(path: &Path) -> Result<Kubeconfig> {
    let text = decode(&std::fs::read(path)?)?;
    let mut kc = Kubeconfig::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!(redact_parse_error(&e.to_string())))?;
    if let Some(dir) = path.parent() {
        absolute_paths(&mut kc, dir);
    }
    Ok(kc)
}

/// The text of a kubeconfig as kubectl reads it: UTF-8 with or without a byte-order mark, or
/// UTF-16 with one (what some Windows editors write).
fn decode(bytes: &[u8]) -> Result<String> {
    let utf16 =
        |units: Vec<u16>| String::from_utf16(&units).map_err(|_| anyhow::anyhow!("invalid UTF-16"));
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => Ok(std::str::from_utf8(rest)?.to_string()),
        [0xFF, 0xFE, rest @ ..] => utf16(
            rest.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        [0xFE, 0xFF, rest @ ..] => utf16(
            rest.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect(),
        ),
        _ => Ok(std::str::from_utf8(bytes)?.to_string()),
    }
}

/// Resolves the file paths of a kubeconfig against its own directory, as kubectl does (not
/// against the working directory): CA, client certificate and key, token file, and an exec
/// plugin's command when it is a relative path (`./bin/auth`, not a bare `aws`).
fn absolute_paths(kc: &mut Kubeconfig, dir: &Path) {
    let fix = |p: &mut Option<String>| {
        if let Some(v) = p.as_mut() {
            if !v.is_empty() && Path::new(v.as_str()).is_relative() {
                *v = dir.join(v.as_str()).to_string_lossy().into_owned();
            }
        }
    };
    for c in kc.clusters.iter_mut().filter_map(|c| c.cluster.as_mut()) {
        fix(&mut c.certificate_authority);
    }
    for a in kc
        .auth_infos
        .iter_mut()
        .filter_map(|a| a.auth_info.as_mut())
    {
        fix(&mut a.client_certificate);
        fix(&mut a.client_key);
        fix(&mut a.token_file);
        if let Some(exec) = a.exec.as_mut() {
            if exec.command.as_deref().is_some_and(|c| c.contains('/')) {
                fix(&mut exec.command);
            }
        }
    }
}

/// A kubeconfig parse error without the text around the fault: the YAML parser quotes the
/// nearby source lines, and values, which in a kubeconfig are tokens, passwords and keys.
fn redact_parse_error(message: &str) -> String {
    let head = message.split(" --> ").next().unwrap_or(message);
    let mut out = String::with_capacity(head.len());
    let mut quoted = false;
    for c in head.chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                quoted = false;
                out.push('"');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// The context and namespace a command will use, resolved before any request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Context name (always a real context of the kubeconfig).
    pub context: String,
    /// Namespace: `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// No kubeconfig context: `--server` makes one, named after the server (see `overrides`).
    pub from_flags: bool,
}

/// Resolves the context (explicit, else current-context) and the namespace.
pub fn resolve(kc: &Kubeconfig, context: Option<&str>, namespace: Option<&str>) -> Result<Target> {
    resolve_with_server(kc, context, namespace, None)
}

/// [`resolve`], where a kubeconfig without a current context and no `--context` is no error
/// when `server` (`--server`) says where to go: kubectl then uses the flags alone.
pub fn resolve_with_server(
    kc: &Kubeconfig,
    context: Option<&str>,
    namespace: Option<&str>,
    server: Option<&str>,
) -> Result<Target> {
    let current = kc.current_context.clone().filter(|c| !c.is_empty());
    let (name, source) =
        match (context, current, server) {
            (Some(c), _, _) => (c.to_string(), "--context"),
            (None, Some(c), _) => (c, "current-context"),
            (None, None, Some(server)) => {
                let (namespace, ns_source) = match namespace {
                    Some(ns) => {
                        names::dns1123_label(ns).map_err(|e| usage("--namespace", e))?;
                        (ns.to_string(), "--namespace")
                    }
                    None => ("default".to_string(), "default"),
                };
                crate::vlog!(
                    4,
                    "\"Using no kubeconfig context\" server={server:?} source=\"--server\""
                );
                crate::vlog!(
                    4,
                    "\"Using namespace\" namespace={namespace:?} source={ns_source:?}"
                );
                return Ok(Target {
                    context: server.to_string(),
                    namespace,
                    from_flags: true,
                });
            }
            (None, None, None) => return Err(usage(
                "--context",
                "the kubeconfig has no current-context: name one with --context (or give --server)",
            )),
        };
    let ctx = kc.contexts.iter().find(|c| c.name == name).ok_or_else(|| {
        let known: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
        usage(
            "--context",
            format!(
                "context {name:?} not found in the kubeconfig (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )
    })?;
    let from_context = ctx
        .context
        .as_ref()
        .and_then(|c| c.namespace.clone())
        .filter(|n| !n.is_empty());
    let (namespace, ns_source) = match (namespace, from_context) {
        (Some(ns), _) => {
            names::dns1123_label(ns).map_err(|e| usage("--namespace", e))?;
            (ns.to_string(), "--namespace")
        }
        (None, Some(ns)) => (ns, "context"),
        (None, None) => ("default".to_string(), "default"),
    };
    crate::vlog!(4, "\"Using context\" context={name:?} source={source:?}");
    crate::vlog!(
        4,
        "\"Using namespace\" namespace={namespace:?} source={ns_source:?} context={name:?}"
    );
    Ok(Target {
        context: name,
        namespace,
        from_flags: false,
    })
}

/// The `proxy-url` of the cluster a context uses (`--cluster` overrides the context's).
pub fn proxy_url<'a>(kc: &'a Kubeconfig, context: &str, cluster: Option<&str>) -> Option<&'a str> {
    let name = match cluster {
        Some(c) => c.to_string(),
        None => kc
            .contexts
            .iter()
            .find(|c| c.name == context)?
            .context
            .as_ref()?
            .cluster
            .clone(),
    };
    kc.clusters
        .iter()
        .find(|c| c.name == name)?
        .cluster
        .as_ref()?
        .proxy_url
        .as_deref()
}

/// Names of every context, for completion and error messages.
pub fn context_names(kc: &Kubeconfig) -> Vec<String> {
    kc.contexts.iter().map(|c| c.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    const A: &str = "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: ca\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: ua\n  user: {token: t}\ncontexts:\n- name: a\n  context: {cluster: ca, user: ua, namespace: team-a}\n- name: shared\n  context: {cluster: ca, user: ua}\n";
    const B: &str = "apiVersion: v1\nkind: Config\ncurrent-context: b\nclusters:\n- name: cb\n  cluster: {server: 'https://127.0.0.1:2'}\nusers:\n- name: ub\n  user: {token: t}\ncontexts:\n- name: b\n  context: {cluster: cb, user: ub}\n- name: shared\n  context: {cluster: cb, user: ub, namespace: from-b}\n";

    fn files() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, A).expect("write");
        std::fs::write(&b, B).expect("write");
        (dir, a, b)
    }

    #[test]
    fn merged_kubeconfig_first_file_wins() {
        let (_d, a, b) = files();
        let env = std::env::join_paths([&a, &b]).expect("join");
        let kc = load_from(None, Some(env), None).expect("load");
        assert_eq!(kc.current_context.as_deref(), Some("a"));
        assert_eq!(context_names(&kc), vec!["a", "shared", "b"]);
        // `shared` comes from the first file, so it has no namespace.
        let t = resolve(&kc, Some("shared"), None).expect("resolve");
        assert_eq!(t.namespace, "default");
    }

    #[test]
    fn missing_files_in_kubeconfig_env_are_skipped() {
        let (d, a, _b) = files();
        let env = std::env::join_paths([d.path().join("nope"), a]).expect("join");
        let kc = load_from(None, Some(env), None).expect("load");
        assert_eq!(kc.current_context.as_deref(), Some("a"));
    }

    #[test]
    fn flag_beats_env_and_missing_flag_file_is_usage_error() {
        let (d, a, b) = files();
        let kc = load_from(Some(&b), Some(a.into_os_string()), None).expect("load");
        assert_eq!(kc.current_context.as_deref(), Some("b"));
        let err = load_from(Some(&d.path().join("missing")), None, None).unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(
            err.to_string().starts_with("--kubeconfig: cannot use"),
            "{err}"
        );
    }

    #[test]
    fn no_kubeconfig_at_all_is_usage_error() {
        let err =
            load_from(None, None, Some(PathBuf::from("/nonexistent/kube/config"))).unwrap_err();
        assert_eq!(exit_code(&err), 2);
    }

    #[test]
    fn namespace_precedence_flag_then_context_then_default() {
        let (_d, a, _b) = files();
        let kc = load_from(Some(&a), None, None).expect("load");
        assert_eq!(resolve(&kc, None, None).expect("r").namespace, "team-a");
        assert_eq!(
            resolve(&kc, None, Some("other")).expect("r").namespace,
            "other"
        );
        assert_eq!(
            resolve(&kc, Some("shared"), None).expect("r").namespace,
            "default"
        );
        assert_eq!(resolve(&kc, None, None).expect("r").context, "a");
    }

    #[test]
    fn unknown_context_and_bad_namespace_are_usage_errors() {
        let (_d, a, _b) = files();
        let kc = load_from(Some(&a), None, None).expect("load");
        let err = resolve(&kc, Some("nope"), None).unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(err.to_string().contains("known: a, shared"), "{err}");
        let err = resolve(&kc, None, Some("Bad_NS")).unwrap_err();
        assert_eq!(exit_code(&err), 2);
    }

    #[test]
    fn parse_errors_never_quote_the_kubeconfig() {
        let dir = tempfile::tempdir().expect("tempdir");
        for text in [
            "users:\n- name: u\n  user:\n    token: SUPERSECRET\n    password: [unclosed\n",
            "users:\n- name: u\n  user: {token: SUPERSECRET, token: SUPERSECRET2}\n",
            "users: \"SUPERSECRET\"\n",
        ] {
            let path = dir.path().join("config");
            std::fs::write(&path, text).expect("write");
            let err = read(&path).expect_err("malformed").to_string();
            assert!(!err.contains("SUPERSECRET"), "{err}");
            assert!(err.contains("line ") || err.contains("invalid"), "{err}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_kubeconfig_and_boms_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "apiVersion: v1\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1', certificate-authority: ca.crt}\nusers:\n- name: u\n  user:\n    tokenFile: secrets/token\n    client-key: /abs/key\n    exec: {apiVersion: client.authentication.k8s.io/v1, command: ./bin/auth}\n- name: v\n  user:\n    exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}\ncontexts: []\n";
        let path = dir.path().join("config");
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        for bytes in [
            text.as_bytes().to_vec(),
            [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat(),
            utf16,
        ] {
            std::fs::write(&path, bytes).expect("write");
            let kc = read(&path).expect("reads");
            let d = dir.path().display();
            let cluster = kc.clusters[0].cluster.as_ref().expect("cluster");
            assert_eq!(
                cluster.certificate_authority.as_deref(),
                Some(format!("{d}/ca.crt").as_str())
            );
            let u = kc.auth_infos[0].auth_info.as_ref().expect("user");
            assert_eq!(
                u.token_file.as_deref(),
                Some(format!("{d}/secrets/token").as_str())
            );
            assert_eq!(u.client_key.as_deref(), Some("/abs/key"));
            let exec = u.exec.as_ref().expect("exec");
            assert_eq!(
                exec.command.as_deref(),
                Some(format!("{d}/./bin/auth").as_str())
            );
            let v = kc.auth_infos[1].auth_info.as_ref().expect("user");
            assert_eq!(
                v.exec.as_ref().and_then(|e| e.command.as_deref()),
                Some("aws")
            );
        }
    }
}
