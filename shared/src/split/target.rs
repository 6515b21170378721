//! TARGET: which VirtualService a split applies to (`vs/NAME`, or a host its `hosts` contain),
//! and the candidates when none is named.

use std::fmt;
use std::str::FromStr;

use super::route::{self, Route};
use super::weights::slash;
use crate::istio::VirtualService;
use crate::names;

/// What the user named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `vs/NAME`: a VirtualService by name.
    Vs(String),
    /// A host: `productcatalogservice` or its FQDN.
    Host(String),
}

const VS_PREFIXES: [&str; 4] = [
    "vs/",
    "virtualservice/",
    "virtualservices/",
    "virtualservice.networking.istio.io/",
];

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        if let Some(p) = VS_PREFIXES.iter().find(|p| lower.starts_with(*p)) {
            let name = &s[p.len()..];
            names::dns1123_subdomain(name)
                .map_err(|e| format!("{e}: expected vs/NAME or a host"))?;
            return Ok(Target::Vs(name.to_string()));
        }
        if s.contains('/') {
            return Err(format!(
                "{s:?} is neither vs/NAME nor a host (weights go after TARGET)"
            ));
        }
        let bare = s.strip_prefix("*.").unwrap_or(s);
        names::dns1123_subdomain(&bare.to_ascii_lowercase()).map_err(|e| {
            format!("{e}: expected vs/NAME or a host such as productcatalogservice")
        })?;
        Ok(Target::Host(lower))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Vs(n) => write!(f, "vs/{n}"),
            Target::Host(h) => f.write_str(h),
        }
    }
}

/// A host as Istio reads it in a VirtualService of `namespace`: short names are expanded.
pub fn canonical_host(host: &str, namespace: &str) -> String {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if !h.contains('.') {
        return format!("{h}.{namespace}.svc.cluster.local");
    }
    if h.ends_with(".svc") {
        return format!("{h}.cluster.local");
    }
    h
}

/// The VirtualService's `spec.hosts`.
pub fn hosts(vs: &VirtualService) -> Vec<String> {
    vs.spec.hosts.clone().unwrap_or_default()
}

/// Whether `vs` is what `target` names.
pub fn matches(vs: &VirtualService, target: &Target, namespace: &str) -> bool {
    match target {
        Target::Vs(name) => vs.name() == name,
        Target::Host(h) => {
            let want = canonical_host(h, namespace);
            hosts(vs)
                .iter()
                .any(|x| canonical_host(x, namespace) == want)
        }
    }
}

/// A VirtualService that can be split, as the pick-list and error messages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `metadata.name`.
    pub name: String,
    /// `spec.hosts`.
    pub hosts: Vec<String>,
    /// Its routes with two or more destinations.
    pub routes: Vec<Route>,
}

impl Candidate {
    /// The candidate for `vs`, if it has a route with two or more destinations.
    pub fn of(vs: &VirtualService) -> Option<Self> {
        let routes = route::splittable(vs);
        if routes.is_empty() {
            return None;
        }
        Some(Self {
            name: vs.name().to_string(),
            hosts: hosts(vs),
            routes,
        })
    }

    /// One line: `productcatalog-migration  hosts productcatalogservice  100/0 (a, b)`.
    pub fn line(&self) -> String {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                let dests: Vec<String> = r.destinations.iter().map(|d| d.to_string()).collect();
                let id = if self.routes.len() > 1 {
                    format!("{}: ", r.at)
                } else {
                    String::new()
                };
                format!("{id}{} ({})", slash(&r.weights), dests.join(", "))
            })
            .collect();
        format!(
            "vs/{}  hosts {}  {}",
            self.name,
            self.hosts.join(","),
            routes.join("; ")
        )
    }
}

/// The splittable VirtualServices among `vss`, by name.
pub fn candidates(vss: &[VirtualService]) -> Vec<Candidate> {
    let mut c: Vec<Candidate> = vss.iter().filter_map(Candidate::of).collect();
    c.sort_by(|a, b| a.name.cmp(&b.name));
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn typed(v: Value) -> VirtualService {
        serde_json::from_value(v).expect("a VirtualService")
    }

    #[test]
    fn parses_vs_names_and_hosts() {
        assert_eq!("vs/a".parse(), Ok(Target::Vs("a".into())));
        assert_eq!(
            "virtualservice.networking.istio.io/a-b".parse(),
            Ok(Target::Vs("a-b".into()))
        );
        assert_eq!("VirtualService/a".parse(), Ok(Target::Vs("a".into())));
        assert_eq!(
            "ProductCatalogService".parse(),
            Ok(Target::Host("productcatalogservice".into()))
        );
        assert_eq!(
            "*.example.com".parse(),
            Ok(Target::Host("*.example.com".into()))
        );
        for bad in ["vs/", "vs/A_B", "80/20", "a b", "svc/x", "-x"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn short_names_and_fqdns_match_each_other() {
        let vs =
            typed(json!({"metadata": {"name": "m"}, "spec": {"hosts": ["productcatalogservice"]}}));
        let ns = "default";
        for t in [
            "productcatalogservice",
            "productcatalogservice.default.svc.cluster.local",
            "productcatalogservice.default.svc",
            "vs/m",
        ] {
            assert!(matches(&vs, &t.parse().expect("target"), ns), "{t}");
        }
        for t in [
            "productcatalogservice.other.svc.cluster.local",
            "catalog",
            "vs/n",
        ] {
            assert!(!matches(&vs, &t.parse().expect("target"), ns), "{t}");
        }
        let fqdn = typed(json!({"spec": {"hosts": ["reviews.default.svc.cluster.local"]}}));
        assert!(matches(&fqdn, &Target::Host("reviews".into()), ns));
        assert!(!matches(&fqdn, &Target::Host("reviews".into()), "prod"));
    }

    #[test]
    fn candidates_show_current_weights() {
        let vss: Vec<VirtualService> = [
            json!({"metadata": {"name": "b"}, "spec": {"hosts": ["y"], "http": [{"route": [
                {"destination": {"host": "y"}, "weight": 100},
                {"destination": {"host": "y-gke"}, "weight": 0}]}]}}),
            json!({"metadata": {"name": "single"}, "spec": {"hosts": ["z"], "http": [{"route": [
                {"destination": {"host": "z"}}]}]}}),
            json!({"metadata": {"name": "a"}, "spec": {"hosts": ["x"], "tcp": [{"route": [
                {"destination": {"host": "x1"}, "weight": 50},
                {"destination": {"host": "x2"}, "weight": 50}]}]}}),
        ]
        .into_iter()
        .map(typed)
        .collect();
        let c = candidates(&vss);
        let lines: Vec<String> = c.iter().map(Candidate::line).collect();
        assert_eq!(
            lines,
            vec![
                "vs/a  hosts x  50/50 (x1, x2)".to_string(),
                "vs/b  hosts y  100/0 (y, y-gke)".to_string(),
            ]
        );
    }
}
