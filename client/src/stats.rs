//! Latency and throughput statistics for `ferrumctl bench`.

use std::time::Duration;

use serde::Serialize;

/// Collects latencies (µs). Exact: the samples are kept and sorted once at the end. Samples
/// recorded with [`LatencyRecorder::record_at`] are also kept by the second of the run they
/// completed in, for the latency-over-time plot.
#[derive(Debug, Default, Clone)]
pub struct LatencyRecorder {
    samples_us: Vec<u64>,
    by_second: Vec<Vec<u64>>,
}

impl LatencyRecorder {
    pub fn record(&mut self, latency: Duration) {
        self.samples_us.push(latency.as_micros() as u64);
    }

    /// Records a latency that completed `since_start` into the run.
    pub fn record_at(&mut self, since_start: Duration, latency: Duration) {
        let us = latency.as_micros() as u64;
        self.samples_us.push(us);
        let second = usize::try_from(since_start.as_secs()).unwrap_or(usize::MAX);
        // A sample far past any plausible run is kept in the summary but not in the series.
        if second < MAX_SECONDS {
            if self.by_second.len() <= second {
                self.by_second.resize_with(second + 1, Vec::new);
            }
            self.by_second[second].push(us);
        }
    }

    pub fn merge(&mut self, other: LatencyRecorder) {
        self.samples_us.extend(other.samples_us);
        if self.by_second.len() < other.by_second.len() {
            self.by_second.resize_with(other.by_second.len(), Vec::new);
        }
        for (mine, theirs) in self.by_second.iter_mut().zip(other.by_second) {
            mine.extend(theirs);
        }
    }

    /// p50 and p99 of the samples that completed in each second of the run; `None` for a
    /// second in which nothing completed.
    pub fn per_second(&self) -> Vec<SecondLatency> {
        self.by_second
            .iter()
            .map(|samples| {
                let mut sorted = samples.clone();
                sorted.sort_unstable();
                SecondLatency {
                    count: sorted.len() as u64,
                    p50_us: (!sorted.is_empty()).then(|| percentile(&sorted, 50.0)),
                    p99_us: (!sorted.is_empty()).then(|| percentile(&sorted, 99.0)),
                }
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.samples_us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples_us.is_empty()
    }

    pub fn summary(mut self) -> LatencySummary {
        self.samples_us.sort_unstable();
        let s = &self.samples_us;
        let mean = if s.is_empty() {
            0.0
        } else {
            s.iter().map(|&v| v as f64).sum::<f64>() / s.len() as f64
        };
        LatencySummary {
            count: s.len() as u64,
            mean_us: mean,
            p50_us: percentile(s, 50.0),
            p99_us: percentile(s, 99.0),
            p999_us: percentile(s, 99.9),
            max_us: s.last().copied().unwrap_or(0),
        }
    }
}

/// Nearest-rank percentile of sorted samples: the smallest value with at least `p`% of the
/// samples at or below it. 0 for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // The epsilon keeps float error (0.999 * 1000 = 999.0000000000001) from adding a rank.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// Seconds of a run kept in the per-second latency series (a day).
const MAX_SECONDS: usize = 86_400;

/// The latency of the operations that completed in one second of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecondLatency {
    pub count: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// Messages and bytes per second over `elapsed`.
pub fn throughput(messages: u64, bytes: u64, elapsed: Duration) -> (f64, f64) {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return (0.0, 0.0);
    }
    (
        messages as f64 / secs,
        bytes as f64 / secs / (1024.0 * 1024.0),
    )
}

/// One line of a chart panel: its legend, colour and one value per second (`None` where there
/// is nothing to draw, which breaks the line).
struct Line<'a> {
    name: &'a str,
    colour: &'a str,
    values: Vec<Option<f64>>,
}

