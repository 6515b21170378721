//! kubectl's cluster and auth flags (`--server`, `--token`, `--as`, ...) laid over the kubeconfig
//! with kubectl's precedence, so kube reads one kubeconfig that already says what the flags say.
//!
//! The rules are client-go's (`clientcmd.DirectClientConfig`): a flag replaces the field of the
//! chosen context's cluster or user; `--certificate-authority` and `--insecure-skip-tls-verify`
//! replace the whole CA setting; `--server` drops the kubeconfig's `tls-server-name`; client
//! certificate and key flags replace the inline data too. `--token` replaces the user's other
//! credentials (kubectl skips an exec plugin when a token is given, and refuses a token beside a
//! password). Without a kubeconfig context, `--server` makes one, so an empty kubeconfig works.

use std::path::{Path, PathBuf};

use anyhow::Result;
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};

use crate::cli::KubeArgs;
use crate::error::usage;
use crate::kubeconfig::Target;

/// The flags, checked: paths absolute and readable, the server a URL, impersonation complete.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `-s/--server`, with a scheme.
    pub server: Option<String>,
    /// `--token`.
    pub token: Option<String>,
    /// `--certificate-authority`.
    pub certificate_authority: Option<String>,
    /// `--client-certificate`.
    pub client_certificate: Option<String>,
    /// `--client-key`.
    pub client_key: Option<String>,
    /// `--insecure-skip-tls-verify`.
    pub insecure: Option<bool>,
    /// `--tls-server-name`.
    pub tls_server_name: Option<String>,
    /// `--as`.
    pub as_user: Option<String>,
    /// `--as-group`.
    pub as_groups: Vec<String>,
    /// `--as-uid`.
    pub as_uid: Option<String>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("certificate_authority", &self.certificate_authority)
            .field("client_certificate", &self.client_certificate)
            .field("client_key", &self.client_key)
            .field("insecure", &self.insecure)
            .field("tls_server_name", &self.tls_server_name)
            .field("as_user", &self.as_user)
            .field("as_groups", &self.as_groups)
            .field("as_uid", &self.as_uid)
            .finish()
    }
}

