//! Traffic weights as users type them (`80/20`, `50/30/20`, `v1=80,v2=20`), matched to a route's
//! destinations, and the intermediate weights of a progressive `--steps` rollout.

use std::fmt;
use std::str::FromStr;

use super::route::Destination;

const ACCEPTED: &str =
    "expected weights such as 80/20, 50/30/20 or v1=80,v2=20: integers 0-100 adding up to 100";

/// Weights for the destinations of one route, validated to add up to exactly 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weights {
    /// `80/20` (or `80:20`): one weight per destination, in the route's order.
    Ordered(Vec<u32>),
    /// `v1=80,v2=20`: by subset name or destination host.
    Named(Vec<(String, u32)>),
}

fn weight(s: &str, whole: &str) -> Result<u32, String> {
    if s.is_empty() {
        return Err(format!("{whole:?} has an empty weight: {ACCEPTED}"));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a weight: {ACCEPTED}"));
    }
    match s.parse::<u32>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(format!("{s} is more than 100: {ACCEPTED}")),
    }
}

impl FromStr for Weights {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(format!("empty weights: {ACCEPTED}"));
        }
        let parsed = if s.contains('=') {
            let mut named: Vec<(String, u32)> = Vec::new();
            for part in s.split(',') {
                let (key, value) = part
                    .split_once('=')
                    .ok_or_else(|| format!("{part:?} is not NAME=WEIGHT: {ACCEPTED}"))?;
                let key = key.trim();
                if key.is_empty() {
                    return Err(format!("{part:?} has no name before '=': {ACCEPTED}"));
                }
                if named.iter().any(|(k, _)| k == key) {
                    return Err(format!("{key} is given twice"));
                }
                named.push((key.to_string(), weight(value.trim(), s)?));
            }
            Weights::Named(named)
        } else {
            let sep = if s.contains('/') { '/' } else { ':' };
            let ordered = s
                .split(sep)
                .map(|p| weight(p.trim(), s))
                .collect::<Result<Vec<_>, _>>()?;
            Weights::Ordered(ordered)
        };
        if parsed.len() < 2 {
            return Err(format!(
                "{s:?} is one weight: give one per destination, at least two: {ACCEPTED}"
            ));
        }
        let sum: u32 = parsed.values().iter().sum();
        if sum != 100 {
            return Err(format!("{s} adds up to {sum}, not 100"));
        }
        Ok(parsed)
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Weights::Ordered(w) => f.write_str(&slash(w)),
            Weights::Named(n) => {
                let parts: Vec<String> = n.iter().map(|(k, w)| format!("{k}={w}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

impl Weights {
    /// How many weights were given.
    pub fn len(&self) -> usize {
        match self {
            Weights::Ordered(w) => w.len(),
            Weights::Named(n) => n.len(),
        }
    }

    /// Never true: parsing requires at least two weights.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn values(&self) -> Vec<u32> {
        match self {
            Weights::Ordered(w) => w.clone(),
            Weights::Named(n) => n.iter().map(|(_, w)| *w).collect(),
        }
    }

    /// The weight of each destination, in the route's order. The error says what is wrong; the
    /// caller adds the route's current destinations and weights.
    pub fn resolve(&self, dests: &[Destination]) -> Result<Vec<u32>, String> {
        match self {
            Weights::Ordered(w) => {
                if w.len() != dests.len() {
                    return Err(format!(
                        "{} weights for {} destinations",
                        w.len(),
                        dests.len()
                    ));
                }
                Ok(w.clone())
            }
            Weights::Named(named) => {
                let mut out: Vec<Option<u32>> = vec![None; dests.len()];
                for (key, w) in named {
                    let i = match_destination(key, dests)?;
                    if out[i].is_some() {
                        return Err(format!(
                            "{key} names destination {}, which already has a weight",
                            dests[i]
                        ));
                    }
                    out[i] = Some(*w);
                }
                let missing: Vec<String> = dests
                    .iter()
                    .zip(&out)
                    .filter(|(_, w)| w.is_none())
                    .map(|(d, _)| d.short_key())
                    .collect();
                if !missing.is_empty() {
                    return Err(format!("no weight for {}", missing.join(", ")));
                }
                Ok(out.into_iter().map(|w| w.unwrap_or(0)).collect())
            }
        }
    }
}

/// Which destination a `NAME=` refers to: a subset name, else the exact host, else the host's
/// first label (so `productcatalogservice-gke` names `productcatalogservice-gke.default.global`
/// in one cluster and `productcatalogservice-gke` in another).
fn match_destination(key: &str, dests: &[Destination]) -> Result<usize, String> {
    let tiers: [&dyn Fn(&Destination) -> bool; 3] = [
        &|d| d.subset.as_deref() == Some(key),
        &|d| d.host == key,
        &|d| d.host.split('.').next() == Some(key),
    ];
    for tier in tiers {
        let hits: Vec<usize> = (0..dests.len()).filter(|&i| tier(&dests[i])).collect();
        match hits.as_slice() {
            [] => continue,
            [i] => return Ok(*i),
            many => {
                let names: Vec<String> = many.iter().map(|&i| dests[i].to_string()).collect();
                return Err(format!(
                    "{key} matches several destinations ({}): use 80/20 order instead",
                    names.join(", ")
                ));
            }
        }
    }
    Err(format!(
        "{key} is neither a subset nor a host of this route"
    ))
}

/// `80/20`.
pub fn slash(weights: &[u32]) -> String {
    let parts: Vec<String> = weights.iter().map(u32::to_string).collect();
    parts.join("/")
}

/// Checks `--steps` on its own: each 1-99, strictly increasing or strictly decreasing.
pub fn check_steps(steps: &[u32]) -> Result<(), String> {
    if steps.iter().any(|s| *s == 0 || *s >= 100) {
        return Err("each step is the last destination's weight, 1-99".into());
    }
    let up = steps.windows(2).all(|w| w[0] < w[1]);
    let down = steps.windows(2).all(|w| w[0] > w[1]);
    if !(up || down) {
        return Err(format!(
            "{} must be strictly increasing or strictly decreasing",
            steps
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    Ok(())
}

/// The weights at each step from `start` to `end`, the last entry being `end`.
///
/// A step sets the last destination's weight; the other destinations move from their `start`
/// toward their `end` weights in the same proportion, rounded so the total stays 100.
pub fn step_weights(start: &[u32], end: &[u32], steps: &[u32]) -> Result<Vec<Vec<u32>>, String> {
    let n = end.len();
    if start.len() != n || n < 2 {
        return Err("the route's destinations changed".into());
    }
    let (a, b) = (i64::from(start[n - 1]), i64::from(end[n - 1]));
    if a == b && !steps.is_empty() {
        return Err(format!(
            "the last destination is already at {b}: steps go from its current weight to its final one"
        ));
    }
    for s in steps {
        let s = i64::from(*s);
        let between = if a < b {
            a < s && s < b
        } else {
            b < s && s < a
        };
        if !between {
            return Err(format!(
                "step {s} is not between the last destination's current weight {a} and its final weight {b}"
            ));
        }
    }
    if steps.len() > 1 {
        let rising = steps[0] < steps[1];
        if rising != (a < b) {
            return Err(format!("steps must go from {a} toward {b}"));
        }
    }
    let mut plan = Vec::with_capacity(steps.len() + 1);
    for &s in steps {
        plan.push(interpolate(start, end, s));
    }
    plan.push(end.to_vec());
    Ok(plan)
}

/// Weights with the last destination at `s`, the others placed linearly between start and end.
fn interpolate(start: &[u32], end: &[u32], s: u32) -> Vec<u32> {
    let n = end.len();
    let (a, b) = (i64::from(start[n - 1]), i64::from(end[n - 1]));
    let (mut num_f, mut den) = (i64::from(s) - a, b - a);
    if den < 0 {
        num_f = -num_f;
        den = -den;
    }
    // x_i = start_i + f * (end_i - start_i), f = num_f / den, kept as exact fractions.
    let exact: Vec<i64> = (0..n - 1)
        .map(|i| i64::from(start[i]) * den + num_f * (i64::from(end[i]) - i64::from(start[i])))
        .collect();
    let mut out: Vec<u32> = exact
        .iter()
        .map(|x| u32::try_from(x.div_euclid(den)).unwrap_or(0))
        .collect();
    let placed: u32 = out.iter().sum();
    let mut left = (100 - s).saturating_sub(placed);
    // Largest remainder first; ties go to the earlier destination.
    let mut order: Vec<usize> = (0..n - 1).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(exact[i].rem_euclid(den)));
    for i in order {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out.push(s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Weights, String> {
        s.parse()
    }

    fn dests(hosts: &[&str]) -> Vec<Destination> {
        hosts.iter().map(|h| Destination::host(h)).collect()
    }

    #[test]
    fn ordered_weights() {
        assert_eq!(p("80/20"), Ok(Weights::Ordered(vec![80, 20])));
        assert_eq!(p("0/100"), Ok(Weights::Ordered(vec![0, 100])));
        assert_eq!(p("100/0"), Ok(Weights::Ordered(vec![100, 0])));
        assert_eq!(p("50/30/20"), Ok(Weights::Ordered(vec![50, 30, 20])));
        assert_eq!(p("80:20"), Ok(Weights::Ordered(vec![80, 20])));
        assert_eq!(p(" 80/20 "), Ok(Weights::Ordered(vec![80, 20])));
        assert_eq!(p("080/020"), Ok(Weights::Ordered(vec![80, 20])));
        assert_eq!(p("25/25/25/25"), Ok(Weights::Ordered(vec![25; 4])));
    }

    #[test]
    fn named_weights() {
        assert_eq!(
            p("v1=80,v2=20"),
            Ok(Weights::Named(vec![("v1".into(), 80), ("v2".into(), 20)]))
        );
        assert_eq!(
            p("reviews.default.svc.cluster.local=10, v2 = 90"),
            Ok(Weights::Named(vec![
                ("reviews.default.svc.cluster.local".into(), 10),
                ("v2".into(), 90)
            ]))
        );
    }

    #[test]
    fn rejects_what_the_issue_lists() {
        let cases = [
            ("80/30", "adds up to 110, not 100"),
            ("abc", "\"abc\" is not a weight"),
            ("-5/105", "\"-5\" is not a weight"),
            ("80/", "has an empty weight"),
            ("/100", "has an empty weight"),
            ("", "empty weights"),
            ("100", "is one weight"),
            ("v1=100", "is one weight"),
            ("101/-1", "101 is more than 100"),
            ("99999999999/1", "is more than 100"),
            ("+80/20", "\"+80\" is not a weight"),
            ("80.5/19.5", "is not a weight"),
            ("80/20/0/1", "adds up to 101"),
            ("80/20:0", "is not a weight"),
            ("v1=80,v1=20", "v1 is given twice"),
            ("v1=80,20", "\"20\" is not NAME=WEIGHT"),
            ("=80,v2=20", "has no name"),
            ("v1=80,v2=", "has an empty weight"),
            ("v1=x,v2=20", "\"x\" is not a weight"),
            ("50/50/1", "adds up to 101"),
        ];
        for (input, want) in cases {
            let err = p(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn displays_as_typed() {
        assert_eq!(p("80:20").map(|w| w.to_string()), Ok("80/20".into()));
        assert_eq!(
            p("v1=80,v2=20").map(|w| w.to_string()),
            Ok("v1=80,v2=20".into())
        );
    }

    #[test]
    fn ordered_resolve_needs_one_weight_per_destination() {
        let two = dests(&["a", "b"]);
        assert_eq!(p("80/20").and_then(|w| w.resolve(&two)), Ok(vec![80, 20]));
        assert_eq!(
            p("80/20/0").and_then(|w| w.resolve(&two)),
            Err("3 weights for 2 destinations".into())
        );
        let three = dests(&["a", "b", "c"]);
        assert_eq!(
            p("80/20").and_then(|w| w.resolve(&three)),
            Err("2 weights for 3 destinations".into())
        );
    }

    #[test]
    fn named_resolve_by_subset_host_or_short_host() {
        let mut subsets = dests(&["reviews", "reviews"]);
        subsets[0].subset = Some("v1".into());
        subsets[1].subset = Some("v2".into());
        assert_eq!(
            p("v2=30,v1=70").and_then(|w| w.resolve(&subsets)),
            Ok(vec![70, 30])
        );
        // The host alone is ambiguous when two subsets share it.
        let err = p("reviews=30,v1=70")
            .and_then(|w| w.resolve(&subsets))
            .expect_err("ambiguous");
        assert!(err.contains("matches several destinations"), "{err}");

        let c1 = dests(&[
            "productcatalogservice",
            "productcatalogservice-gke.default.global",
        ]);
        let c2 = dests(&["productcatalogservice", "productcatalogservice-gke"]);
        let w = p("productcatalogservice=80,productcatalogservice-gke=20").expect("parse");
        assert_eq!(w.resolve(&c1), Ok(vec![80, 20]));
        assert_eq!(w.resolve(&c2), Ok(vec![80, 20]));
        let full = p("productcatalogservice-gke.default.global=100,productcatalogservice=0")
            .expect("parse");
        assert_eq!(full.resolve(&c1), Ok(vec![0, 100]));
        assert!(full.resolve(&c2).is_err());
    }

    #[test]
    fn named_resolve_errors() {
        let two = dests(&["a", "b"]);
        let err = p("a=50,c=50").and_then(|w| w.resolve(&two)).expect_err("c");
        assert!(err.contains("c is neither a subset nor a host"), "{err}");
        let three = dests(&["a", "b", "c"]);
        let err = p("a=50,b=50")
            .and_then(|w| w.resolve(&three))
            .expect_err("missing");
        assert_eq!(err, "no weight for c");
        let dup = dests(&["a.x", "a.y"]);
        let err = p("a=50,a.y=50")
            .and_then(|w| w.resolve(&dup))
            .expect_err("dup");
        // `a.y` is exact; `a` then matches both by first label.
        assert!(err.contains("matches several"), "{err}");
    }

    #[test]
    fn steps_must_be_monotonic_and_inside_1_99() {
        assert!(check_steps(&[20, 50, 80]).is_ok());
        assert!(check_steps(&[80, 50, 20]).is_ok());
        assert!(check_steps(&[50]).is_ok());
        assert!(check_steps(&[20, 20]).is_err());
        assert!(check_steps(&[20, 50, 30]).is_err());
        assert!(check_steps(&[0, 50]).is_err());
        assert!(check_steps(&[50, 100]).is_err());
    }

    #[test]
    fn two_way_steps_move_the_last_destination() {
        assert_eq!(
            step_weights(&[100, 0], &[0, 100], &[20, 50, 80]),
            Ok(vec![vec![80, 20], vec![50, 50], vec![20, 80], vec![0, 100]])
        );
        // Back down.
        assert_eq!(
            step_weights(&[0, 100], &[100, 0], &[50]),
            Ok(vec![vec![50, 50], vec![100, 0]])
        );
        // No steps: straight to the end.
        assert_eq!(
            step_weights(&[100, 0], &[80, 20], &[]),
            Ok(vec![vec![80, 20]])
        );
    }

    #[test]
    fn three_way_steps_interpolate_and_round_to_100() {
        let plan = step_weights(&[100, 0, 0], &[0, 50, 50], &[20]).expect("plan");
        assert_eq!(plan, vec![vec![60, 20, 20], vec![0, 50, 50]]);
        let plan = step_weights(&[34, 33, 33], &[0, 0, 100], &[50, 75]).expect("plan");
        for w in &plan {
            assert_eq!(w.iter().sum::<u32>(), 100, "{w:?}");
        }
        assert_eq!(plan[0][2], 50);
        assert_eq!(plan[1][2], 75);
        // 25.37 and 24.63 round by largest remainder; so do 12.69 and 12.31.
        assert_eq!(plan[0], vec![25, 25, 50]);
        assert_eq!(plan[1], vec![13, 12, 75]);
    }

    #[test]
    fn steps_outside_the_path_are_refused() {
        let err = step_weights(&[100, 0], &[0, 100], &[80, 50]).expect_err("down");
        assert!(err.contains("from 0 toward 100"), "{err}");
        let err = step_weights(&[50, 50], &[0, 100], &[20]).expect_err("behind");
        assert!(err.contains("not between"), "{err}");
        let err = step_weights(&[0, 100], &[0, 100], &[50]).expect_err("already");
        assert!(err.contains("already at 100"), "{err}");
    }
}
