//! The server's own latency: scraped from its `/metrics` at the end of the load.
//!
//! The simulator times each attempt from its intended send time, so its figures include every
//! wait before the server could read the request (the generator's own connection queue, the
//! kernel's socket queues). The server's histogram `ochered_http_request_seconds` times a
//! request from the moment it reaches the router to its answer, by `outcome` (accepted, shed,
//! refused, error): the part of the latency the server controls. Here it is read for the
//! submission routes (POST), summed over authorities, and its p50/p99 estimated from the
//! cumulative bucket counts: each quantile is the upper bound of the first bucket that holds
//! it, so the figures are only as fine as the server's buckets (1 ms … 10 s).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::driver::Target;

/// The server's request-latency histogram.
pub const HISTOGRAM: &str = "ochered_http_request_seconds";

/// Route templates (below `/api/v1/authorities/{authority}`) of the submissions the
/// simulator sends.
pub const SUBMISSION_ROUTES: [&str; 3] = [
    "/kindergarten/applications",
    "/school/applications",
    "/school/drafts/submit",
];

/// Estimated quantiles of one outcome, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BucketQuantiles {
    /// Requests observed.
    pub count: u64,
    /// Upper bound of the bucket holding the median; None when there are no requests or it
    /// lies above the largest finite bucket (`top_bucket_ms`).
    pub p50: Option<f64>,
    /// Likewise for the 99th percentile.
    pub p99: Option<f64>,
}

/// The server-side latency of submissions by outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerLatency {
    /// Whether `/metrics` was read.
    pub scraped: bool,
    /// How the figures were obtained, and what they do not cover.
    pub note: String,
    /// The largest finite bucket bound, ms: quantiles above it are reported as None.
    pub top_bucket_ms: Option<f64>,
    /// 2xx (and 3xx): the submission was served.
    pub accepted: BucketQuantiles,
    /// 503 or 429: turned away with Retry-After.
    pub shed: BucketQuantiles,
    /// Commands per group commit over the server's life, all writers together
    /// (`ochered_writer_commands_total` over `ochered_writer_batches_total`): small batches
    /// mean a commit's fixed cost is paid by few submissions.
    pub commands_per_commit: Option<f64>,
    /// Writers that committed anything.
    pub writers_committing: u64,
}

/// The sum over labels of a gauge or counter in a `/metrics` text, and how many series had a
/// value above zero.
fn sum_series(text: &str, name: &str) -> (f64, u64) {
    let mut total = 0.0;
    let mut positive = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            total += v;
            positive += u64::from(v > 0.0);
        }
    }
    (total, positive)
}

/// One sample line of the Prometheus text format: name, labels, value.
fn parse_line(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => {
            let (name, value) = line.split_once(char::is_whitespace)?;
            return Some((name, BTreeMap::new(), parse_value(value)?));
        }
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.char_indices().peekable();
    loop {
        // Skip separators; `}` ends the labels.
        while let Some(&(_, c)) = chars.peek() {
            if c == ',' || c == ' ' {
                chars.next();
            } else {
                break;
            }
        }
        let (start, c) = chars.next()?;
        if c == '}' {
            let value = rest[start + 1..].trim();
            // A timestamp may follow the value.
            let value = value.split_whitespace().next()?;
            return Some((name, labels, parse_value(value)?));
        }
        let eq = rest[start..].find('=')? + start;
        let key = rest[start..eq].trim().to_owned();
        while chars.peek().is_some_and(|&(i, _)| i <= eq) {
            chars.next();
        }
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            let (_, c) = chars.next()?;
            match c {
                '"' => break,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        }
        labels.insert(key, value);
    }
}

fn parse_value(v: &str) -> Option<f64> {
    match v.trim() {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        v => v.parse().ok(),
    }
}

/// Whether a label set is a POST to one of the submission routes.
fn is_submission(labels: &BTreeMap<String, String>) -> bool {
    labels.get("method").map(String::as_str) == Some("POST")
        && labels.get("route").is_some_and(|r| {
            r.starts_with("/api/v1/authorities/")
                && SUBMISSION_ROUTES.iter().any(|s| r.ends_with(s))
        })
}

