//! Metric-gated steps, as planned: the check flags (`--max-error-rate`, `--max-p99`,
//! `--min-requests`), their validation against the other flags, and their PromQL on Istio's
//! standard metrics. Running them between steps is `gate.rs`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use clap::Args as ClapArgs;

use super::route::Destination;
use crate::duration::HumanDuration;
use crate::error::usage;
use crate::prom::Endpoint;

/// The check flags of a walk.
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct CheckArgs {
    /// With --steps and --prometheus: the highest 5xx share of the destination gaining traffic, e.g. 1% or 0.5%
    #[arg(long, value_name = "PERCENT")]
    pub max_error_rate: Option<Percent>,

    /// With --steps and --prometheus: the highest p99 latency of the destination gaining traffic, e.g. 500ms
    #[arg(long, value_name = "DURATION")]
    pub max_p99: Option<HumanDuration>,

    /// With --steps and --prometheus: fewer requests than this over the window is no evidence [default: 1]
    #[arg(long, value_name = "N")]
    pub min_requests: Option<u64>,

    /// With --min-requests: continue when traffic stays too low, instead of failing
    #[arg(long)]
    pub allow_no_traffic: bool,
}

/// A percentage as typed (`1%`, `0.5%`), kept as a fraction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

impl FromStr for Percent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let accepted =
            || format!("{s:?}: expected a percentage from 0% to 100%, such as 1% or 0.5%");
        let n = s
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite() && (0.0..=100.0).contains(n))
            .ok_or_else(accepted)?;
        Ok(Self(n / 100.0))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", trim_float(self.0 * 100.0))
    }
}

/// `1.50` → `1.5`, `2.00` → `2`: thresholds read back as the user typed them.
fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The validated checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Checks {
    /// `--max-error-rate`.
    pub max_error_rate: Option<Percent>,
    /// `--max-p99`.
    pub max_p99: Option<Duration>,
    /// `--min-requests` (1 without the flag: no request is no evidence).
    pub min_requests: u64,
    /// `--allow-no-traffic`.
    pub allow_no_traffic: bool,
}

/// The checks of a walk and where to run them.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// What must hold.
    pub checks: Checks,
    /// One Prometheus for every context, or one per context in `--context` order.
    pub endpoints: Vec<Endpoint>,
    /// The range of `rate()`/`increase()`: `--window`, else the interval.
    pub window: Duration,
}

impl CheckArgs {
    fn given(&self) -> Option<&'static str> {
        if self.max_error_rate.is_some() {
            Some("--max-error-rate")
        } else if self.max_p99.is_some() {
            Some("--max-p99")
        } else if self.min_requests.is_some() {
            Some("--min-requests")
        } else if self.allow_no_traffic {
            Some("--allow-no-traffic")
        } else {
            None
        }
    }

    /// Validates the checks against the other flags; `None` when the walk is not gated.
    pub fn plan(
        &self,
        endpoints: Vec<Endpoint>,
        contexts: usize,
        steps: bool,
        interval: Duration,
        window: Option<Duration>,
    ) -> Result<Option<Box<Analysis>>> {
        match (self.given(), endpoints.is_empty()) {
            (None, true) => return Ok(None),
            (Some(flag), true) => {
                return Err(usage(flag, "needs --prometheus URL to check against"))
            }
            (None, false) => {
                return Err(usage(
                    "--prometheus",
                    "give the checks to run: --max-error-rate, --max-p99 and/or --min-requests",
                ))
            }
            (Some(_), false) => {}
        }
        if !steps {
            return Err(usage(
                "--prometheus",
                "the checks run between steps: give --steps (or use status --traffic to look)",
            ));
        }
        let contexts = contexts.max(1);
        one_per_context(endpoints.len(), contexts)?;
        if self.max_p99.is_some_and(|d| d.0.is_zero()) {
            return Err(usage("--max-p99", "must be more than 0"));
        }
        if self.min_requests == Some(0) {
            return Err(usage("--min-requests", "must be 1 or more"));
        }
        let window = window.unwrap_or(interval);
        if window < Duration::from_secs(1) {
            return Err(usage(
                "--window",
                format!(
                    "the checks' range is {}: it must be 1s or more (--window, else --interval)",
                    HumanDuration(window)
                ),
            ));
        }
        Ok(Some(Box::new(Analysis {
            checks: Checks {
                max_error_rate: self.max_error_rate,
                max_p99: self.max_p99.map(|d| d.0),
                min_requests: self.min_requests.unwrap_or(1),
                allow_no_traffic: self.allow_no_traffic,
            },
            endpoints,
            window,
        })))
    }
}

