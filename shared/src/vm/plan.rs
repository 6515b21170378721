//! Each `kubectl mesh-vm` verb's flags checked and turned into what it works from, before any
//! API call: the group (from flags or `-f`) with its namespace, the `--mtls` selector, the
//! control-plane names, the output directory.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Result;

use super::bootstrap::SvcIp;
use super::cli::{ControlPlaneArgs, FilesArgs, GroupArgs, RefreshArgs};
use super::group::{self, Group, Template};
use super::mtls::MtlsMode;
use super::outdir;
use super::probe::Probe;
use crate::cli::{DryRun, KubeArgs};
use crate::duration::HumanDuration;
use crate::error::usage;
use crate::names;
use crate::ports::{self, PortSpec};

/// `-n`, when given, must be a namespace name.
pub(super) fn check_namespace(kube: &KubeArgs) -> Result<()> {
    if let Some(ns) = &kube.namespace {
        names::dns1123_label(ns).map_err(|e| usage("--namespace", e))?;
    }
    Ok(())
}

/// `--revision` and `--istio-namespace` must be names.
pub(super) fn check_control_plane(cp: &ControlPlaneArgs) -> Result<()> {
    if let Some(r) = &cp.revision {
        names::dns1123_label(r).map_err(|e| usage("--revision", e))?;
    }
    names::dns1123_label(&cp.istio_namespace).map_err(|e| usage("--istio-namespace", e))?;
    Ok(())
}

/// `mesh-vm group`, checked.
pub(super) struct GroupPlan {
    /// The group; its namespace is empty when neither `-n` nor the file gives one and the
    /// cluster's is still to be learnt.
    pub(super) group: Group,
    /// With `--mtls`: the mode and the labels its PeerAuthentication selects.
    pub(super) mtls: Option<(MtlsMode, BTreeMap<String, String>)>,
}

impl GroupPlan {
    /// The group from `-f` or from flags. A client dry run contacts no cluster, so its
    /// namespace is the offline one (`-n`, else the kubeconfig's, else `default`).
    pub(super) fn from_args(kube: &KubeArgs, a: &GroupArgs) -> Result<Self> {
        check_control_plane(&a.control_plane)?;
        let namespace = if a.write.dry_run == DryRun::Client {
            kube.offline_namespace()
        } else {
            kube.namespace.clone().unwrap_or_default()
        };
        let group = parse_group(a, &namespace)?;
        let mtls = match a.mtls {
            Some(mode) => Some((mode, mtls_selector(&group)?)),
            None => None,
        };
        Ok(GroupPlan { group, mtls })
    }
}

fn secs(d: Option<HumanDuration>) -> u32 {
    d.map_or(0, |d| u32::try_from(d.0.as_secs()).unwrap_or(u32::MAX))
}

/// The group the flags describe.
pub fn group_from_flags(a: &GroupArgs, name: &str, namespace: &str) -> Result<Group> {
    let all: Vec<PortSpec> = a.ports.iter().flat_map(|l| l.0.clone()).collect();
    ports::check_unique(&all).map_err(|e| usage("--ports", e))?;
    let mut probe = if let Some(h) = &a.probe_http {
        Some(Probe {
            http_get: Some(h.0.clone()),
            ..Probe::default()
        })
    } else if let Some(t) = &a.probe_tcp {
        Some(Probe {
            tcp_socket: Some(t.0.clone()),
            ..Probe::default()
        })
    } else if let Some(g) = &a.probe_grpc {
        Some(Probe {
            grpc: Some(g.0.clone()),
            ..Probe::default()
        })
    } else if let Some(e) = &a.probe_exec {
        Some(Probe {
            exec: Some(e.0.clone()),
            ..Probe::default()
        })
    } else {
        a.probe.as_ref().map(|p| p.0.clone())
    };
    if let Some(p) = probe.as_mut() {
        p.period_seconds = secs(a.probe_period);
        p.initial_delay_seconds = secs(a.probe_initial_delay);
        p.timeout_seconds = secs(a.probe_timeout);
        p.failure_threshold = a.probe_failure_threshold.unwrap_or(0);
        p.success_threshold = a.probe_success_threshold.unwrap_or(0);
    }
    Ok(Group {
        name: name.to_string(),
        namespace: namespace.to_string(),
        labels: names::label_map(&a.labels),
        annotations: names::annotation_map(&a.annotations),
        template: Template {
            ports: all.iter().map(|p| (p.name.clone(), p.number)).collect(),
            service_account: a.service_account.0.clone(),
            network: a.network.as_ref().map(|n| n.0.clone()).unwrap_or_default(),
            locality: a.locality.as_ref().map(|l| l.0.clone()).unwrap_or_default(),
            weight: a.weight.unwrap_or(0),
            labels: BTreeMap::new(),
        },
        probe,
        ..Group::default()
    })
}