/// Cumulative bucket counts (upper bound in seconds, count) of `histogram`, per `outcome`,
/// summed over the label sets `keep` accepts, in increasing order of the bound.
pub fn buckets_by_outcome(
    text: &str,
    histogram: &str,
    keep: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, Vec<(f64, f64)>> {
    let bucket_name = format!("{histogram}_bucket");
    // Keyed by the bound's bits: for non-negative floats (and +Inf) their order is the
    // numbers' order.
    let mut sums: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    for (name, labels, value) in text.lines().filter_map(parse_line) {
        if name != bucket_name || !keep(&labels) {
            continue;
        }
        let Some(le) = labels.get("le").and_then(|le| parse_value(le)) else {
            continue;
        };
        if le.is_nan() || le < 0.0 {
            continue;
        }
        let outcome = labels.get("outcome").cloned().unwrap_or_default();
        *sums
            .entry(outcome)
            .or_default()
            .entry(le.to_bits())
            .or_default() += value;
    }
    sums.into_iter()
        .map(|(outcome, b)| {
            (
                outcome,
                b.into_iter()
                    .map(|(le, n)| (f64::from_bits(le), n))
                    .collect(),
            )
        })
        .collect()
}

/// The `q` quantile from cumulative buckets (sorted by bound, the last one +Inf): the upper
/// bound of the first bucket whose cumulative count reaches `q` of the total. None without
/// observations, or when that bucket is +Inf.
pub fn bucket_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.iter().map(|b| b.1).fold(0.0, f64::max);
    if total <= 0.0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * total).ceil().max(1.0);
    buckets
        .iter()
        .find(|b| b.1 >= rank)
        .map(|b| b.0)
        .filter(|le| le.is_finite())
}

fn quantiles(buckets: Option<&Vec<(f64, f64)>>) -> BucketQuantiles {
    let Some(b) = buckets else {
        return BucketQuantiles::default();
    };
    let ms = |s: f64| s * 1000.0;
    BucketQuantiles {
        count: b.iter().map(|b| b.1).fold(0.0, f64::max) as u64,
        p50: bucket_quantile(b, 0.50).map(ms),
        p99: bucket_quantile(b, 0.99).map(ms),
    }
}

/// The submissions' server-side latency from a `/metrics` text.
pub fn submission_latency(text: &str) -> ServerLatency {
    let by_outcome = buckets_by_outcome(text, HISTOGRAM, is_submission);
    let top = by_outcome
        .values()
        .flatten()
        .map(|b| b.0)
        .filter(|le| le.is_finite())
        .fold(None, |m: Option<f64>, le| Some(m.map_or(le, |m| m.max(le))));
    ServerLatency {
        scraped: true,
        note: "server-side, from reaching the router to the answer; bucket-resolution \
               estimates (upper bound of the bucket holding the quantile)"
            .into(),
        top_bucket_ms: top.map(|s| s * 1000.0),
        accepted: quantiles(by_outcome.get("accepted")),
        shed: quantiles(by_outcome.get("shed")),
        commands_per_commit: {
            let (commands, _) = sum_series(text, "ochered_writer_commands_total");
            let (batches, _) = sum_series(text, "ochered_writer_batches_total");
            (batches > 0.0).then(|| commands / batches)
        },
        writers_committing: sum_series(text, "ochered_writer_batches_total").1,
    }
}

/// GET `{base}/metrics`.
pub async fn scrape(base: &str) -> Result<String, String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = format!("{}/metrics", base.trim_end_matches('/'))
        .parse()
        .map_err(|e| format!("bad URL: {e}"))?;
    let exchange = async {
        let response = client.get(uri).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("/metrics answered {}", response.status()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "/metrics did not answer within 10 s".to_owned())?
}

