//! Running the metric checks of a walk: one gate per cluster (its Prometheus and the
//! destinations gaining traffic), the verdict before each next step, the wait for enough
//! traffic, and how a failed check is told.

use std::fmt;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Result;
use futures::future::join_all;

use super::analysis::{selector, Checks, Percent, Queries};
use super::route::Destination;
use super::steps::Interrupt;
use crate::duration::HumanDuration;
use crate::prom::Prometheus;
use crate::Io;

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

/// Runs every check of every gate, every cluster's Prometheus at once. A Prometheus that does
/// not answer is a failed check. The verdict is the first failure in the order of the gates and
/// destinations, as when they were asked one after another.
async fn evaluate(gates: &[Gate], checks: &Checks) -> Verdict {
    let asked = gates.iter().flat_map(|gate| {
        gate.watched
            .iter()
            .map(move |watched| Asked { gate, watched })
    });
    let found = join_all(asked.map(|a| async move { a.judge(checks).await })).await;
    let mut low = Vec::new();
    for f in found {
        match f {
            Found::Held => {}
            Found::TooFew(l) => low.push(l),
            Found::Failed(f) => return Verdict::Fail(f),
        }
    }
    if low.is_empty() {
        Verdict::Pass
    } else {
        Verdict::NoTraffic(low)
    }
}

/// What the checks of one destination found.
enum Found {
    Held,
    /// Too few requests to judge it: the line that says so.
    TooFew(Failure),
    Failed(Failure),
}

/// One destination of one gate, as its checks ask about it.
struct Asked<'a> {
    gate: &'a Gate,
    watched: &'a Watched,
}

impl Asked<'_> {
    /// The requests first: without enough of them the other checks prove nothing.
    async fn judge(&self, checks: &Checks) -> Found {
        let q = &self.watched.queries;
        let min = format!("--min-requests {}", checks.min_requests);
        let requests = match self.gate.prom.value(&q.requests).await {
            Ok(v) => v.filter(|v| v.is_finite()).unwrap_or(0.0),
            Err(e) => return Found::Failed(self.unanswered("requests", min, &q.requests, e)),
        };
        // `increase` extrapolates, so 9.6 requests count as the 10 they stand for.
        if requests.round() < checks.min_requests as f64 {
            let needed = format!("{min} needed");
            let value = format!("{requests:.0}");
            return Found::TooFew(self.failure("requests", needed, value, &q.requests));
        }
        if let Some(max) = checks.max_error_rate {
            if let Some(f) = self.error_rate(max).await {
                return Found::Failed(f);
            }
        }
        if let Some(max) = checks.max_p99 {
            if let Some(f) = self.p99(max).await {
                return Found::Failed(f);
            }
        }
        Found::Held
    }

    async fn error_rate(&self, max: Percent) -> Option<Failure> {
        let q = &self.watched.queries.error_rate;
        let t = format!("--max-error-rate {max}");
        match self.gate.prom.value(q).await {
            Err(e) => Some(self.unanswered("error rate", t, q, e)),
            Ok(Some(v)) if v.is_finite() && v > max.0 => {
                Some(self.failure("error rate", t, format!("{:.1}%", v * 100.0), q))
            }
            Ok(_) => None,
        }
    }

    async fn p99(&self, max: Duration) -> Option<Failure> {
        let q = &self.watched.queries.p99;
        let max_ms = max.as_secs_f64() * 1000.0;
        let t = format!("--max-p99 {}", HumanDuration(max));
        match self.gate.prom.value(q).await {
            Err(e) => Some(self.unanswered("p99", t, q, e)),
            Ok(Some(v)) if v.is_finite() && v > max_ms => Some(self.failure("p99", t, ms(v), q)),
            Ok(Some(v)) if v.is_finite() => None,
            // Requests without a latency histogram: nothing says the latency is fine.
            Ok(_) => Some(self.failure(
                "p99",
                t,
                "unknown (no istio_request_duration_milliseconds data)".to_string(),
                q,
            )),
        }
    }

    fn failure(
        &self,
        check: &'static str,
        threshold: String,
        value: String,
        query: &str,
    ) -> Failure {
        Failure {
            check,
            threshold,
            value,
            context: self.gate.context.clone(),
            destination: self.watched.name.clone(),
            prometheus: self.gate.prom.endpoint().to_string(),
            query: query.to_string(),
        }
    }

    fn unanswered(
        &self,
        check: &'static str,
        threshold: String,
        query: &str,
        e: anyhow::Error,
    ) -> Failure {
        let value = format!("unknown: {}", crate::error::one_line(&e));
        self.failure(check, threshold, value, query)
    }
}

