//! What `kubectl mesh-vm` reads from its cluster: the WorkloadGroup, the mesh config and root
//! certificate, the workloads a PeerAuthentication selector would catch, the PeerAuthentications
//! that decide a workload's mTLS mode, the group's WorkloadEntries, and a minted token.

use std::collections::BTreeMap;

use anyhow::Result;
use futures::future::{join, join_all};
use serde_json::Value;

use super::cli::ControlPlaneArgs;
use super::control_plane::{self, Object};
use super::detect::ControlPlane;
use super::entries;
use super::group::Group;
use super::mtls;
use super::token::{self, TokenDuration};
use crate::api::Cluster;
use crate::objects;

/// Reads the group a `files`/`refresh`/`status` command is about from the cluster.
pub(super) async fn fetch_group(cluster: &Cluster, namespace: &str, name: &str) -> Result<Group> {
    let version = cluster.istio_version().await?;
    let kind = objects::istio("WorkloadGroup", &version);
    match cluster.get(&kind, Some(namespace), name).await? {
        Some(obj) => Ok(Group::from_cluster(&obj)?.with_defaults()),
        None => anyhow::bail!(
            "WorkloadGroup {namespace}/{name} not found in context {:?}: create it with `kubectl mesh-vm group {name} -n {namespace} ...`",
            cluster.context
        ),
    }
}

async fn get_configmap(cluster: &Cluster, namespace: &str, name: &str) -> Result<Option<Value>> {
    cluster
        .get(&objects::core("ConfigMap"), Some(namespace), name)
        .await
}

/// The group of `files`: the one `-f` gave (in the cluster's namespace when it names none),
/// else the one named, read from the cluster.
pub(super) async fn files_group(
    cluster: &Cluster,
    file_group: Option<Group>,
    name: &str,
) -> Result<Group> {
    match file_group {
        Some(mut g) => {
            if g.namespace.is_empty() {
                g.namespace = cluster.namespace.clone();
            }
            Ok(g)
        }
        None => fetch_group(cluster, &cluster.namespace, name).await,
    }
}

/// The control plane's mesh ConfigMap (`istio[-REV]` in the Istio namespace) and the mesh
/// config it holds.
pub(super) async fn mesh_config(
    cluster: &Cluster,
    ins: &str,
    rev: Option<&str>,
) -> Result<(Value, Value)> {
    let mesh_cm_name = control_plane::with_revision("istio", rev);
    let mesh_cm = get_configmap(cluster, ins, &mesh_cm_name).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "ConfigMap {ins}/{mesh_cm_name} not found in context {:?}: is Istio installed in {ins} (--istio-namespace)? A revisioned control plane needs --revision",
            cluster.context
        )
    })?;
    let mesh = control_plane::parse_mesh(mesh_cm["data"]["mesh"].as_str().unwrap_or(""))
        .map_err(|e| anyhow::anyhow!("ConfigMap {ins}/{mesh_cm_name}: {e}"))?;
    Ok((mesh_cm, mesh))
}

/// The mesh's root certificate, as istiod writes it into namespace `gns`.
pub(super) async fn root_cert(cluster: &Cluster, gns: &str) -> Result<String> {
    let root = get_configmap(cluster, gns, control_plane::ROOT_CERT_CONFIGMAP).await?;
    root.as_ref()
        .and_then(|cm| cm["data"][control_plane::ROOT_CERT_KEY].as_str())
        .filter(|s| !s.is_empty())
        .map(String::from)
        .ok_or_else(|| {
            let what = if root.is_some() { "has no root-cert.pem key" } else { "not found" };
            anyhow::anyhow!(
                "ConfigMap {} {what} in namespace {gns} (context {:?}): istiod writes it into every namespace it watches, so istiod may not be running, or may not watch {gns} (discoverySelectors)",
                control_plane::ROOT_CERT_CONFIGMAP,
                cluster.context
            )
        })
}

/// The Pods of namespace `ns` that `selector` (as `k=v,...`) matches, and every workload
/// template of the namespace (filtered by the caller), all listed at once.
pub(super) async fn workloads(cluster: &Cluster, ns: &str, selector: &str) -> Result<Vec<Value>> {
    const KINDS: [&str; 6] = [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
    ];
    let pod = objects::core("Pod");
    let kinds: Vec<_> = KINDS.iter().map(|k| objects::workload(k)).collect();
    let pods = cluster.list(&pod, Some(ns), Some(selector));
    let templates = join_all(kinds.iter().map(|k| cluster.list(k, Some(ns), None)));
    let (pods, templates) = join(pods, templates).await;
    let mut found = pods?;
    for listed in templates {
        found.extend(listed?);
    }
    Ok(found)
}

