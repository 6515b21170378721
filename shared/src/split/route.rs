//! The routes of a VirtualService (http, tcp, tls), their weighted destinations, and which one
//! a split applies to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::istio::{self, VirtualService, VirtualServiceSpec};

/// The three route lists of a VirtualService spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// `spec.http`
    Http,
    /// `spec.tcp`
    Tcp,
    /// `spec.tls`
    Tls,
}

impl RouteKind {
    /// All kinds, in the order routes are listed.
    pub const ALL: [RouteKind; 3] = [RouteKind::Http, RouteKind::Tcp, RouteKind::Tls];

    /// The spec field: `http`, `tcp` or `tls`.
    pub fn field(self) -> &'static str {
        match self {
            RouteKind::Http => "http",
            RouteKind::Tcp => "tcp",
            RouteKind::Tls => "tls",
        }
    }

    fn from_field(s: &str) -> Option<Self> {
        RouteKind::ALL.into_iter().find(|k| k.field() == s)
    }

    /// This kind's route list in `spec`, if it has one.
    pub fn list(self, spec: &VirtualServiceSpec) -> Option<&Vec<istio::Route>> {
        match self {
            RouteKind::Http => spec.http.as_ref(),
            RouteKind::Tcp => spec.tcp.as_ref(),
            RouteKind::Tls => spec.tls.as_ref(),
        }
    }

    /// This kind's route list in `spec`, to change in place.
    pub fn list_mut(self, spec: &mut VirtualServiceSpec) -> Option<&mut Vec<istio::Route>> {
        match self {
            RouteKind::Http => spec.http.as_mut(),
            RouteKind::Tcp => spec.tcp.as_mut(),
            RouteKind::Tls => spec.tls.as_mut(),
        }
    }
}

/// Where a route sits in its VirtualService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRef {
    /// Which list.
    pub kind: RouteKind,
    /// Index in the list.
    pub index: usize,
    /// `name` of an http route, when it has one.
    pub name: Option<String>,
}

impl fmt::Display for RouteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => f.write_str(n),
            None => write!(f, "{}/{}", self.kind.field(), self.index),
        }
    }
}

/// `--route`: an http route's name, or `http/0`, `tcp/1`, `tls/0` by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSelector {
    /// By `name`.
    Name(String),
    /// By list and index.
    At(RouteKind, usize),
}

impl FromStr for RouteSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty route: give an http route's name, or http/0, tcp/0, tls/0".into());
        }
        let positional = s
            .split_once('/')
            .or_else(|| s.strip_suffix(']').and_then(|t| t.split_once('[')));
        if let Some((kind, index)) = positional {
            if let (Some(kind), Ok(index)) = (RouteKind::from_field(kind), index.parse::<usize>()) {
                return Ok(RouteSelector::At(kind, index));
            }
        }
        Ok(RouteSelector::Name(s.to_string()))
    }
}

impl fmt::Display for RouteSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteSelector::Name(n) => f.write_str(n),
            RouteSelector::At(k, i) => write!(f, "{}/{i}", k.field()),
        }
    }
}

impl RouteSelector {
    /// Whether it names `route`.
    pub fn matches(&self, route: &RouteRef) -> bool {
        match self {
            RouteSelector::Name(n) => route.name.as_deref() == Some(n.as_str()),
            RouteSelector::At(k, i) => route.kind == *k && route.index == *i,
        }
    }
}

/// One weighted destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// `destination.host`.
    pub host: String,
    /// `destination.subset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// `destination.port.number`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u64>,
}

impl Destination {
    /// A destination that is just a host.
    pub fn host(host: &str) -> Self {
        Self {
            host: host.to_string(),
            subset: None,
            port: None,
        }
    }

    fn of(route_destination: &istio::RouteDestination) -> Self {
        let d = &route_destination.destination;
        Self {
            host: d.host.clone(),
            subset: d.subset.clone(),
            port: d.port.as_ref().and_then(|p| p.number).map(u64::from),
        }
    }

    /// How a user names it in `NAME=WEIGHT`: the subset, else the host.
    pub fn short_key(&self) -> String {
        self.subset.clone().unwrap_or_else(|| self.host.clone())
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(s) = &self.subset {
            write!(f, " ({s})")?;
        }
        Ok(())
    }
}

/// A route and its destinations with their current weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Where it is.
    pub at: RouteRef,
    /// Destinations in order.
    pub destinations: Vec<Destination>,
    /// Current weight of each destination (a missing weight is 0, or 100 for a lone destination).
    pub weights: Vec<u32>,
}

impl Route {
    /// `host 80, host-gke 20` for messages.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .destinations
            .iter()
            .zip(&self.weights)
            .map(|(d, w)| format!("{d} {w}"))
            .collect();
        parts.join(", ")
    }
}