/// Every query once, all at once, before the first step: a Prometheus that cannot answer stops
/// the walk before anything is written (exit 1). The error is the first in the order of the
/// gates, as when they were asked one after another.
pub async fn preflight(gates: &[Gate]) -> Result<()> {
    let asked = gates.iter().flat_map(|gate| {
        gate.watched.iter().flat_map(move |w| {
            [&w.queries.requests, &w.queries.error_rate, &w.queries.p99].map(|q| (gate, q))
        })
    });
    let answers = join_all(asked.map(|(gate, q)| async move {
        gate.prom.query(q).await.map_err(|e| {
            anyhow::anyhow!(
                "before the first step, for the checks of context {}: {}",
                gate.context,
                crate::error::one_line(&e)
            )
        })
    }))
    .await;
    answers.into_iter().try_for_each(|a| a.map(drop))
}

/// The destinations short of traffic, in one line.
fn low_lines(low: &[Failure]) -> String {
    let lines: Vec<String> = low
        .iter()
        .map(|l| {
            format!(
                "{} in context {}: {} requests, {}",
                l.destination, l.context, l.value, l.threshold
            )
        })
        .collect();
    lines.join("; ")
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
    let low = match settled(evaluate(gates, checks).await) {
        Ok(step) => return Ok(step),
        Err(low) => low,
    };
    io.note(format!(
        "Too little traffic to judge ({}); waiting up to {} more",
        low_lines(&low),
        HumanDuration(interval)
    ))?;
    let mut low = match wait_for_traffic(gates, checks, interval, interrupt, low).await {
        Ok(step) => return Ok(step),
        Err(low) => low,
    };
    if checks.allow_no_traffic {
        io.warn(format!(
            "still too little traffic ({}); going on as --allow-no-traffic says",
            low_lines(&low)
        ))?;
        return Ok(Step::Pass);
    }
    let mut f = low.remove(0);
    f.value = format!("{} requests after waiting one more interval", f.value);
    Ok(Step::Fail(f))
}

/// A verdict that decides the step, or the destinations still short of traffic.
fn settled(verdict: Verdict) -> Result<Step, Vec<Failure>> {
    match verdict {
        Verdict::Pass => Ok(Step::Pass),
        Verdict::Fail(f) => Ok(Step::Fail(f)),
        Verdict::NoTraffic(low) => Err(low),
    }
}

/// Checks again every [`poll_every`] for up to one interval: the step's outcome as soon as the
/// traffic decides it, else the destinations still short of traffic when the time is up.
async fn wait_for_traffic(
    gates: &[Gate],
    checks: &Checks,
    interval: Duration,
    interrupt: &mut Interrupt,
    mut low: Vec<Failure>,
) -> Result<Step, Vec<Failure>> {
    let deadline = tokio::time::Instant::now() + interval;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(low);
        }
        // The note before the wait says what is awaited; the short waits print nothing of their own.
        let wait = left.min(poll_every(interval));
        if !interrupt.wait(wait, "", false, &mut std::io::sink()).await {
            return Ok(Step::Interrupted);
        }
        match settled(evaluate(gates, checks).await) {
            Ok(step) => return Ok(step),
            Err(still) => low = still,
        }
    }
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
    fn traffic_is_polled_a_tenth_of_the_interval_within_1s_and_15s() {
        assert_eq!(poll_every(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(poll_every(Duration::from_secs(60)), Duration::from_secs(6));
        assert_eq!(
            poll_every(Duration::from_secs(3600)),
            Duration::from_secs(15)
        );
    }
}