impl Overrides {
    /// Checks the flags before anything is read or sent; each fault is a usage error naming
    /// its flag (and never quoting a token or a file's content).
    pub fn from_args(args: &KubeArgs) -> Result<Self> {
        let cwd = std::env::current_dir().unwrap_or_default();
        let server = args.server.as_deref().map(server_url).transpose()?;
        let token = match &args.token {
            Some(t) if t.0.is_empty() => return Err(usage("--token", "the token is empty")),
            Some(t) if !t.0.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(usage(
                    "--token",
                    "a bearer token is printable ASCII without spaces or line breaks",
                ))
            }
            Some(t) => Some(t.0.clone()),
            None => None,
        };
        let ca = pem_file(
            "--certificate-authority",
            args.certificate_authority.as_deref(),
            &cwd,
            "CERTIFICATE",
        )?;
        let cert = pem_file(
            "--client-certificate",
            args.client_certificate.as_deref(),
            &cwd,
            "CERTIFICATE",
        )?;
        let key = pem_file(
            "--client-key",
            args.client_key.as_deref(),
            &cwd,
            "PRIVATE KEY",
        )?;
        if ca.is_some() && args.insecure_skip_tls_verify == Some(true) {
            return Err(usage(
                "--insecure-skip-tls-verify",
                "cannot be combined with --certificate-authority: give one of them",
            ));
        }
        let tls_server_name = match args.tls_server_name.as_deref() {
            Some(n) if n.parse::<std::net::IpAddr>().is_ok() => Some(n.to_string()),
            Some(n) => {
                crate::names::dns1123_subdomain(&n.to_ascii_lowercase()).map_err(|e| {
                    usage(
                        "--tls-server-name",
                        format!("{n:?} is not a host name or IP address: {e}"),
                    )
                })?;
                Some(n.to_string())
            }
            None => None,
        };
        let as_user = match args.as_user.as_deref() {
            Some("") => return Err(usage("--as", "the user name is empty")),
            other => other.map(String::from),
        };
        if as_user.is_none() {
            // client-go refuses these without a user, so they would be sent for nothing.
            if !args.as_groups.is_empty() {
                return Err(usage(
                    "--as-group",
                    "needs --as USER: groups are impersonated together with a user",
                ));
            }
            if args.as_uid.is_some() {
                return Err(usage(
                    "--as-uid",
                    "needs --as USER: a UID is impersonated together with a user",
                ));
            }
        }
        if args.as_groups.iter().any(String::is_empty) {
            return Err(usage("--as-group", "a group name is empty"));
        }
        Ok(Self {
            server,
            token,
            certificate_authority: ca,
            client_certificate: cert,
            client_key: key,
            insecure: args.insecure_skip_tls_verify,
            tls_server_name,
            as_user,
            as_groups: args.as_groups.clone(),
            as_uid: args.as_uid.clone(),
        })
    }

    /// Whether any flag changes the cluster entry.
    fn touches_cluster(&self) -> bool {
        self.server.is_some()
            || self.certificate_authority.is_some()
            || self.insecure.is_some()
            || self.tls_server_name.is_some()
    }

    /// Whether any flag changes the user entry.
    fn touches_user(&self) -> bool {
        self.token.is_some()
            || self.client_certificate.is_some()
            || self.client_key.is_some()
            || self.as_user.is_some()
    }

    /// Writes the flags into the cluster and user entries `target` uses (`--cluster` and
    /// `--user` choose other entries), adding a context for a target made from `--server`,
    /// and returns the options for kube's loader.
    pub fn apply(
        &self,
        kc: &mut Kubeconfig,
        target: &Target,
        cluster: Option<&str>,
        user: Option<&str>,
    ) -> Result<KubeConfigOptions> {
        if target.from_flags {
            kc.contexts.push(NamedContext {
                name: target.context.clone(),
                context: Some(Context {
                    cluster: cluster.unwrap_or(&target.context).to_string(),
                    user: user.map(String::from),
                    ..Context::default()
                }),
                ..NamedContext::default()
            });
        }
        let context = kc
            .contexts
            .iter()
            .find(|c| c.name == target.context)
            .and_then(|c| c.context.clone())
            .unwrap_or_default();
        let cluster_name = cluster.map_or(context.cluster, String::from);
        if self.touches_cluster() {
            self.apply_cluster(cluster_entry(kc, &cluster_name));
        }
        let mut user_name = user.map(String::from).or(context.user);
        if self.touches_user() {
            let name = user_name.unwrap_or_else(|| target.context.clone());
            self.apply_user(user_entry(kc, &name))?;
            user_name = Some(name);
        }
        Ok(KubeConfigOptions {
            context: Some(target.context.clone()),
            cluster: Some(cluster_name),
            user: user_name,
        })
    }

    fn apply_cluster(&self, c: &mut Cluster) {
        if let Some(s) = &self.server {
            c.server = Some(s.clone());
        }
        if self.insecure == Some(true) || self.certificate_authority.is_some() {
            c.insecure_skip_tls_verify = self.insecure;
            c.certificate_authority = self.certificate_authority.clone();
            c.certificate_authority_data = None;
        }
        if self.tls_server_name.is_some() || self.server.is_some() {
            c.tls_server_name = self.tls_server_name.clone();
        }
    }

    fn apply_user(&self, u: &mut AuthInfo) -> Result<()> {
        if let Some(t) = &self.token {
            *u = AuthInfo {
                token: Some(t.clone().into()),
                client_certificate: u.client_certificate.take(),
                client_certificate_data: u.client_certificate_data.take(),
                client_key: u.client_key.take(),
                client_key_data: u.client_key_data.take(),
                impersonate: u.impersonate.take(),
                impersonate_uid: u.impersonate_uid.take(),
                impersonate_groups: u.impersonate_groups.take(),
                impersonate_user_extra: u.impersonate_user_extra.take(),
                ..AuthInfo::default()
            };
        }
        if let Some(c) = &self.client_certificate {
            u.client_certificate = Some(c.clone());
            u.client_certificate_data = None;
        }
        if let Some(k) = &self.client_key {
            u.client_key = Some(k.clone());
            u.client_key_data = None;
        }
        let has_cert = u.client_certificate.is_some() || u.client_certificate_data.is_some();
        let has_key = u.client_key.is_some() || u.client_key_data.is_some();
        if self.client_certificate.is_some() && !has_key {
            return Err(usage(
                "--client-certificate",
                "needs --client-key (the kubeconfig user has no client key)",
            ));
        }
        if self.client_key.is_some() && !has_cert {
            return Err(usage(
                "--client-key",
                "needs --client-certificate (the kubeconfig user has no client certificate)",
            ));
        }
        if let Some(user) = &self.as_user {
            u.impersonate = Some(user.clone());
            u.impersonate_groups = (!self.as_groups.is_empty()).then(|| self.as_groups.clone());
            u.impersonate_uid = self.as_uid.clone();
            // Extra fields of the kubeconfig's `as-user-extra` belong to its `as` user, not this one.
            u.impersonate_user_extra = None;
        }
        Ok(())
    }
}

