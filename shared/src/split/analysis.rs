//! Metric-gated steps: the checks (`--max-error-rate`, `--max-p99`, `--min-requests`), their
//! PromQL on Istio's standard metrics, and the verdict before each next step in every cluster.

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use clap::Args as ClapArgs;

use super::route::Destination;
use super::steps::Interrupt;
use crate::duration::HumanDuration;
use crate::error::usage;
use crate::prom::{Endpoint, Prometheus};
use crate::Io;

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

/// One destination to check in one cluster.
#[derive(Debug, Clone)]
pub struct Watched {
    /// As shown (host and subset).
    pub name: String,
    /// Its queries.
    pub queries: Queries,
}

/// One cluster's checks: its Prometheus and the destinations gaining traffic.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The context.
    pub context: String,
    /// Its Prometheus.
    pub prom: Prometheus,
    /// The destinations whose weight grows over the walk.
    pub watched: Vec<Watched>,
}

impl Gate {
    /// The gate of one cluster: the destinations whose weight goes up from `start` to `end`.
    pub fn new(
        context: &str,
        prom: Prometheus,
        destinations: &[Destination],
        start: &[u32],
        end: &[u32],
        namespace: &str,
        window: Duration,
    ) -> Self {
        let watched = destinations
            .iter()
            .enumerate()
            .filter(|(i, _)| end.get(*i) > start.get(*i))
            .map(|(_, d)| Watched {
                name: d.to_string(),
                queries: Queries::new(&selector(d, namespace), window),
            })
            .collect();
        Self {
            context: context.to_string(),
            prom,
            watched,
        }
    }
}

/// A check that did not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The check, e.g. `error rate`.
    pub check: &'static str,
    /// The flag and threshold, e.g. `--max-error-rate 1%`.
    pub threshold: String,
    /// The measured value (or what went wrong).
    pub value: String,
    /// The context.
    pub context: String,
    /// The destination.
    pub destination: String,
    /// The Prometheus asked.
    pub prometheus: String,
    /// The PromQL.
    pub query: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "check failed in context {}: {} of {} is {} ({}); Prometheus {}, query: {}",
            self.context,
            self.check,
            self.destination,
            self.value,
            self.threshold,
            self.prometheus,
            self.query
        )
    }
}

/// What the checks of one step found.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Pass,
    /// Too few requests somewhere (and nothing failed): a line per destination.
    NoTraffic(Vec<Failure>),
    Fail(Failure),
}

/// The outcome of the checks before a next step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Every check held in every cluster.
    Pass,
    /// A check failed: roll back.
    Fail(Failure),
    /// A signal came during the extra wait for traffic.
    Interrupted,
}

fn ms(x: f64) -> String {
    format!("{x:.0}ms")
}

/// Runs every check of every gate. A Prometheus that does not answer is a failed check.
async fn evaluate(gates: &[Gate], checks: &Checks) -> Verdict {
    let mut low = Vec::new();
    for gate in gates {
        for w in &gate.watched {
            let failure = |check, threshold: String, value: String, query: &str| Failure {
                check,
                threshold,
                value,
                context: gate.context.clone(),
                destination: w.name.clone(),
                prometheus: gate.prom.endpoint().to_string(),
                query: query.to_string(),
            };
            let unanswered = |check, threshold: String, query: &str, e: anyhow::Error| {
                failure(
                    check,
                    threshold,
                    format!("unknown: {}", crate::error::one_line(&e)),
                    query,
                )
            };
            let min = format!("--min-requests {}", checks.min_requests);
            let q = &w.queries;
            let requests = match gate.prom.value(&q.requests).await {
                Ok(v) => v.filter(|v| v.is_finite()).unwrap_or(0.0),
                Err(e) => return Verdict::Fail(unanswered("requests", min, &q.requests, e)),
            };
            // `increase` extrapolates, so 9.6 requests count as the 10 they stand for.
            if requests.round() < checks.min_requests as f64 {
                low.push(failure(
                    "requests",
                    format!("{min} needed"),
                    format!("{requests:.0}"),
                    &q.requests,
                ));
                continue;
            }
            if let Some(max) = checks.max_error_rate {
                let t = format!("--max-error-rate {max}");
                match gate.prom.value(&q.error_rate).await {
                    Err(e) => return Verdict::Fail(unanswered("error rate", t, &q.error_rate, e)),
                    Ok(Some(v)) if v.is_finite() && v > max.0 => {
                        return Verdict::Fail(failure(
                            "error rate",
                            t,
                            format!("{:.1}%", v * 100.0),
                            &q.error_rate,
                        ))
                    }
                    Ok(_) => {}
                }
            }
            if let Some(max) = checks.max_p99 {
                let max_ms = max.as_secs_f64() * 1000.0;
                let t = format!("--max-p99 {}", HumanDuration(max));
                match gate.prom.value(&q.p99).await {
                    Err(e) => return Verdict::Fail(unanswered("p99", t, &q.p99, e)),
                    Ok(Some(v)) if v.is_finite() && v > max_ms => {
                        return Verdict::Fail(failure("p99", t, ms(v), &q.p99))
                    }
                    Ok(Some(v)) if v.is_finite() => {}
                    // Requests without a latency histogram: nothing says the latency is fine.
                    Ok(_) => {
                        return Verdict::Fail(failure(
                            "p99",
                            t,
                            "unknown (no istio_request_duration_milliseconds data)".to_string(),
                            &q.p99,
                        ))
                    }
                }
            }
        }
    }
    if low.is_empty() {
        Verdict::Pass
    } else {
        Verdict::NoTraffic(low)
    }
}