/// Mints the token for the group's ServiceAccount.
pub(super) async fn mint_token(
    cluster: &Cluster,
    group: &Group,
    lifetime: TokenDuration,
) -> Result<token::Minted> {
    let sa = &group.template.service_account;
    let ns = &group.namespace;
    let sa_kind = objects::core("ServiceAccount");
    if cluster.get(&sa_kind, Some(ns), sa).await?.is_none() {
        anyhow::bail!(
            "ServiceAccount {ns}/{sa} not found in context {:?}: the VMs of WorkloadGroup {} run as it; create it (`kubectl mesh-vm group` does)",
            cluster.context,
            group.name
        );
    }
    let body = token::request(ns, sa, lifetime);
    let answer = cluster
        .post_subresource(&sa_kind, ns, sa, "token", &body)
        .await?;
    token::from_response(&answer).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A group as `status` finds it: the WorkloadGroup (when it exists) and the entries that
/// belong to it.
pub(super) struct Entries {
    /// The WorkloadGroup, if it exists.
    pub(super) group: Option<Group>,
    /// Its WorkloadEntries.
    pub(super) entries: Vec<Value>,
}

impl Entries {
    /// Reads WorkloadGroup `name` of namespace `ns` and the WorkloadEntries that belong to it;
    /// an error when there is neither.
    pub(super) async fn read(cluster: &Cluster, ns: &str, name: &str) -> Result<Self> {
        let version = cluster.istio_version().await?;
        let group_kind = objects::istio("WorkloadGroup", &version);
        let entry_kind = objects::istio("WorkloadEntry", &version);
        let (group_obj, listed) = join(
            cluster.get(&group_kind, Some(ns), name),
            cluster.list(&entry_kind, Some(ns), None),
        )
        .await;
        let group_obj = group_obj?;
        let group = match &group_obj {
            Some(obj) => Some(Group::from_cluster(obj)?),
            None => None,
        };
        let group_labels = group.as_ref().map(|g| g.labels.clone()).unwrap_or_default();
        let entries: Vec<Value> = listed?
            .into_iter()
            .filter(|e| entries::belongs(e, name, &group_labels))
            .collect();
        if group_obj.is_none() && entries.is_empty() {
            anyhow::bail!(
                "WorkloadGroup {ns}/{name} not found in context {:?}, and no WorkloadEntry names it",
                cluster.context
            );
        }
        Ok(Entries { group, entries })
    }
}

/// The PeerAuthentications that can decide a workload's mode: its namespace's and the root
/// namespace's (mesh config `rootNamespace`, else the Istio namespace).
pub(super) struct Policies {
    in_namespace: Vec<Value>,
    in_root: Vec<Value>,
}

impl Policies {
    /// Reads them for namespace `ns`.
    pub(super) async fn read(
        cluster: &Cluster,
        ns: &str,
        cp_args: &ControlPlaneArgs,
    ) -> Result<Policies> {
        let version = cluster.security_version().await?;
        let kind = objects::peer_authentication(&version);
        let mut cp = ControlPlane::new(
            cluster,
            &cp_args.istio_namespace,
            cp_args.revision.as_deref(),
        );
        let mesh = match cp.object(Object::Mesh).await? {
            Some(cm) => control_plane::parse_mesh(cm["data"]["mesh"].as_str().unwrap_or(""))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{}: {e}",
                        Object::Mesh
                            .describe(&cp_args.istio_namespace, cp_args.revision.as_deref())
                    )
                })?,
            None => Value::Null,
        };
        let root = mesh["rootNamespace"]
            .as_str()
            .filter(|r| !r.is_empty())
            .unwrap_or(&cp_args.istio_namespace)
            .to_string();
        let in_namespace = cluster.list(&kind, Some(ns), None).await?;
        let in_root = if root == ns {
            in_namespace.clone()
        } else {
            cluster.list(&kind, Some(&root), None).await?
        };
        Ok(Policies {
            in_namespace,
            in_root,
        })
    }

    /// The mode in effect for a workload with `labels`.
    pub(super) fn effective(&self, labels: &BTreeMap<String, String>) -> mtls::Effective {
        mtls::effective(labels, &self.in_namespace, &self.in_root)
    }
}