/// The label matchers of a destination as Istio labels its metrics. A short name is a
/// Kubernetes Service of the route's namespace; `NAME.NS.svc...` names one elsewhere; any
/// other host (a ServiceEntry host such as the VM's, or a `.global` host) is the
/// `destination_service` label itself. A subset is matched by `destination_version`, after
/// Istio's convention of naming subsets after the workloads' `version` label.
pub fn selector(dest: &Destination, namespace: &str) -> String {
    let host = dest.host.trim_end_matches('.');
    let parts: Vec<&str> = host.split('.').collect();
    let mut sel = if parts.len() == 1 {
        format!("destination_service_name=\"{host}\",destination_service_namespace=\"{namespace}\"")
    } else if parts.len() >= 3 && parts[2] == "svc" {
        format!(
            "destination_service_name=\"{}\",destination_service_namespace=\"{}\"",
            parts[0], parts[1]
        )
    } else {
        format!("destination_service=\"{host}\"")
    };
    if let Some(s) = &dest.subset {
        sel.push_str(&format!(",destination_version=\"{s}\""));
    }
    sel
}

/// The PromQL of one destination over one window. `reporter="source"`: a split is applied by
/// the calling sidecar, so the caller's report is the traffic the weights moved, and it counts
/// the failures of a destination that never answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queries {
    /// Requests over the window.
    pub requests: String,
    /// 5xx share of the requests.
    pub error_rate: String,
    /// p99 latency in milliseconds.
    pub p99: String,
}

impl Queries {
    /// The queries for `selector` over `window` (whole seconds, rounded up).
    pub fn new(selector: &str, window: Duration) -> Self {
        let secs = window.as_millis().div_ceil(1000).max(1);
        let all = format!("istio_requests_total{{reporter=\"source\",{selector}}}");
        let errors = format!(
            "istio_requests_total{{reporter=\"source\",{selector},response_code=~\"5..\"}}"
        );
        let buckets =
            format!("istio_request_duration_milliseconds_bucket{{reporter=\"source\",{selector}}}");
        Self {
            requests: format!("sum(increase({all}[{secs}s]))"),
            error_rate: format!(
                "(sum(rate({errors}[{secs}s])) or vector(0)) / sum(rate({all}[{secs}s]))"
            ),
            p99: format!("histogram_quantile(0.99, sum by (le) (rate({buckets}[{secs}s])))"),
        }
    }
}

/// `--prometheus` is given once for every context, or once per `--context` in the same order.
pub fn one_per_context(given: usize, contexts: usize) -> Result<()> {
    if given != 1 && given != contexts {
        return Err(usage(
            "--prometheus",
            format!(
                "given {given} times for {contexts} contexts: give one for all, or one per --context in the same order"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse_or_say_what_is_accepted() {
        assert_eq!("1%".parse::<Percent>(), Ok(Percent(0.01)));
        assert_eq!(
            "0.5%".parse::<Percent>().map(|p| p.to_string()),
            Ok("0.5%".into())
        );
        for bad in ["1", "x%", "101%", "-1%", "NaN%"] {
            let e = bad.parse::<Percent>().unwrap_err();
            assert!(e.contains("expected a percentage"), "{bad}: {e}");
        }
    }

    #[test]
    fn hosts_are_matched_as_istio_labels_them() {
        let default_ns = [
            ("productcatalogservice-gke", "destination_service_name=\"productcatalogservice-gke\",destination_service_namespace=\"default\""),
            ("reviews.shop.svc.cluster.local", "destination_service_name=\"reviews\",destination_service_namespace=\"shop\""),
            ("productcatalogservice-gke.default.global", "destination_service=\"productcatalogservice-gke.default.global\""),
            ("vm.example.internal", "destination_service=\"vm.example.internal\""),
        ];
        for (host, want) in default_ns {
            assert_eq!(
                selector(&Destination::host(host), "default"),
                want,
                "{host}"
            );
        }
    }

    #[test]
    fn queries_use_istio_standard_metrics() {
        let q = Queries::new(
            "destination_service=\"a.b.global\"",
            Duration::from_millis(1500),
        );
        insta::assert_yaml_snapshot!(q_yaml(&q));
    }

    fn q_yaml(q: &Queries) -> Vec<String> {
        vec![q.requests.clone(), q.error_rate.clone(), q.p99.clone()]
    }

    #[test]
    fn flags_need_each_other() {
        let none = CheckArgs::default();
        assert_eq!(
            none.plan(Vec::new(), 1, true, Duration::from_secs(1), None)
                .ok(),
            Some(None)
        );
        let c = CheckArgs {
            max_error_rate: Some(Percent(0.01)),
            ..CheckArgs::default()
        };
        let e = c
            .plan(Vec::new(), 1, true, Duration::from_secs(1), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--max-error-rate: needs --prometheus URL to check against"
        );
    }
}
