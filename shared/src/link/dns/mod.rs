//! The `global` stub domain of a calling cluster: a marked `global:53` server block in the
//! CoreDNS Corefile (or, on AKS, a server block key of `coredns-custom`), or a `global` entry in
//! kube-dns `stubDomains`, pointing at istiocoredns. This module owns which flavor a cluster
//! runs and where its stub domain points; the changes are `setup` and `undo`, written by `apply`.
//!
//! Only the `global` part is touched; every other key and block stays as it is. The first setup
//! keeps the original value in an annotation, and undo takes out exactly what setup put in.

mod apply;
mod corefile;
mod setup;
mod undo;

pub use apply::apply;
pub use corefile::block;
pub use setup::setup;
pub use undo::undo;

use anyhow::Result;
use serde_json::Value;

use crate::api::Cluster;
use crate::objects;
use corefile::corefile_target;

/// Namespace of the cluster DNS ConfigMaps.
pub const NAMESPACE: &str = "kube-system";
/// CoreDNS's ConfigMap.
pub const COREDNS: &str = "coredns";
/// kube-dns's ConfigMap.
pub const KUBE_DNS: &str = "kube-dns";
/// AKS's ConfigMap for additions to its managed CoreDNS, whose own `coredns` ConfigMap the
/// addon manager puts back.
pub const COREDNS_CUSTOM: &str = "coredns-custom";
/// The key of our server block in `coredns-custom` (AKS imports every key ending in `.server`).
pub const CUSTOM_KEY: &str = "kubectl-mesh-global.server";
/// Annotation holding the original value of the changed key (JSON: `{"KEY": "text" | null}`).
pub const BACKUP_ANNOTATION: &str = "kubectl-mesh/dns-original";

/// Which DNS server the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// CoreDNS: a server block in `Corefile`.
    CoreDns,
    /// kube-dns: `stubDomains`.
    KubeDns,
    /// AKS: the key [`CUSTOM_KEY`] of `coredns-custom`.
    CoreDnsCustom,
}

impl Flavor {
    /// The ConfigMap to change.
    pub fn configmap(self) -> &'static str {
        match self {
            Flavor::CoreDns => COREDNS,
            Flavor::KubeDns => KUBE_DNS,
            Flavor::CoreDnsCustom => COREDNS_CUSTOM,
        }
    }
}

/// AKS's `coredns-custom` when it exists (an edit of `coredns` would be reverted there);
/// else CoreDNS when its ConfigMap has a Corefile; kube-dns otherwise.
pub fn flavor(coredns: Option<&Value>, custom: Option<&Value>) -> Flavor {
    match (coredns, custom) {
        (_, Some(_)) => Flavor::CoreDnsCustom,
        (Some(cm), None) if cm["data"]["Corefile"].is_string() => Flavor::CoreDns,
        _ => Flavor::KubeDns,
    }
}

/// Reads the DNS flavor of a cluster and the ConfigMap it keeps the stub domain in.
pub async fn read(cluster: &Cluster) -> Result<(Flavor, Option<Value>)> {
    let cm = objects::core("ConfigMap");
    let custom = cluster.get(&cm, Some(NAMESPACE), COREDNS_CUSTOM).await?;
    let coredns = match custom {
        Some(_) => None,
        None => cluster.get(&cm, Some(NAMESPACE), COREDNS).await?,
    };
    let fl = flavor(coredns.as_ref(), custom.as_ref());
    let current = match fl {
        Flavor::CoreDns => coredns,
        Flavor::CoreDnsCustom => custom,
        Flavor::KubeDns => cluster.get(&cm, Some(NAMESPACE), KUBE_DNS).await?,
    };
    Ok((fl, current))
}

/// The IP the `global` domain forwards to, as configured: CoreDNS `forward`/`proxy` in a
/// `global` block, or kube-dns `stubDomains.global`. `None` when no stub domain is set.
pub fn configured_target(flavor: Flavor, cm: Option<&Value>) -> Option<Vec<String>> {
    let cm = cm?;
    match flavor {
        Flavor::CoreDns => corefile_target(cm["data"]["Corefile"].as_str()?),
        Flavor::CoreDnsCustom => cm["data"]
            .as_object()?
            .iter()
            .filter(|(k, _)| k.ends_with(".server"))
            .find_map(|(_, v)| corefile_target(v.as_str()?)),
        Flavor::KubeDns => {
            let stub: Value = serde_json::from_str(cm["data"]["stubDomains"].as_str()?).ok()?;
            stub["global"].as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
        }
    }
}

/// A copy to change and write back, without `managedFields` (a write may not send them).
fn clean(cm: &Value) -> Value {
    objects::for_display(cm.clone())
}

#[cfg(test)]
mod tests;