/// After the load, over HTTP: the server's latency by outcome, or why it is missing. None
/// in process (there is no server). `kills`: how often the spawned server was killed and
/// restarted (its histogram then covers only its last life).
pub async fn after_load(target: &Target, kills: usize) -> Option<ServerLatency> {
    let Target::Http(http) = target else {
        return None;
    };
    Some(match scrape(&http.base).await {
        Ok(text) => {
            let mut latency = submission_latency(&text);
            if kills > 0 {
                latency.note.push_str(&format!(
                    "; the server was killed {kills} times: only its last life is counted"
                ));
            }
            latency
        }
        Err(e) => ServerLatency {
            scraped: false,
            note: format!("could not read the server's /metrics: {e}"),
            ..ServerLatency::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "/api/v1/authorities/{authority}/kindergarten/applications";

    fn histogram(route: &str, method: &str, outcome: &str, counts: &[(&str, u64)]) -> String {
        let mut out = String::new();
        for (le, n) in counts {
            out.push_str(&format!(
                "{HISTOGRAM}_bucket{{route=\"{route}\",method=\"{method}\",outcome=\"{outcome}\",le=\"{le}\"}} {n}\n"
            ));
        }
        let total = counts.last().map_or(0, |c| c.1);
        out.push_str(&format!(
            "{HISTOGRAM}_sum{{route=\"{route}\",method=\"{method}\",outcome=\"{outcome}\"}} 1.5\n\
             {HISTOGRAM}_count{{route=\"{route}\",method=\"{method}\",outcome=\"{outcome}\"}} {total}\n"
        ));
        out
    }

    #[test]
    fn quantiles_are_the_upper_bound_of_the_bucket_that_holds_them() {
        let b = [
            (0.001, 10.0),
            (0.01, 50.0),
            (0.1, 99.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(bucket_quantile(&b, 0.05), Some(0.001));
        assert_eq!(bucket_quantile(&b, 0.10), Some(0.001));
        assert_eq!(bucket_quantile(&b, 0.11), Some(0.01));
        assert_eq!(bucket_quantile(&b, 0.50), Some(0.01));
        assert_eq!(bucket_quantile(&b, 0.99), Some(0.1));
        assert_eq!(bucket_quantile(&b, 0.995), Some(1.0));
        assert_eq!(bucket_quantile(&b, 1.0), Some(1.0));
        // The quantile lies above the largest finite bound.
        let over = [(0.001, 1.0), (10.0, 2.0), (f64::INFINITY, 4.0)];
        assert_eq!(bucket_quantile(&over, 0.5), Some(10.0));
        assert_eq!(bucket_quantile(&over, 0.99), None);
        // Nothing observed.
        assert_eq!(
            bucket_quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5),
            None
        );
        assert_eq!(bucket_quantile(&[], 0.5), None);
    }

    #[test]
    fn submissions_are_summed_over_authorities_by_outcome() {
        let mut text = String::from("# TYPE ochered_http_request_seconds histogram\n");
        text += &histogram(
            ROUTE,
            "POST",
            "accepted",
            &[("0.001", 0), ("0.01", 60), ("0.1", 98), ("+Inf", 100)],
        );
        text += &histogram(
            "/api/v1/authorities/{authority}/school/drafts/submit",
            "POST",
            "accepted",
            &[("0.001", 0), ("0.01", 40), ("0.1", 100), ("+Inf", 100)],
        );
        text += &histogram(
            ROUTE,
            "POST",
            "shed",
            &[("0.001", 499), ("0.01", 500), ("0.1", 500), ("+Inf", 500)],
        );
        // Not submissions: a read, another route, another outcome.
        text += &histogram(
            ROUTE,
            "GET",
            "accepted",
            &[("0.001", 0), ("0.01", 0), ("0.1", 0), ("+Inf", 1000)],
        );
        text += &histogram(
            "/api/v1/authorities/{authority}/queues",
            "POST",
            "accepted",
            &[("0.001", 0), ("0.01", 0), ("0.1", 0), ("+Inf", 1000)],
        );
        text += &histogram(
            ROUTE,
            "POST",
            "refused",
            &[("0.001", 7), ("0.01", 7), ("0.1", 7), ("+Inf", 7)],
        );
        text += "ochered_http_in_flight 3\n";
        let l = submission_latency(&text);
        assert!(l.scraped);
        assert_eq!(l.top_bucket_ms, Some(100.0));
        // 200 accepted: 100 by 10 ms, 198 by 100 ms.
        assert_eq!(
            l.accepted,
            BucketQuantiles {
                count: 200,
                p50: Some(10.0),
                p99: Some(100.0),
            }
        );
        assert_eq!(
            l.shed,
            BucketQuantiles {
                count: 500,
                p50: Some(1.0),
                p99: Some(1.0),
            }
        );
    }

    #[test]
    fn lines_parse_with_escapes_timestamps_and_without_labels() {
        let (name, labels, value) =
            parse_line(r#"m_bucket{a="x\"y",b="p,q}",le="+Inf"} 12 1700000000"#).unwrap();
        assert_eq!(name, "m_bucket");
        assert_eq!(labels["a"], "x\"y");
        assert_eq!(labels["b"], "p,q}");
        assert_eq!(labels["le"], "+Inf");
        assert_eq!(value, 12.0);
        let (name, labels, value) = parse_line("up 1").unwrap();
        assert_eq!((name, labels.len(), value), ("up", 0, 1.0));
        assert!(parse_line("# HELP up whatever").is_none());
        assert!(parse_line("").is_none());
    }
}