fn cluster_entry<'a>(kc: &'a mut Kubeconfig, name: &str) -> &'a mut Cluster {
    let i = match kc.clusters.iter().position(|c| c.name == name) {
        Some(i) => i,
        None => {
            kc.clusters.push(NamedCluster {
                name: name.to_string(),
                ..NamedCluster::default()
            });
            kc.clusters.len() - 1
        }
    };
    kc.clusters[i].cluster.get_or_insert_with(Cluster::default)
}

fn user_entry<'a>(kc: &'a mut Kubeconfig, name: &str) -> &'a mut AuthInfo {
    let i = match kc.auth_infos.iter().position(|a| a.name == name) {
        Some(i) => i,
        None => {
            kc.auth_infos.push(NamedAuthInfo {
                name: name.to_string(),
                ..NamedAuthInfo::default()
            });
            kc.auth_infos.len() - 1
        }
    };
    kc.auth_infos[i]
        .auth_info
        .get_or_insert_with(AuthInfo::default)
}

/// `--server`: `https://HOST[:PORT][/PATH]` or `http://...`; a bare `HOST[:PORT]` means https,
/// since API servers are reached over TLS.
fn server_url(value: &str) -> Result<String> {
    let full = if value.contains("://") {
        value.to_string()
    } else {
        format!("https://{value}")
    };
    let bad = |why: &str| {
        usage(
            "--server",
            format!("{value:?} is not an API server URL ({why}): expected https://HOST[:PORT]"),
        )
    };
    let uri: http::Uri = full.parse().map_err(|_| bad("it does not parse"))?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) {
        return Err(bad("the scheme is not https or http"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("credentials do not belong in the URL: use --token"));
    }
    Ok(full)
}

