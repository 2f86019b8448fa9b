//! The report: a summary table on standard output, a JSON file, and one self-contained HTML
//! page with inline SVG charts (no scripts, no external files).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::audit::AuditReport;
use crate::recorder::Recorder;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// Latency of one class of attempts (accepted, or shed with 503/429), in milliseconds, each
/// attempt timed on its own from its start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassLatency {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl ClassLatency {
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> ClassLatency {
        if h.is_empty() {
            return ClassLatency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        ClassLatency {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AttemptLatency {
    /// Attempts answered 2xx.
    pub accepted: ClassLatency,
    /// Attempts the server shed: 503 (overloaded, unavailable, timed out) or 429.
    pub shed: ClassLatency,
}

#[derive(Debug, Clone, Serialize)]
pub struct SloResult {
    pub term: String,
    pub value: f64,
    pub ok: bool,
}

/// The service verdict: the objectives and how the run measured against them.
#[derive(Debug, Clone, Serialize)]
pub struct SloReport {
    pub spec: String,
    /// True when no `--slo` was given and the default objective was applied.
    pub default: bool,
    pub passed: bool,
    pub results: Vec<SloResult>,
}

/// A send that starts later than this after its intended time counts as late.
pub const LATE_SEND_MS: f64 = 100.0;

/// What the load generator measured of itself while it ran the schedule.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScheduleStats {
    /// Sends made (second devices included).
    pub sends: u64,
    /// Wall seconds from the start to the intended time of the last send.
    pub planned_last_send_s: f64,
    /// Wall seconds from the start to the moment the last send was started.
    pub last_send_s: f64,
    /// Sends started more than [`LATE_SEND_MS`] after their intended time.
    pub late_sends: u64,
    /// The largest delay of a send's start behind its intended time, in seconds.
    pub max_lag_s: f64,
    /// Sends that had to wait for a client slot (the client limit was reached).
    pub held_by_client_limit: u64,
    /// The most clients running at once.
    pub peak_clients: usize,
}

/// How well the load generator kept its schedule, and what it cost: an open-model load is
/// only worth its figures if it offered what it was asked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Generator {
    /// Wall seconds from the start to the last send: as planned, and as it happened.
    pub planned_last_send_s: f64,
    pub actual_last_send_s: f64,
    pub late_sends: u64,
    pub max_lag_s: f64,
    pub held_by_client_limit: u64,
    pub clients_max: usize,
    pub peak_clients: usize,
    /// CPU seconds (user and system) of the simulator's process over the load, as a share
    /// of one core, and per send in microseconds. In process this includes the engine.
    pub cpu_s: f64,
    pub cpu_share_of_core: f64,
    pub cpu_us_per_send: f64,
    /// The spawned server's CPU seconds over the load (when it ran throughout), and per send.
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_send: Option<f64>,
    /// Whether the schedule was kept; when not, `why` says why, plainly.
    pub kept_schedule: bool,
    pub why: Option<String>,
}

impl Generator {
    /// Judges the schedule from what the driver measured (None: virtual time, which has no
    /// schedule to keep).
    #[allow(clippy::too_many_arguments)]
    pub fn judge(
        stats: Option<ScheduleStats>,
        planned_last_send_s: f64,
        sends: u64,
        clients_max: usize,
        cpu_s: f64,
        wall_s: f64,
        server_cpu_s: Option<f64>,
        in_process: bool,
    ) -> Generator {
        let per_send = |s: f64| s * 1e6 / sends.max(1) as f64;
        let mut g = Generator {
            planned_last_send_s,
            clients_max,
            cpu_s,
            cpu_share_of_core: cpu_s / wall_s.max(1e-9),
            cpu_us_per_send: per_send(cpu_s),
            server_cpu_s,
            server_cpu_us_per_send: server_cpu_s.map(per_send),
            kept_schedule: true,
            ..Generator::default()
        };
        let Some(stats) = stats else {
            return g;
        };
        g.actual_last_send_s = stats.last_send_s;
        g.late_sends = stats.late_sends;
        g.max_lag_s = stats.max_lag_s;
        g.held_by_client_limit = stats.held_by_client_limit;
        g.peak_clients = stats.peak_clients;
        // Kept: at most one send in a thousand late, and the last one within a second.
        let behind_s = stats.last_send_s - planned_last_send_s;
        g.kept_schedule = stats.late_sends * 1000 <= sends && behind_s < 1.0;
        if !g.kept_schedule {
            let mut why = format!(
                "the load fell behind its schedule: {} of {sends} sends started over {LATE_SEND_MS} ms late (up to {:.1} s), the last {:.1} s after its time",
                stats.late_sends,
                stats.max_lag_s,
                behind_s.max(0.0)
            );
            if stats.held_by_client_limit > 0 {
                why.push_str(&format!(
                    "; {} sends waited because {clients_max} clients were already running (--clients-max): the target answers slower than the schedule sends, and more clients would only grow memory",
                    stats.held_by_client_limit
                ));
            } else if g.cpu_share_of_core > 0.8 {
                why.push_str(&format!(
                    "; the simulator used {:.0}% of a core ({:.0} µs per send{}): this machine cannot generate this rate and serve it too",
                    g.cpu_share_of_core * 100.0,
                    g.cpu_us_per_send,
                    if in_process { ", the engine included" } else { "" }
                ));
            } else {
                why.push_str(
                    "; the simulator's own CPU was not saturated, so its tasks were delayed by the machine (other processes, or the server on the same cores)",
                );
            }
            g.why = Some(why);
        }
        g
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InstitutionLoad {
    pub authority: String,
    pub institution: String,
    pub demand: u32,
    pub seats: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub mode: String,
    pub clock: String,
    pub seed: u64,
    pub scale: f64,
    /// The command that reproduces this run.
    pub command: String,
    pub preset_source: String,
    pub authorities: usize,
    /// Scenario seconds per wall second.
    pub compression: f64,
    pub scenario_span_s: f64,
    /// Wall seconds from the start to the last intended send (second devices run past the
    /// curve's end).
    pub last_send_s: f64,
    /// Wall seconds from the first intended send to the last answer.
    pub duration_s: f64,
    /// Submissions sent (one per child and device).
    pub submitted: u64,
    pub children: u64,
    pub attempts: u64,
    pub acknowledged: u64,
    /// Null when the audit could not run (a server given by URL without --database-url).
    pub lost: Option<u64>,
    pub duplicates: Option<u64>,
    pub order_violations: Option<u64>,
    pub errors: u64,
    pub error_rate: f64,
    pub errors_by_status: BTreeMap<String, u64>,
    pub expected_refusals: BTreeMap<String, u64>,
    pub retries_by_reason: BTreeMap<String, u64>,
    pub gave_up: u64,
    /// Children both of whose devices got a 2xx (the audit counts the active duplicates).
    pub both_devices_acknowledged: u64,
    /// Acknowledgements per wall second.
    pub throughput_per_s: f64,
    /// Submissions per wall second the schedule offered, on average and in the busiest slice.
    pub offered_per_s: f64,
    pub offered_peak_per_s: f64,
    pub latency_ms: Latency,
    pub state_hash: Option<String>,
    pub audit_passed: bool,
    pub audit: Option<AuditReport>,
    pub audit_skipped: Option<String>,
    pub server_kills: usize,
    /// Seconds since the start at which the server was killed.
    pub kill_times_s: Vec<f64>,
    /// Acknowledgements received between each kill and the next (one entry per gap).
    pub acks_between_kills: Vec<u64>,
    /// Per-attempt latency of accepted and of shed answers.
    pub attempt_latency_ms: AttemptLatency,
    /// Shed answers (503/429) that came without a Retry-After header.
    pub shed_without_retry_after: u64,
    /// Over HTTP: the server's own latency of submissions by outcome, from its `/metrics`
    /// after the load (bucket-resolution estimates; see [`crate::server_metrics`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_latency_ms: Option<crate::server_metrics::ServerLatency>,
    /// The spawned server's peak resident set (VmHWM, largest over its lives), KiB.
    pub server_peak_rss_kib: Option<u64>,
    /// The spawned server's resident set at the last sample, KiB.
    pub server_last_rss_kib: Option<u64>,
    pub queue_depth_max: u64,
    pub error_examples: Vec<String>,
    pub slo: Option<SloReport>,
    /// How well the load kept its schedule, and the simulator's own CPU.
    pub generator: Generator,
    pub database_url: Option<String>,
    #[serde(skip)]
    pub institutions: Vec<InstitutionLoad>,
}

pub fn latency(recorder: &Recorder) -> Latency {
    let h = &recorder.latency;
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("n/a".to_owned(), |v| v.to_string())
}

impl Report {
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "  {k:<26} {v}");
        };
        row(
            "scenario",
            format!(
                "{} (scale {}, {})",
                self.scenario, self.scale, self.preset_source
            ),
        );
        row("mode", format!("{}, clock {}", self.mode, self.clock));
        row("seed", self.seed.to_string());
        row(
            "time",
            format!(
                "{:.0} scenario s compressed {:.1}x; last send at {:.1} s; load took {:.1} s",
                self.scenario_span_s, self.compression, self.last_send_s, self.duration_s
            ),
        );
        row("authorities", self.authorities.to_string());
        row(
            "submitted",
            format!("{} ({} children)", self.submitted, self.children),
        );
        row("attempts", self.attempts.to_string());
        row("acknowledged", self.acknowledged.to_string());
        row(
            "expected refusals",
            if self.expected_refusals.is_empty() {
                "0".into()
            } else {
                format!("{:?}", self.expected_refusals)
            },
        );
        row(
            "errors",
            format!(
                "{} ({:.3}%) {:?}",
                self.errors,
                self.error_rate * 100.0,
                self.errors_by_status
            ),
        );
        row("gave up", self.gave_up.to_string());
        row("retries", format!("{:?}", self.retries_by_reason));
        row(
            "offered",
            format!(
                "{:.0}/s average, {:.0}/s peak",
                self.offered_per_s, self.offered_peak_per_s
            ),
        );
        let g = &self.generator;
        row(
            "schedule",
            match &g.why {
                None => format!(
                    "kept: last send at {:.1} s as planned ({:.1} s); {} late, {} held by the client limit, peak {} clients",
                    g.actual_last_send_s, g.planned_last_send_s, g.late_sends, g.held_by_client_limit, g.peak_clients
                ),
                Some(why) => format!("NOT KEPT: {why}"),
            },
        );
        row(
            "simulator CPU",
            format!(
                "{:.1} s, {:.0}% of a core, {:.1} µs per send{}",
                g.cpu_s,
                g.cpu_share_of_core * 100.0,
                g.cpu_us_per_send,
                match (g.server_cpu_s, g.server_cpu_us_per_send) {
                    (Some(s), Some(per)) => format!("; server {s:.1} s, {per:.0} µs per send"),
                    _ => String::new(),
                }
            ),
        );
        row(
            "throughput",
            format!("{:.0} acknowledged/s", self.throughput_per_s),
        );
        let l = &self.latency_ms;
        row(
            "latency ms",
            format!(
                "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                l.p50, l.p90, l.p99, l.p999, l.max
            ),
        );
        let (a, shed) = (
            &self.attempt_latency_ms.accepted,
            &self.attempt_latency_ms.shed,
        );
        row(
            "attempts accepted ms",
            format!(
                "{} attempts: p50 {:.2}  p99 {:.2}  max {:.2}",
                a.count, a.p50, a.p99, a.max
            ),
        );
        row(
            "attempts shed ms",
            format!(
                "{} attempts (503/429; {} without Retry-After): p50 {:.2}  p99 {:.2}  max {:.2}",
                shed.count, self.shed_without_retry_after, shed.p50, shed.p99, shed.max
            ),
        );
        if let Some(server) = &self.server_latency_ms {
            let ms = |v: Option<f64>, count: u64| match (v, count) {
                (_, 0) => "-".to_owned(),
                (Some(v), _) => format!("≤{v}"),
                (None, _) => format!(">{}", server.top_bucket_ms.unwrap_or(f64::NAN)),
            };
            if server.scraped {
                for (name, q) in [
                    ("server accepted ms", &server.accepted),
                    ("server shed ms", &server.shed),
                ] {
                    row(
                        name,
                        format!(
                            "{} submissions: p50 {}  p99 {}  (bucket bounds)",
                            q.count,
                            ms(q.p50, q.count),
                            ms(q.p99, q.count)
                        ),
                    );
                }
                if let Some(per_commit) = server.commands_per_commit {
                    row(
                        "server group commit",
                        format!(
                            "{per_commit:.1} commands per commit, {} writers committing",
                            server.writers_committing
                        ),
                    );
                }
            } else {
                row("server latency", server.note.clone());
            }
        }
        if let Some(peak) = self.server_peak_rss_kib {
            row(
                "server memory",
                format!(
                    "peak RSS {:.1} MiB, last {:.1} MiB",
                    peak as f64 / 1024.0,
                    self.server_last_rss_kib.unwrap_or(0) as f64 / 1024.0
                ),
            );
        }
        row("writer queue max", self.queue_depth_max.to_string());
        if self.server_kills > 0 {
            row("server kills", self.server_kills.to_string());
            let with_acks = self.acks_between_kills.iter().filter(|&&n| n > 0).count();
            row(
                "acks between kills",
                format!(
                    "{with_acks} of {} gaps had acknowledgements",
                    self.acks_between_kills.len()
                ),
            );
        }
        match &self.audit_skipped {
            Some(why) => row("audit", format!("SKIPPED: {why}")),
            None => {
                row("lost", opt(self.lost));
                row("duplicates", opt(self.duplicates));
                row("order violations", opt(self.order_violations));
                if let Some(a) = &self.audit {
                    row("chain verifies", a.chain_ok.to_string());
                    row("replay deterministic", a.replay_deterministic.to_string());
                    row(
                        "replay = live",
                        a.live_equal.map_or("n/a".to_owned(), |v| v.to_string()),
                    );
                    row(
                        "committed, unacknowledged",
                        a.committed_unacknowledged.to_string(),
                    );
                    for p in a
                        .problems
                        .iter()
                        .chain(&a.lost_examples)
                        .chain(&a.duplicate_examples)
                        .chain(&a.order_examples)
                    {
                        row("  !", p.clone());
                    }
                }
                row(
                    "state hash",
                    self.state_hash.clone().unwrap_or_else(|| "n/a".into()),
                );
                row(
                    "audit",
                    if self.audit_passed {
                        "PASSED"
                    } else {
                        "FAILED"
                    }
                    .into(),
                );
            }
        }
        if let Some(slo) = &self.slo {
            let results: Vec<String> = slo
                .results
                .iter()
                .map(|r| {
                    format!(
                        "{} (measured {:.4}) {}",
                        r.term,
                        r.value,
                        if r.ok { "ok" } else { "MISSED" }
                    )
                })
                .collect();
            row(
                "service",
                format!(
                    "{}{}: {}",
                    if slo.passed { "met" } else { "MISSED" },
                    if slo.default {
                        " (default objective; give --slo to choose)"
                    } else {
                        ""
                    },
                    results.join("; ")
                ),
            );
        }
        for e in self.error_examples.iter().take(5) {
            row("  error example", e.clone());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// HTML

const COLORS: [&str; 6] = [
    "#1f77b4", "#2ca02c", "#d62728", "#ff7f0e", "#9467bd", "#8c564b",
];

struct Series {
    name: String,
    color: &'static str,
    points: Vec<(f64, f64)>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" upper bound for an axis.
fn nice_max(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    markers: &[f64],
) -> String {
    let (w, h, left, right, top, bottom) = (880.0, 280.0, 70.0, 20.0, 30.0, 45.0);
    let x_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(markers.iter().copied())
            .fold(0.0, f64::max),
    );
    let y_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let px = |x: f64| left + (x / x_max) * (w - left - right);
    let py = |y: f64| h - bottom - (y / y_max) * (h - top - bottom);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><rect width="100%" height="100%" fill="white"/><text x="{left}" y="18" font-size="14" font-weight="bold">{t}</text>"#,
        t = escape(title)
    );
    for i in 0..=5 {
        let fy = y_max * f64::from(i) / 5.0;
        let fx = x_max * f64::from(i) / 5.0;
        let _ = write!(
            svg,
            r##"<line x1="{l}" x2="{r}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{tx}" y="{ty}" font-size="11" text-anchor="end">{fy}</text><text x="{x}" y="{bx}" font-size="11" text-anchor="middle">{fx}</text>"##,
            l = left,
            r = w - right,
            y = py(fy),
            tx = left - 6.0,
            ty = py(fy) + 4.0,
            fy = format_tick(fy),
            x = px(fx),
            bx = h - bottom + 16.0,
            fx = format_tick(fx),
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{b}" stroke="#333"/><line x1="{left}" x2="{r}" y1="{b}" y2="{b}" stroke="#333"/><text x="{cx}" y="{lx}" font-size="12" text-anchor="middle">{xl}</text><text x="14" y="{cy}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {cy})">{yl}</text>"##,
        b = h - bottom,
        r = w - right,
        cx = (left + w - right) / 2.0,
        lx = h - 8.0,
        cy = (top + h - bottom) / 2.0,
        xl = escape(x_label),
        yl = escape(y_label),
    );
    for m in markers {
        let _ = write!(
            svg,
            r##"<line x1="{x}" x2="{x}" y1="{top}" y2="{b}" stroke="#d62728" stroke-dasharray="4 3"/><text x="{x}" y="{ty}" font-size="10" fill="#d62728">kill</text>"##,
            x = px(*m),
            b = h - bottom,
            ty = top + 10.0,
        );
    }
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.6" points="{p}"/><rect x="{lx}" y="{ly}" width="12" height="3" fill="{c}"/><text x="{tx}" y="{ty}" font-size="11">{n}</text>"#,
            c = s.color,
            p = points.join(" "),
            lx = w - right - 170.0,
            ly = top + 4.0 + 14.0 * i as f64,
            tx = w - right - 152.0,
            ty = top + 9.0 + 14.0 * i as f64,
            n = escape(&s.name),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn format_tick(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

fn bar_chart(title: &str, loads: &[InstitutionLoad]) -> String {
    let n = loads.len().max(1) as f64;
    let (w, h, left, bottom, top) = (880.0, 300.0, 60.0, 70.0, 30.0);
    let y_max = nice_max(
        loads
            .iter()
            .map(|l| f64::from(l.demand.max(l.seats)))
            .fold(0.0, f64::max),
    );
    let slot = (w - left - 20.0) / n;
    let py = |y: f64| h - bottom - (y / y_max) * (h - top - bottom);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><rect width="100%" height="100%" fill="white"/><text x="{left}" y="18" font-size="14" font-weight="bold">{t}</text>"#,
        t = escape(title)
    );
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{r}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{tx}" y="{ty}" font-size="11" text-anchor="end">{v}</text>"##,
            r = w - 20.0,
            y = py(v),
            tx = left - 6.0,
            ty = py(v) + 4.0,
            v = format_tick(v),
        );
    }
    for (i, l) in loads.iter().enumerate() {
        let x = left + slot * i as f64;
        let bw = (slot * 0.4).max(1.0);
        let demand_color = if l.demand > l.seats {
            "#d62728"
        } else {
            "#1f77b4"
        };
        let _ = write!(
            svg,
            r##"<rect x="{x1:.1}" y="{yd:.1}" width="{bw:.1}" height="{hd:.1}" fill="{demand_color}"><title>{name}: demand {d}, seats {s}</title></rect><rect x="{x2:.1}" y="{ys:.1}" width="{bw:.1}" height="{hs:.1}" fill="#aaa"><title>{name}: seats {s}</title></rect><text x="{tx:.1}" y="{ty}" font-size="9" transform="rotate(60 {tx:.1} {ty})">{name}</text>"##,
            x1 = x + slot * 0.1,
            x2 = x + slot * 0.1 + bw,
            yd = py(f64::from(l.demand)),
            hd = h - bottom - py(f64::from(l.demand)),
            ys = py(f64::from(l.seats)),
            hs = h - bottom - py(f64::from(l.seats)),
            d = l.demand,
            s = l.seats,
            name = escape(&format!("{}/{}", l.authority, l.institution)),
            tx = x + slot * 0.3,
            ty = h - bottom + 10.0,
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{lx}" y="24" width="12" height="8" fill="#1f77b4"/><text x="{tx}" y="32" font-size="11">demand (red: above seats)</text><rect x="{lx}" y="38" width="12" height="8" fill="#aaa"/><text x="{tx}" y="46" font-size="11">seats</text>"##,
        lx = w - 230.0,
        tx = w - 214.0,
    );
    svg.push_str("</svg>");
    svg
}

pub fn html(report: &Report, recorder: &Recorder) -> String {
    let bucket_s = recorder.bucket.as_secs_f64();
    let rate = |f: &dyn Fn(&crate::recorder::Bucket) -> u64| -> Vec<(f64, f64)> {
        recorder
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| (i as f64 * bucket_s, f(b) as f64 / bucket_s))
            .collect()
    };
    let arrivals = line_chart(
        "Arrivals and acknowledgements",
        "seconds since start (wall)",
        "per second",
        &[
            Series {
                name: "sends (intended)".into(),
                color: COLORS[0],
                points: rate(&|b| b.arrivals),
            },
            Series {
                name: "acknowledged".into(),
                color: COLORS[1],
                points: rate(&|b| b.acknowledged),
            },
            Series {
                name: "errors".into(),
                color: COLORS[2],
                points: rate(&|b| b.errors),
            },
        ],
        &recorder.kills,
    );
    let percentile = |q: f64| -> Vec<(f64, f64)> {
        recorder
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.latency.is_empty())
            .map(|(i, b)| {
                (
                    i as f64 * bucket_s,
                    b.latency.value_at_quantile(q) as f64 / 1000.0,
                )
            })
            .collect()
    };
    let latency = line_chart(
        "Latency from the intended send time, by send time",
        "seconds since start (wall)",
        "milliseconds",
        &[
            Series {
                name: "p50".into(),
                color: COLORS[0],
                points: percentile(0.5),
            },
            Series {
                name: "p90".into(),
                color: COLORS[3],
                points: percentile(0.9),
            },
            Series {
                name: "p99".into(),
                color: COLORS[2],
                points: percentile(0.99),
            },
        ],
        &recorder.kills,
    );
    let depth = line_chart(
        "Writer queue depth (commands waiting)",
        "seconds since start (wall)",
        "commands",
        &[Series {
            name: "queue depth".into(),
            color: COLORS[4],
            points: recorder
                .queue_depth
                .iter()
                .map(|&(t, d)| (t, d as f64))
                .collect(),
        }],
        &recorder.kills,
    );
    let mut loads = report.institutions.clone();
    loads.sort_by(|a, b| {
        b.demand
            .cmp(&a.demand)
            .then(a.institution.cmp(&b.institution))
    });
    let overloaded = loads.iter().filter(|l| l.demand > l.seats).count();
    let under_half = loads.iter().filter(|l| 2 * l.demand < l.seats).count();
    let n_institutions = loads.len();
    let shown: Vec<InstitutionLoad> = if loads.len() > 40 {
        // The 30 most wanted and the 10 least wanted.
        loads[..30]
            .iter()
            .chain(&loads[loads.len() - 10..])
            .cloned()
            .collect()
    } else {
        loads
    };
    let demand = bar_chart(
        "Demand (first choice) against seats per institution",
        &shown,
    );
    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    // Two verdicts, never merged: nothing lost (the audit) and parents served (the service
    // objective). A run that loses nothing but turns parents away is not green.
    let audit_badge = match (&report.audit, report.audit_passed) {
        (None, _) => ("audit skipped", "#7f7f7f"),
        (Some(_), true) => ("audit passed", "#2ca02c"),
        (Some(_), false) => ("audit FAILED", "#d62728"),
    };
    let service_badge = match &report.slo {
        Some(s) if s.passed => (format!("service met: {}", s.spec), "#2ca02c"),
        Some(s) => (format!("service MISSED: {}", s.spec), "#d62728"),
        None => ("no service objective".to_owned(), "#7f7f7f"),
    };
    let objective_note = match &report.slo {
        Some(s) if s.default => format!(
            "<p>No objective was given: the default <code>{}</code> was applied (give <code>--slo</code> to choose).</p>",
            escape(&s.spec)
        ),
        _ => String::new(),
    };
    let schedule_note = match &report.generator.why {
        Some(why) => format!(
            "<p class=\"warn\">The load did not keep its schedule: {}</p>",
            escape(why)
        ),
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ochered simulate: {name}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:920px;color:#222}}h1{{font-size:20px}}h2{{font-size:16px;margin-top:28px}}pre{{background:#f6f6f6;padding:12px;overflow:auto;font-size:12px}}.status{{color:white;padding:2px 8px;border-radius:4px;font-size:14px;margin-right:6px}}.warn{{color:#d62728}}code{{background:#f0f0f0;padding:1px 4px}}figure{{margin:12px 0}}</style></head>
<body>
<h1>ochered simulate: {name}</h1>
<p><span class="status" id="audit" style="background:{audit_color}">{audit_status}</span><span class="status" id="service" style="background:{service_color}">{service_status}</span></p>
{objective_note}{schedule_note}
<p>Reproduce with <code>{command}</code></p>
<h2>Summary</h2>
<pre>{summary}</pre>
<h2>Load</h2>
<figure id="arrivals">{arrivals}</figure>
<figure id="latency">{latency}</figure>
<figure id="queue-depth">{depth}</figure>
<h2>Demand against seats</h2>
<p>{n_institutions} institutions; {overloaded} wanted by more applicants than they have seats, {under_half} less than half full.</p>
<figure id="demand">{demand}</figure>
<h2>Report (JSON)</h2>
<pre>{json}</pre>
</body></html>
"#,
        name = escape(&report.scenario),
        audit_color = audit_badge.1,
        audit_status = audit_badge.0,
        service_color = service_badge.1,
        service_status = escape(&service_badge.0),
        command = escape(&report.command),
        summary = escape(&report.summary()),
        json = escape(&json),
    )
}
