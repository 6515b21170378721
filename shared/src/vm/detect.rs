//! Reads control-plane settings (cluster ID, network) through the lookup chains of
//! `control_plane`, fetching each control-plane object at most once per command.

use std::collections::HashMap;

use anyhow::Result;
use serde_json::Value;

use crate::api::Cluster;
use crate::objects;
use crate::vm::control_plane::{self, Lookup, Object, Source};

/// The Istio control plane of one cluster, read lazily.
pub struct ControlPlane<'a> {
    cluster: &'a Cluster,
    /// The namespace istiod runs in.
    pub namespace: String,
    /// The control-plane revision, if any.
    pub revision: Option<String>,
    cache: HashMap<Object, Option<Value>>,
}

/// The cluster's network as detected: `name` empty when no source sets one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNetwork {
    /// The network name ("" for none).
    pub name: String,
    /// Where it came from, or what was looked at when nothing set one.
    pub source: String,
}

impl std::fmt::Display for ClusterNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name.is_empty() {
            write!(f, "none set ({}): one network", self.source)
        } else {
            write!(f, "{} ({})", self.name, self.source)
        }
    }
}

impl<'a> ControlPlane<'a> {
    /// A reader of the control plane in `namespace` (revision `revision`).
    pub fn new(cluster: &'a Cluster, namespace: &str, revision: Option<&str>) -> Self {
        Self {
            cluster,
            namespace: namespace.to_string(),
            revision: revision.map(String::from),
            cache: HashMap::new(),
        }
    }

    /// Hands over an object the command already read, so it is not read twice.
    pub fn preload(&mut self, which: Object, obj: Option<Value>) {
        self.cache.insert(which, obj);
    }

    /// The object, read on first use; `None` when it does not exist.
    pub async fn object(&mut self, which: Object) -> Result<Option<&Value>> {
        if !self.cache.contains_key(&which) {
            let name = which.name(&self.namespace, self.revision.as_deref());
            let obj = match which {
                Object::Namespace => {
                    self.cluster
                        .get(&objects::core("Namespace"), None, &name)
                        .await?
                }
                Object::Injector | Object::Mesh => {
                    self.cluster
                        .get(&objects::core("ConfigMap"), Some(&self.namespace), &name)
                        .await?
                }
                Object::Istiod => {
                    self.cluster
                        .get(&objects::deployment(), Some(&self.namespace), &name)
                        .await?
                }
            };
            self.cache.insert(which, obj);
        }
        Ok(self.cache.get(&which).and_then(Option::as_ref))
    }

    /// One lookup: the value and its source, or `None` when the object or the value is absent.
    async fn lookup(&mut self, l: Lookup, cluster_id: &str) -> Result<Option<(String, Source)>> {
        let ns = self.namespace.clone();
        let rev = self.revision.clone();
        let Some(obj) = self.object(l.object()).await? else {
            return Ok(None);
        };
        let found = l
            .find(obj, cluster_id)
            .map_err(|e| anyhow::anyhow!("{}: {e}", l.object().describe(&ns, rev.as_deref())))?;
        Ok(found.map(|v| (v, l.source(&ns, rev.as_deref(), cluster_id))))
    }

    /// The cluster ID: `flag` (named `--cluster-id`), else the first lookup of
    /// [`control_plane::CLUSTER_ID`] that finds one, else Istio's default.
    pub async fn cluster_id(&mut self, flag: Option<&str>) -> Result<(String, Source)> {
        if let Some(id) = flag {
            return Ok((id.to_string(), Source::flag("--cluster-id")));
        }
        for l in control_plane::CLUSTER_ID {
            if let Some(found) = self.lookup(*l, "").await? {
                return Ok(found);
            }
        }
        Ok((
            control_plane::DEFAULT_CLUSTER_ID.to_string(),
            Source(control_plane::CLUSTER_ID_DEFAULT.to_string()),
        ))
    }

    /// The cluster's network: the first lookup of [`control_plane::NETWORK`] that finds one.
    /// `cluster_id` is needed only for `meshNetworks`; when `None` it is detected then.
    pub async fn network(&mut self, cluster_id: Option<&str>) -> Result<ClusterNetwork> {
        let mut id = cluster_id.map(String::from);
        let mut missing = Vec::new();
        for l in control_plane::NETWORK {
            if *l == Lookup::MeshNetworks && id.is_none() {
                id = Some(self.cluster_id(None).await?.0);
            }
            let cid = id.clone().unwrap_or_default();
            if let Some((name, source)) = self.lookup(*l, &cid).await? {
                return Ok(ClusterNetwork {
                    name,
                    source: source.to_string(),
                });
            }
            missing.push(l.missing(&self.namespace, self.revision.as_deref(), &cid));
        }
        Ok(ClusterNetwork {
            name: String::new(),
            source: missing.join(", "),
        })
    }
}