/// Every route of a VirtualService, http first, then tcp, then tls.
pub fn routes(vs: &VirtualService) -> Vec<Route> {
    let mut out = Vec::new();
    for kind in RouteKind::ALL {
        let Some(list) = kind.list(&vs.spec) else {
            continue;
        };
        for (index, r) in list.iter().enumerate() {
            let rds = r.route.as_deref().unwrap_or_default();
            let destinations: Vec<Destination> = rds.iter().map(Destination::of).collect();
            let lone = rds.len() == 1;
            let weights = rds
                .iter()
                .map(|d| {
                    d.weight
                        .and_then(|w| u32::try_from(w).ok())
                        .unwrap_or(if lone { 100 } else { 0 })
                })
                .collect();
            out.push(Route {
                at: RouteRef {
                    kind,
                    index,
                    name: r.name.clone().filter(|n| !n.is_empty()),
                },
                destinations,
                weights,
            });
        }
    }
    out
}

/// Routes with two or more destinations: the ones a split can change.
pub fn splittable(vs: &VirtualService) -> Vec<Route> {
    routes(vs)
        .into_iter()
        .filter(|r| r.destinations.len() >= 2)
        .collect()
}

/// Why no single route could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// `--route` names nothing.
    NoSuchRoute(String),
    /// No route has two or more destinations.
    NoneSplittable,
    /// Several do and `--route` is missing; their ids.
    Several(Vec<String>),
}

/// The route a split applies to: `--route`, else the only one with two or more destinations.
pub fn select(vs: &VirtualService, selector: Option<&RouteSelector>) -> Result<Route, RouteError> {
    if let Some(sel) = selector {
        let all = routes(vs);
        let ids: Vec<String> = all.iter().map(|r| r.at.to_string()).collect();
        return all.into_iter().find(|r| sel.matches(&r.at)).ok_or_else(|| {
            RouteError::NoSuchRoute(if ids.is_empty() {
                "it has no routes".into()
            } else {
                format!("its routes are {}", ids.join(", "))
            })
        });
    }
    let mut candidates = splittable(vs);
    match candidates.len() {
        0 => Err(RouteError::NoneSplittable),
        1 => Ok(candidates.remove(0)),
        _ => Err(RouteError::Several(
            candidates.iter().map(|r| r.at.to_string()).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn typed(v: Value) -> VirtualService {
        serde_json::from_value(v).expect("a VirtualService")
    }

    fn vs() -> VirtualService {
        typed(json!({"spec": {
            "hosts": ["reviews"],
            "http": [
                {"name": "canary", "match": [{"headers": {"x": {"exact": "1"}}}],
                 "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
                {"route": [
                    {"destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}}, "weight": 90},
                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}
                ]}
            ],
            "tcp": [{"route": [{"destination": {"host": "db"}, "weight": 50}, {"destination": {"host": "db2"}}]}]
        }}))
    }

    #[test]
    fn reads_every_route_with_weights() {
        let all = routes(&vs());
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].at.to_string(), "canary");
        assert_eq!(all[0].weights, vec![100]);
        assert_eq!(all[1].at.to_string(), "http/1");
        assert_eq!(all[1].weights, vec![90, 10]);
        assert_eq!(all[1].destinations[0].to_string(), "reviews:9080 (v1)");
        assert_eq!(all[2].at.to_string(), "tcp/0");
        assert_eq!(all[2].weights, vec![50, 0]);
    }

    #[test]
    fn several_splittable_routes_need_a_selector() {
        assert_eq!(
            select(&vs(), None),
            Err(RouteError::Several(vec!["http/1".into(), "tcp/0".into()]))
        );
        let tcp: RouteSelector = "tcp/0".parse().expect("sel");
        assert_eq!(
            select(&vs(), Some(&tcp)).map(|r| r.weights),
            Ok(vec![50, 0])
        );
        let bracket: RouteSelector = "http[1]".parse().expect("sel");
        assert_eq!(bracket, RouteSelector::At(RouteKind::Http, 1));
        assert!(select(&vs(), Some(&bracket)).is_ok());
        let named: RouteSelector = "canary".parse().expect("sel");
        assert!(select(&vs(), Some(&named)).is_ok());
        let missing: RouteSelector = "nope".parse().expect("sel");
        assert_eq!(
            select(&vs(), Some(&missing)),
            Err(RouteError::NoSuchRoute(
                "its routes are canary, http/1, tcp/0".into()
            ))
        );
        assert_eq!(
            select(&typed(json!({"spec": {"hosts": ["x"]}})), None),
            Err(RouteError::NoneSplittable)
        );
    }

    #[test]
    fn selector_parsing() {
        assert_eq!(
            "tls/2".parse::<RouteSelector>(),
            Ok(RouteSelector::At(RouteKind::Tls, 2))
        );
        assert_eq!(
            "http/x".parse::<RouteSelector>(),
            Ok(RouteSelector::Name("http/x".into()))
        );
        assert!("".parse::<RouteSelector>().is_err());
    }
}
