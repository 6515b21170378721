//! One cluster's VirtualService and the route being split (a "site"), and the faults of one
//! site that stop a run before any write: no such route, several split routes, a route list
//! another tool owns.

use anyhow::{anyhow, Result};
use serde_json::Value;

use super::build;
use super::ownership::{self, Decision};
use super::plan::Create;
use super::route::{Destination, Route, RouteError, RouteKind, RouteRef};
use crate::api::Cluster;
use crate::error::usage;
use crate::istio::VirtualService;
use crate::objects::Kind;

/// One cluster's VirtualService and the route being split.
pub(super) struct Site {
    pub(super) cluster: Cluster,
    pub(super) kind: Kind,
    pub(super) namespace: String,
    pub(super) name: String,
    /// As last read or written; `None` while it is still to be created.
    pub(super) live: Option<VirtualService>,
    /// The route with its current weights.
    pub(super) route: Route,
    /// Weights before the command (`None`: created by it).
    pub(super) start: Option<Vec<u32>>,
    /// The route list's owners, for the next write.
    pub(super) decision: Decision,
}

impl Site {
    /// A VirtualService as read, with the route chosen in it; `force` is `--force-conflicts`.
    pub(super) fn existing(
        cluster: Cluster,
        kind: Kind,
        vs: VirtualService,
        route: Route,
        force: bool,
    ) -> Self {
        let decision = ownership::decide(&vs, route.at.kind, force);
        Site {
            name: vs.name().to_string(),
            start: Some(route.weights.clone()),
            live: Some(vs),
            route,
            decision,
            namespace: cluster.namespace.clone(),
            cluster,
            kind,
        }
    }

    /// A VirtualService `--create` is to make: one http route to the `--to` hosts.
    pub(super) fn to_create(cluster: Cluster, kind: Kind, c: &Create) -> Self {
        Site {
            name: c.name.clone(),
            start: None,
            live: None,
            route: Route {
                at: RouteRef {
                    kind: RouteKind::Http,
                    index: 0,
                    name: None,
                },
                destinations: c.to.iter().map(|h| Destination::host(h)).collect(),
                weights: Vec::new(),
            },
            decision: Decision::Free,
            namespace: cluster.namespace.clone(),
            cluster,
            kind,
        }
    }

    /// The context name.
    pub(super) fn context(&self) -> &str {
        &self.cluster.context
    }

    /// `VirtualService NS/NAME in context CTX`, for messages.
    pub(super) fn describe(&self) -> String {
        format!(
            "VirtualService {}/{} in context {}",
            self.namespace,
            self.name,
            self.context()
        )
    }

    /// The object to apply for `weights` with the previous-weights annotation `previous`.
    pub(super) fn desired(
        &self,
        weights: &[u32],
        previous: Option<&str>,
        create: Option<&Create>,
    ) -> Value {
        match (&self.live, create) {
            (Some(live), _) => build::weights_object(live, &self.route.at, weights, previous),
            (None, Some(c)) => build::created_object(
                &self.kind.version,
                &self.namespace,
                &c.name,
                &c.host,
                &c.to,
                weights,
            ),
            // Unreachable: a site without an object always comes from --create.
            (None, None) => Value::Null,
        }
    }
}

/// `namespace/name` of an object.
pub(super) fn ns_name(obj: &VirtualService) -> String {
    format!("{}/{}", obj.namespace().unwrap_or(""), obj.name())
}

/// The usage error for a route that cannot be chosen in `vs`.
pub(super) fn route_error(e: RouteError, vs: &VirtualService, context: &str) -> anyhow::Error {
    let what = format!("VirtualService {} in context {context}", ns_name(vs));
    match e {
        RouteError::NoSuchRoute(routes) => {
            usage("--route", format!("no such route in {what}: {routes}"))
        }
        RouteError::NoneSplittable => usage(
            "TARGET",
            format!("{what} has no route with two or more destinations: nothing to split"),
        ),
        RouteError::Several(ids) => usage(
            "--route",
            format!(
                "{what} has several routes with two or more destinations ({}): pass --route",
                ids.join(", ")
            ),
        ),
    }
}

/// Refuses a route list another tool owns (checked while validating, before any output).
pub(super) fn refuse_foreign_owner(site: &Site) -> Result<()> {
    let Decision::Refuse(from) = &site.decision else {
        return Ok(());
    };
    Err(anyhow!(
        "{}: spec.{} is managed by {}: change the weights where {} gets them from, or pass --force-conflicts to take them over",
        site.describe(),
        site.route.at.kind.field(),
        from.join(", "),
        if from.len() == 1 { "it" } else { "they" }
    ))
}