const CHART_W: f64 = 800.0;
const PANEL_H: f64 = 260.0;
const PAD: f64 = 50.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws one panel (axes, the largest value with its unit, one polyline per unbroken run of
/// each line, a legend) whose top edge is at `top`, with `seconds` points across.
fn panel(
    out: &mut String,
    top: f64,
    heading: &str,
    unit: &str,
    seconds: usize,
    lines: &[Line<'_>],
) {
    use std::fmt::Write;
    let bottom = top + PANEL_H - PAD;
    let plot_top = top + PAD;
    let right = CHART_W - PAD;
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .fold(0.0_f64, |m, &v| m.max(v));
    let max = if max > 0.0 { max } else { 1.0 };
    let step = if seconds > 1 {
        (right - PAD) / (seconds - 1) as f64
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "<text x=\"{PAD}\" y=\"{:.1}\">{}</text>",
        top + 20.0,
        escape(heading)
    );
    let _ = writeln!(
        out,
        "<line x1=\"{PAD}\" y1=\"{bottom:.1}\" x2=\"{right}\" y2=\"{bottom:.1}\" stroke=\"black\"/>"
    );
    let _ = writeln!(
        out,
        "<line x1=\"{PAD}\" y1=\"{plot_top:.1}\" x2=\"{PAD}\" y2=\"{bottom:.1}\" stroke=\"black\"/>"
    );
    let shown = if max >= 100.0 {
        format!("{max:.0}")
    } else {
        format!("{max:.2}")
    };
    let _ = writeln!(
        out,
        "<text x=\"5\" y=\"{:.1}\">{shown} {}</text>",
        plot_top - 5.0,
        escape(unit)
    );
    let _ = writeln!(
        out,
        "<text x=\"{right}\" y=\"{:.1}\" text-anchor=\"end\">{seconds} s</text>",
        bottom + 20.0
    );
    for (n, line) in lines.iter().enumerate() {
        let mut runs: Vec<Vec<String>> = vec![Vec::new()];
        for (i, v) in line.values.iter().enumerate() {
            match v {
                Some(v) => {
                    let x = PAD + step * i as f64;
                    let y = bottom - (v / max) * (bottom - plot_top);
                    runs.last_mut()
                        .expect("a run")
                        .push(format!("{x:.1},{y:.1}"));
                }
                None if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
                None => {}
            }
        }
        runs.retain(|r| !r.is_empty());
        if runs.is_empty() {
            runs.push(Vec::new());
        }
        for run in runs {
            let _ = writeln!(
                out,
                "<polyline data-series=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
                escape(line.name),
                line.colour,
                run.join(" ")
            );
        }
        let lx = right - 120.0 * (lines.len() - n) as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{lx:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 20.0,
            line.colour,
            lx + 25.0,
            top + 24.0,
            escape(line.name),
            y = top + 20.0,
        );
    }
}

/// The bench plot as a standalone SVG document: messages per second on top, and below it the
/// p50 and p99 latency (ms) of the operations that completed in each second, on one time axis.
pub fn svg_bench_chart(title: &str, per_second: &[u64], latency: &[SecondLatency]) -> String {
    let seconds = per_second.len().max(latency.len());
    let height = 40.0 + 2.0 * PANEL_H;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_W}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{PAD}\" y=\"20\" font-size=\"14\">{}</text>\n",
        escape(title)
    );
    let throughput = Line {
        name: "msgs/s",
        colour: "steelblue",
        values: per_second.iter().map(|&v| Some(v as f64)).collect(),
    };
    panel(
        &mut out,
        30.0,
        "messages per second",
        "msgs/s",
        seconds,
        &[throughput],
    );
    let ms = |f: fn(&SecondLatency) -> Option<u64>| -> Vec<Option<f64>> {
        latency
            .iter()
            .map(|s| f(s).map(|us| us as f64 / 1000.0))
            .collect()
    };
    panel(
        &mut out,
        30.0 + PANEL_H,
        "latency of the operations completed in each second",
        "ms",
        seconds,
        &[
            Line {
                name: "p50",
                colour: "seagreen",
                values: ms(|s| s.p50_us),
            },
            Line {
                name: "p99",
                colour: "firebrick",
                values: ms(|s| s.p99_us),
            },
        ],
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&s, 50.0), 500);
        assert_eq!(percentile(&s, 99.0), 990);
        assert_eq!(percentile(&s, 99.9), 999);
        assert_eq!(percentile(&s, 100.0), 1000);
        assert_eq!(percentile(&[7], 99.9), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn summary_merges_workers() {
        let mut a = LatencyRecorder::default();
        let mut b = LatencyRecorder::default();
        for ms in 1..=50 {
            a.record(Duration::from_millis(ms));
        }
        for ms in 51..=100 {
            b.record(Duration::from_millis(ms));
        }
        a.merge(b);
        let s = a.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_us, 50_000);
        assert_eq!(s.p99_us, 99_000);
        assert_eq!(s.max_us, 100_000);
        assert!((s.mean_us - 50_500.0).abs() < 1e-6);
    }

    /// The points of every polyline of `series`, in document order, as (x, y).
    fn polylines(svg: &str, series: &str) -> Vec<Vec<(f64, f64)>> {
        svg.split(&format!("<polyline data-series=\"{series}\""))
            .skip(1)
            .map(|rest| {
                let points = rest
                    .split("points=\"")
                    .nth(1)
                    .and_then(|p| p.split('"').next())
                    .expect("points");
                points
                    .split(' ')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (x, y) = p.split_once(',').expect("x,y");
                        (x.parse().expect("x"), y.parse().expect("y"))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn per_second_latency_follows_completion_time_across_workers() {
        let mut a = LatencyRecorder::default();
        let mut b = LatencyRecorder::default();
        for ms in 1..=100 {
            a.record_at(Duration::from_millis(10 * ms), Duration::from_millis(ms));
        }
        // Second 2 is slow.
        b.record_at(Duration::from_millis(2_500), Duration::from_millis(400));
        b.record_at(Duration::from_millis(2_600), Duration::from_millis(200));
        a.merge(b);
        let per_second = a.per_second();
        assert_eq!(per_second.len(), 3);
        // Second 0 holds 1..=99 ms (the 100th completed at 1.000 s).
        assert_eq!(per_second[0].count, 99);
        assert_eq!(per_second[0].p50_us, Some(50_000));
        assert_eq!(per_second[0].p99_us, Some(99_000));
        assert_eq!(per_second[1].count, 1);
        assert_eq!(per_second[1].p50_us, Some(100_000));
        assert_eq!(per_second[2].p50_us, Some(200_000));
        assert_eq!(per_second[2].p99_us, Some(400_000));
        // The whole-run summary still has every sample.
        assert_eq!(a.summary().count, 102);
        let mut gap = LatencyRecorder::default();
        gap.record_at(Duration::from_millis(2_100), Duration::from_millis(3));
        let s = gap.per_second();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            SecondLatency {
                count: 0,
                p50_us: None,
                p99_us: None
            }
        );
    }

    #[test]
    fn bench_chart_draws_throughput_and_latency_on_one_time_axis() {
        let latency = |p50: u64, p99: u64| SecondLatency {
            count: 10,
            p50_us: Some(p50),
            p99_us: Some(p99),
        };
        let stall = SecondLatency {
            count: 0,
            p50_us: None,
            p99_us: None,
        };
        let seconds = [
            latency(1_000, 4_000),
            latency(2_000, 9_000),
            stall,
            latency(1_500, 3_000),
        ];
        let svg = svg_bench_chart("produce a <b>", &[100, 300, 0, 200], &seconds);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("produce a &lt;b&gt;"));
        let msgs = polylines(&svg, "msgs/s");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].len(), 4);
        // A second without completions breaks the latency lines instead of drawing zero.
        let p50 = polylines(&svg, "p50");
        let p99 = polylines(&svg, "p99");
        assert_eq!(p50.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(p99.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
        // Same x for the same second in both panels; p99 is drawn above p50 (smaller y).
        let p50: Vec<_> = p50.concat();
        let p99: Vec<_> = p99.concat();
        let msgs_x: Vec<f64> = msgs[0].iter().map(|p| p.0).collect();
        for (a, b) in p50.iter().zip(&p99) {
            assert_eq!(a.0, b.0);
            assert!(b.1 <= a.1, "p99 {b:?} above p50 {a:?}");
        }
        assert_eq!(p50[2].0, msgs_x[3]);
        // The latency panel lies below the throughput panel and names its scale (9 ms).
        let lowest_msgs = msgs[0].iter().map(|p| p.1).fold(0.0, f64::max);
        assert!(p99.iter().all(|p| p.1 > lowest_msgs));
        assert!(svg.contains("9.00 ms"), "{svg}");
        let empty = svg_bench_chart("empty", &[], &[]);
        assert!(empty.contains("points=\"\""));
    }

    #[test]
    fn throughput_per_second() {
        let (mps, mbps) = throughput(2_000, 2 * 1024 * 1024, Duration::from_secs(2));
        assert!((mps - 1_000.0).abs() < 1e-9);
        assert!((mbps - 1.0).abs() < 1e-9);
        assert_eq!(throughput(5, 5, Duration::ZERO), (0.0, 0.0));
    }
}
