//! What the VM files need from the Istio control plane: the mesh config, the cluster ID and where
//! each comes from (ConfigMaps `istio[-REV]`, `istio-sidecar-injector[-REV]`, Deployment `istiod[-REV]`).

use std::fmt;

use serde_json::Value;

use crate::vm::bootstrap::revisioned;

/// The cluster ID Istio uses when nothing else says otherwise.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";
/// The ConfigMap istiod copies the root certificate into, in every namespace.
pub const ROOT_CERT_CONFIGMAP: &str = "istio-ca-root-cert";
/// Its key.
pub const ROOT_CERT_KEY: &str = "root-cert.pem";

/// `NAME` or `NAME-REV`.
pub fn with_revision(name: &str, revision: Option<&str>) -> String {
    match revisioned(revision) {
        Some(r) => format!("{name}-{r}"),
        None => name.to_string(),
    }
}

/// Where the cluster ID came from; printed so the user can tell a guess from a fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterIdSource {
    /// `--cluster-id`.
    Flag,
    /// `global.multiCluster.clusterName` in ConfigMap NS/NAME.
    Injector(String),
    /// The `CLUSTER_ID` env of Deployment NS/NAME.
    Istiod(String),
    /// Nothing set one: Istio's default.
    Default,
}

impl fmt::Display for ClusterIdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterIdSource::Flag => f.write_str("from --cluster-id"),
            ClusterIdSource::Injector(cm) => {
                write!(f, "from global.multiCluster.clusterName in ConfigMap {cm}")
            }
            ClusterIdSource::Istiod(d) => write!(f, "from the CLUSTER_ID env of Deployment {d}"),
            ClusterIdSource::Default => f.write_str(
                "Istio's default: no --cluster-id, no global.multiCluster.clusterName, no CLUSTER_ID on istiod",
            ),
        }
    }
}

/// `global.multiCluster.clusterName` from the injector's `values` (JSON); `None` when unset or empty.
pub fn cluster_id_from_values(values: &str) -> Result<Option<String>, String> {
    let v: Value =
        serde_json::from_str(values).map_err(|e| format!("key values is not JSON: {e}"))?;
    Ok(v.pointer("/global/multiCluster/clusterName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from))
}

/// The `CLUSTER_ID` env of istiod's `discovery` container (else of any container).
pub fn cluster_id_from_istiod(deployment: &Value) -> Option<String> {
    let containers = deployment
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)?;
    let mut ordered: Vec<&Value> = containers
        .iter()
        .filter(|c| c["name"] == "discovery")
        .collect();
    ordered.extend(containers.iter().filter(|c| c["name"] != "discovery"));
    ordered.iter().find_map(|c| {
        c["env"].as_array()?.iter().find_map(|e| {
            (e["name"] == "CLUSTER_ID")
                .then(|| e["value"].as_str())
                .flatten()
                .filter(|v| !v.is_empty())
                .map(String::from)
        })
    })
}

/// Parses the `mesh` key of ConfigMap `istio[-REV]`.
pub fn parse_mesh(text: &str) -> Result<Value, String> {
    let v: Value =
        serde_yaml::from_str(text).map_err(|e| format!("key mesh is not valid YAML: {e}"))?;
    match v {
        Value::Null => Ok(Value::Object(Default::default())),
        Value::Object(_) => Ok(v),
        _ => Err("key mesh is not a mapping".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cluster_id_sources() {
        assert_eq!(
            cluster_id_from_values(r#"{"global":{"multiCluster":{"clusterName":"c1"}}}"#),
            Ok(Some("c1".into()))
        );
        assert_eq!(
            cluster_id_from_values(r#"{"global":{"multiCluster":{"clusterName":""}}}"#),
            Ok(None)
        );
        assert!(cluster_id_from_values("{").is_err());
        let d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "env": [{"name": "CLUSTER_ID", "value": "wrong"}]},
            {"name": "discovery", "env": [{"name": "X"}, {"name": "CLUSTER_ID", "value": "c2"}]}
        ]}}}});
        assert_eq!(cluster_id_from_istiod(&d), Some("c2".into()));
        assert_eq!(cluster_id_from_istiod(&json!({})), None);
    }

    #[test]
    fn names_with_revisions() {
        assert_eq!(with_revision("istio", None), "istio");
        assert_eq!(with_revision("istio", Some("default")), "istio");
        assert_eq!(with_revision("istio", Some("canary")), "istio-canary");
    }
}