/// Every query once, before the first step: a Prometheus that cannot answer stops the walk
/// before anything is written (exit 1).
pub async fn preflight(gates: &[Gate]) -> Result<()> {
    for gate in gates {
        for w in &gate.watched {
            for q in [&w.queries.requests, &w.queries.error_rate, &w.queries.p99] {
                gate.prom.query(q).await.map_err(|e| {
                    anyhow::anyhow!(
                        "before the first step, for the checks of context {}: {}",
                        gate.context,
                        crate::error::one_line(&e)
                    )
                })?;
            }
        }
    }
    Ok(())
}

fn low_line(l: &Failure) -> String {
    format!(
        "{} in context {}: {} requests, {}",
        l.destination, l.context, l.value, l.threshold
    )
}

/// How often the checks run again while waiting for traffic: a tenth of the interval, between
/// 1 s and 15 s, so evidence that arrives early lets the walk go on early.
fn poll_every(interval: Duration) -> Duration {
    (interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// The checks before the next step. Too little traffic waits up to one more interval (checking
/// again as it goes), then fails, or with `--allow-no-traffic` lets the walk go on.
pub async fn check_step(
    gates: &[Gate],
    checks: &Checks,
    interval: Duration,
    interrupt: &mut Interrupt,
    io: &mut Io,
) -> Result<Step> {
    let mut low = match evaluate(gates, checks).await {
        Verdict::Pass => return Ok(Step::Pass),
        Verdict::Fail(f) => return Ok(Step::Fail(f)),
        Verdict::NoTraffic(low) => low,
    };
    let lines: Vec<String> = low.iter().map(low_line).collect();
    io.note(format!(
        "Too little traffic to judge ({}); waiting up to {} more",
        lines.join("; "),
        HumanDuration(interval)
    ))?;
    let deadline = tokio::time::Instant::now() + interval;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        // The line above says what is awaited; the short waits print nothing of their own.
        if !interrupt
            .wait(
                left.min(poll_every(interval)),
                "",
                false,
                &mut std::io::sink(),
            )
            .await
        {
            return Ok(Step::Interrupted);
        }
        match evaluate(gates, checks).await {
            Verdict::Pass => return Ok(Step::Pass),
            Verdict::Fail(f) => return Ok(Step::Fail(f)),
            Verdict::NoTraffic(l) => low = l,
        }
    }
    if checks.allow_no_traffic {
        let lines: Vec<String> = low.iter().map(low_line).collect();
        io.warn(format!(
            "still too little traffic ({}); going on as --allow-no-traffic says",
            lines.join("; ")
        ))?;
        return Ok(Step::Pass);
    }
    let mut f = low.remove(0);
    f.value = format!("{} requests after waiting one more interval", f.value);
    Ok(Step::Fail(f))
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

/// The checks a walk runs, with their queries (for `--dry-run`).
pub fn describe(gates: &[Gate], checks: &Checks, window: Duration) -> String {
    let mut out = format!(
        "Checks before each next step, over the last {} in every context:\n",
        HumanDuration(window)
    );
    for gate in gates {
        for w in &gate.watched {
            let q = &w.queries;
            out.push_str(&format!(
                "  {} {} (Prometheus {}):\n",
                gate.context,
                w.name,
                gate.prom.endpoint()
            ));
            out.push_str(&format!(
                "    requests >= {}{}: {}\n",
                checks.min_requests,
                if checks.allow_no_traffic {
                    " (else go on: --allow-no-traffic)"
                } else {
                    ""
                },
                q.requests
            ));
            if let Some(max) = checks.max_error_rate {
                out.push_str(&format!("    error rate <= {max}: {}\n", q.error_rate));
            }
            if let Some(max) = checks.max_p99 {
                out.push_str(&format!("    p99 <= {}: {}\n", HumanDuration(max), q.p99));
            }
        }
    }
    out
}

/// Writes a failing check's full text to stderr (the error line repeats it in one line).
pub fn print_failure(f: &Failure, io: &mut Io) -> Result<()> {
    writeln!(
        io.err,
        "Check failed in context {}: {} of {} is {} ({})\n  Prometheus: {}\n  Query: {}",
        f.context, f.check, f.destination, f.value, f.threshold, f.prometheus, f.query
    )?;
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
        let d = |h: &str| Destination::host(h);
        assert_eq!(
            selector(&d("productcatalogservice-gke"), "default"),
            "destination_service_name=\"productcatalogservice-gke\",destination_service_namespace=\"default\""
        );
        assert_eq!(
            selector(&d("reviews.shop.svc.cluster.local"), "default"),
            "destination_service_name=\"reviews\",destination_service_namespace=\"shop\""
        );
        assert_eq!(
            selector(&d("productcatalogservice-gke.default.global"), "default"),
            "destination_service=\"productcatalogservice-gke.default.global\""
        );
        assert_eq!(
            selector(&d("vm.example.internal"), "default"),
            "destination_service=\"vm.example.internal\""
        );
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
    fn traffic_is_polled_a_tenth_of_the_interval_within_1s_and_15s() {
        assert_eq!(poll_every(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(poll_every(Duration::from_secs(60)), Duration::from_secs(6));
        assert_eq!(
            poll_every(Duration::from_secs(3600)),
            Duration::from_secs(15)
        );
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