/// Reads the group and checks names: from `-f` or from flags.
fn parse_group(a: &GroupArgs, namespace: &str) -> Result<Group> {
    let g = match &a.filename {
        Some(path) => {
            let g = group::from_file(path, namespace)?;
            if !namespace.is_empty() && g.namespace != namespace {
                return Err(usage(
                    "--namespace",
                    format!(
                        "{} puts WorkloadGroup {} in namespace {:?}, not {namespace:?}",
                        path.display(),
                        g.name,
                        g.namespace
                    ),
                ));
            }
            if let Some(n) = &a.name {
                if n.0 != g.name {
                    return Err(usage(
                        "NAME",
                        format!(
                            "{} names WorkloadGroup {:?}, not {:?}",
                            path.display(),
                            g.name,
                            n.0
                        ),
                    ));
                }
            }
            g
        }
        None => {
            let name = a.name.as_ref().map(|n| n.0.as_str()).unwrap_or("");
            group_from_flags(a, name, namespace)?
        }
    };
    Ok(g.with_defaults())
}

/// The labels `--mtls` would select on, refused when there are none: a PeerAuthentication
/// without a selector applies to the whole namespace.
fn mtls_selector(group: &Group) -> Result<BTreeMap<String, String>> {
    let labels = group.workload_labels();
    if labels.is_empty() {
        return Err(usage(
            "--mtls",
            format!(
                "WorkloadGroup {} has no labels (-l): a PeerAuthentication without a selector would apply to every workload of namespace {}",
                group.name, group.namespace
            ),
        ));
    }
    Ok(labels)
}

pub(super) fn selector_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `mesh-vm files`, checked.
pub(super) struct FilesPlan {
    /// The group of `-f`, when given (else it is read from the cluster).
    pub(super) file_group: Option<Group>,
    /// What `--out-dir` holds now.
    pub(super) state: outdir::State,
    /// `--internal-ip` or `--external-ip`.
    pub(super) svc_ip: Option<SvcIp>,
}

impl FilesPlan {
    /// Checks `--cluster-id`, the control plane and `--out-dir`, and reads `-f`.
    pub(super) fn from_args(kube: &KubeArgs, a: &FilesArgs) -> Result<Self> {
        if let Some(id) = &a.cluster_id {
            if id.is_empty() || id.chars().any(char::is_whitespace) {
                return Err(usage(
                    "--cluster-id",
                    "expected a non-empty ID without spaces",
                ));
            }
        }
        check_control_plane(&a.renew.control_plane)?;
        let state = outdir::check(&a.out_dir, a.force)?;
        let file_group = match &a.filename {
            Some(p) => {
                Some(group::from_file(p, kube.namespace.as_deref().unwrap_or(""))?.with_defaults())
            }
            None => None,
        };
        Ok(FilesPlan {
            file_group,
            state,
            svc_ip: svc_ip(a.internal_ip, a.external_ip),
        })
    }
}

fn svc_ip(internal: Option<IpAddr>, external: Option<IpAddr>) -> Option<SvcIp> {
    match (internal, external) {
        (Some(ip), _) => Some(SvcIp::Internal(ip)),
        (None, Some(ip)) => Some(SvcIp::External(ip)),
        _ => None,
    }
}

/// `mesh-vm refresh`: the control plane, and `--out-dir` must be a real directory (`files`
/// made it).
pub(super) fn check_refresh(a: &RefreshArgs) -> Result<()> {
    check_control_plane(&a.renew.control_plane)?;
    check_out_dir(&a.out_dir)
}

fn check_out_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(usage(
            "--out-dir",
            format!(
                "{} is a symbolic link: give the real directory",
                dir.display()
            ),
        )),
        Ok(m) if m.is_dir() => Ok(()),
        _ => Err(usage(
            "--out-dir",
            format!(
                "{} is not a directory written by `kubectl mesh-vm files`: run that first",
                dir.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::cli::{Args, Command};
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let mut v = vec!["kubectl-mesh_vm"];
        v.extend_from_slice(args);
        Args::try_parse_from(v)
    }

    #[test]
    fn both_port_spellings_build_the_same_group() {
        let a = parse(&[
            "group",
            "foo",
            "-p",
            "grpc:3550,http=8080",
            "-l",
            "app=foo",
            "--probe-http",
            "127.0.0.1:8080/",
        ])
        .expect("parse");
        let Command::Group(g) = a.command else {
            panic!("group")
        };
        let group = group_from_flags(&g, "foo", "bar").expect("group");
        assert_eq!(group.template.ports.get("grpc"), Some(&3550));
        assert_eq!(group.template.ports.get("http"), Some(&8080));
        assert_eq!(group.template.service_account, "default");
    }
}