/// A PEM file a flag names: made absolute, and read once to fail early when it is missing,
/// unreadable or holds no `BEGIN <what>` block.
fn pem_file(flag: &str, path: Option<&Path>, cwd: &Path, what: &str) -> Result<Option<String>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let path: PathBuf = if path.is_relative() {
        cwd.join(path)
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&path)
        .map_err(|e| usage(flag, format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{what}-----")));
    if !found {
        return Err(usage(
            flag,
            format!("{} holds no PEM {what} block", path.display()),
        ));
    }
    Ok(Some(path.to_string_lossy().into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Token;
    use crate::error::exit_code;

    const KC: &str = "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: ca\n  cluster: {server: 'https://10.0.0.1:6443', certificate-authority-data: Zm9v, tls-server-name: kube.internal}\nusers:\n- name: ua\n  user:\n    username: admin\n    password: hunter2\n    exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}\n    client-key-data: a2V5\n    client-certificate-data: Y2VydA==\ncontexts:\n- name: a\n  context: {cluster: ca, user: ua, namespace: team-a}\n";

    fn target(context: &str, from_flags: bool) -> Target {
        Target {
            context: context.to_string(),
            namespace: "default".to_string(),
            from_flags,
        }
    }

    fn files() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.crt");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let key = dir.path().join("tls.key");
        std::fs::write(
            &key,
            "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n",
        )
        .expect("write");
        (dir, ca, key)
    }

    #[test]
    fn flags_replace_the_contexts_cluster_and_user_fields() {
        let (_d, ca, _key) = files();
        let args = KubeArgs {
            server: Some("10.0.0.2:6443".into()),
            token: Some(Token("flag-token".into())),
            certificate_authority: Some(ca.clone()),
            as_user: Some("jane".into()),
            as_groups: vec!["dev".into(), "ops".into()],
            ..KubeArgs::default()
        };
        let o = Overrides::from_args(&args).expect("valid");
        let mut kc = Kubeconfig::from_yaml(KC).expect("kubeconfig");
        let opts = o
            .apply(&mut kc, &target("a", false), None, None)
            .expect("apply");
        assert_eq!(opts.cluster.as_deref(), Some("ca"));
        assert_eq!(opts.user.as_deref(), Some("ua"));
        let c = kc.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(c.server.as_deref(), Some("https://10.0.0.2:6443"));
        assert_eq!(c.certificate_authority.as_deref(), ca.to_str());
        assert_eq!(
            c.certificate_authority_data, None,
            "the flag's CA replaces the inline one"
        );
        assert_eq!(
            c.tls_server_name, None,
            "--server drops the kubeconfig's server name"
        );
        let u = kc.auth_infos[0].auth_info.as_ref().expect("user");
        assert!(u.exec.is_none() && u.username.is_none() && u.password.is_none());
        assert!(
            u.client_key_data.is_some(),
            "a client certificate stays beside a token"
        );
        assert_eq!(u.impersonate.as_deref(), Some("jane"));
        assert_eq!(
            u.impersonate_groups.as_deref(),
            Some(&["dev".to_string(), "ops".to_string()][..])
        );
    }

    #[test]
    fn server_without_a_context_makes_one_and_nothing_else_is_touched_without_flags() {
        let o = Overrides::from_args(&KubeArgs {
            server: Some("https://api.example.com".into()),
            token: Some(Token("t".into())),
            ..KubeArgs::default()
        })
        .expect("valid");
        let mut kc = Kubeconfig::default();
        let t = target("https://api.example.com", true);
        let opts = o.apply(&mut kc, &t, None, None).expect("apply");
        assert_eq!(opts.context.as_deref(), Some("https://api.example.com"));
        assert_eq!(kc.contexts.len(), 1);
        assert_eq!(kc.clusters[0].name, "https://api.example.com");
        assert!(kc.auth_infos[0]
            .auth_info
            .as_ref()
            .expect("u")
            .token
            .is_some());

        let mut kc = Kubeconfig::from_yaml(KC).expect("kubeconfig");
        let before = format!("{:?}", kc.clusters);
        Overrides::default()
            .apply(&mut kc, &target("a", false), None, None)
            .expect("apply");
        assert_eq!(format!("{:?}", kc.clusters), before);
    }

    #[test]
    fn insecure_clears_the_ca_and_keeps_the_server_name() {
        let mut kc = Kubeconfig::from_yaml(KC).expect("kubeconfig");
        let o = Overrides::from_args(&KubeArgs {
            insecure_skip_tls_verify: Some(true),
            ..KubeArgs::default()
        })
        .expect("valid");
        o.apply(&mut kc, &target("a", false), None, None)
            .expect("apply");
        let c = kc.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(c.insecure_skip_tls_verify, Some(true));
        assert_eq!(c.certificate_authority_data, None);
        assert_eq!(c.tls_server_name.as_deref(), Some("kube.internal"));
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_flag_and_never_the_token() {
        let (d, ca, key) = files();
        let cases: Vec<(KubeArgs, &str)> = vec![
            (
                KubeArgs {
                    certificate_authority: Some(d.path().join("missing.crt")),
                    ..KubeArgs::default()
                },
                "--certificate-authority: cannot read",
            ),
            (
                KubeArgs {
                    certificate_authority: Some(key.clone()),
                    ..KubeArgs::default()
                },
                "--certificate-authority:",
            ),
            (
                KubeArgs {
                    client_key: Some(ca.clone()),
                    ..KubeArgs::default()
                },
                "--client-key:",
            ),
            (
                KubeArgs {
                    server: Some("ftp://x".into()),
                    ..KubeArgs::default()
                },
                "--server:",
            ),
            (
                KubeArgs {
                    token: Some(Token("SECRET with space".into())),
                    ..KubeArgs::default()
                },
                "--token:",
            ),
            (
                KubeArgs {
                    as_groups: vec!["system:masters".into()],
                    ..KubeArgs::default()
                },
                "--as-group: needs --as",
            ),
            (
                KubeArgs {
                    as_uid: Some("1".into()),
                    ..KubeArgs::default()
                },
                "--as-uid: needs --as",
            ),
            (
                KubeArgs {
                    certificate_authority: Some(ca.clone()),
                    insecure_skip_tls_verify: Some(true),
                    ..KubeArgs::default()
                },
                "--insecure-skip-tls-verify:",
            ),
            (
                KubeArgs {
                    tls_server_name: Some("a b".into()),
                    ..KubeArgs::default()
                },
                "--tls-server-name:",
            ),
        ];
        for (args, want) in cases {
            let err = Overrides::from_args(&args).expect_err(want);
            assert_eq!(exit_code(&err), 2, "{err}");
            let text = err.to_string();
            assert!(text.starts_with(want), "{text}");
            assert!(!text.contains("SECRET"), "{text}");
        }
    }

    #[test]
    fn a_client_certificate_needs_a_key() {
        let (_d, ca, _key) = files();
        let o = Overrides::from_args(&KubeArgs {
            client_certificate: Some(ca),
            ..KubeArgs::default()
        })
        .expect("valid alone");
        let mut kc = Kubeconfig::default();
        let Err(err) = o.apply(&mut kc, &target("https://x", true), None, None) else {
            panic!("a certificate without a key was taken");
        };
        assert!(err
            .to_string()
            .starts_with("--client-certificate: needs --client-key"));
        // The kubeconfig user's key completes it.
        let mut kc = Kubeconfig::from_yaml(KC).expect("kubeconfig");
        o.apply(&mut kc, &target("a", false), None, None)
            .expect("key from the kubeconfig");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let o = Overrides {
            token: Some("SECRET".into()),
            ..Overrides::default()
        };
        assert!(!format!("{o:?}").contains("SECRET"));
        assert!(!format!("{:?}", Token("SECRET".into())).contains("SECRET"));
    }
}
