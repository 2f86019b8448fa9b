//! Service-level objectives: `p99<100ms,errors<0.1%,lost=0`. A run that misses one exits
//! with status 1.

use anyhow::{bail, Context};

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// A latency percentile (50, 90, 99, 99.9) or the maximum (100).
    Latency(f64),
    /// Errors as a share of submissions.
    ErrorRate,
    Lost,
    Duplicates,
    OrderViolations,
    /// Acknowledgements per second.
    Throughput,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Comparison {
    Below,
    AtMost,
    Equal,
    Above,
    AtLeast,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub text: String,
    pub metric: Metric,
    pub comparison: Comparison,
    /// Milliseconds for latencies, a fraction for the error rate, a count or a rate otherwise.
    pub threshold: f64,
}

/// The figures objectives are checked against.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub latency_ms: Vec<(f64, f64)>,
    pub error_rate: f64,
    pub lost: u64,
    pub duplicates: u64,
    pub order_violations: u64,
    pub throughput_per_s: f64,
}

impl Figures {
    fn latency(&self, percentile: f64) -> f64 {
        self.latency_ms
            .iter()
            .find(|(p, _)| (*p - percentile).abs() < 1e-9)
            .map_or(f64::NAN, |(_, v)| *v)
    }
}

pub fn parse(spec: &str) -> anyhow::Result<Vec<Objective>> {
    spec.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| parse_term(term).with_context(|| format!("SLO term {term:?}")))
        .collect()
}

fn parse_term(term: &str) -> anyhow::Result<Objective> {
    let operators = [
        ("<=", Comparison::AtMost),
        (">=", Comparison::AtLeast),
        ("==", Comparison::Equal),
        ("<", Comparison::Below),
        (">", Comparison::Above),
        ("=", Comparison::Equal),
    ];
    let (position, op, comparison) = operators
        .iter()
        .filter_map(|(op, c)| term.find(op).map(|p| (p, *op, *c)))
        .min_by_key(|(p, op, _)| (*p, std::cmp::Reverse(op.len())))
        .context("expected one of < <= = >= >")?;
    let name = term[..position].trim().to_ascii_lowercase();
    let value = term[position + op.len()..].trim().to_ascii_lowercase();
    let number = |text: &str| -> anyhow::Result<f64> {
        text.trim()
            .parse::<f64>()
            .with_context(|| format!("{text:?} is not a number"))
    };
    let (metric, threshold) = match name.as_str() {
        "p50" | "p90" | "p99" | "p999" | "p99.9" | "max" => {
            let percentile = match name.as_str() {
                "p50" => 50.0,
                "p90" => 90.0,
                "p99" => 99.0,
                "max" => 100.0,
                _ => 99.9,
            };
            let ms = if let Some(v) = value.strip_suffix("ms") {
                number(v)?
            } else if let Some(v) = value.strip_suffix("us").or(value.strip_suffix("µs")) {
                number(v)? / 1000.0
            } else if let Some(v) = value.strip_suffix('s') {
                number(v)? * 1000.0
            } else {
                bail!("a latency needs a unit: ms, s or us");
            };
            (Metric::Latency(percentile), ms)
        }
        "errors" | "error_rate" => {
            let fraction = match value.strip_suffix('%') {
                Some(v) => number(v)? / 100.0,
                None => number(&value)?,
            };
            (Metric::ErrorRate, fraction)
        }
        "lost" => (Metric::Lost, number(&value)?),
        "duplicates" => (Metric::Duplicates, number(&value)?),
        "order_violations" => (Metric::OrderViolations, number(&value)?),
        "throughput" | "rps" => (Metric::Throughput, number(value.trim_end_matches("/s"))?),
        other => bail!("unknown metric {other:?}: use p50, p90, p99, p999, max, errors, lost, duplicates, order_violations or throughput"),
    };
    Ok(Objective {
        text: term.to_owned(),
        metric,
        comparison,
        threshold,
    })
}

impl Objective {
    /// The measured value and whether it meets the objective.
    pub fn check(&self, figures: &Figures) -> (f64, bool) {
        let value = match self.metric {
            Metric::Latency(p) => figures.latency(p),
            Metric::ErrorRate => figures.error_rate,
            Metric::Lost => figures.lost as f64,
            Metric::Duplicates => figures.duplicates as f64,
            Metric::OrderViolations => figures.order_violations as f64,
            Metric::Throughput => figures.throughput_per_s,
        };
        let ok = match self.comparison {
            Comparison::Below => value < self.threshold,
            Comparison::AtMost => value <= self.threshold,
            Comparison::Equal => value == self.threshold,
            Comparison::Above => value > self.threshold,
            Comparison::AtLeast => value >= self.threshold,
        };
        (value, ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_parses() {
        let objectives = parse("p99<100ms,errors<0.1%").unwrap();
        assert_eq!(objectives[0].metric, Metric::Latency(99.0));
        assert_eq!(objectives[0].threshold, 100.0);
        assert_eq!(objectives[1].metric, Metric::ErrorRate);
        assert!((objectives[1].threshold - 0.001).abs() < 1e-12);
        assert_eq!(parse("p999<=2s").unwrap()[0].threshold, 2000.0);
        assert_eq!(parse("lost=0").unwrap()[0].comparison, Comparison::Equal);
        assert_eq!(
            parse("throughput>=1000/s").unwrap()[0].comparison,
            Comparison::AtLeast
        );
        assert!(parse("p99<100").is_err());
        assert!(parse("latency<1ms").is_err());
    }

    #[test]
    fn objectives_check_both_ways() {
        let figures = Figures {
            latency_ms: vec![(99.0, 12.0)],
            error_rate: 0.002,
            ..Figures::default()
        };
        let objectives = parse("p99<100ms,errors<0.1%").unwrap();
        assert!(objectives[0].check(&figures).1);
        assert!(!objectives[1].check(&figures).1);
    }
}
