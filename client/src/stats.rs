//! Latency and throughput statistics for `ferrumctl bench`.

use std::time::Duration;

use serde::Serialize;

/// Collects latencies (µs). Exact: the samples are kept and sorted once at the end.
#[derive(Debug, Default, Clone)]
pub struct LatencyRecorder {
    samples_us: Vec<u64>,
}

impl LatencyRecorder {
    pub fn record(&mut self, latency: Duration) {
        self.samples_us.push(latency.as_micros() as u64);
    }

    pub fn merge(&mut self, other: LatencyRecorder) {
        self.samples_us.extend(other.samples_us);
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

/// A line chart of a per-second series as a standalone SVG document.
pub fn svg_chart(title: &str, series: &[u64]) -> String {
    const W: f64 = 800.0;
    const H: f64 = 300.0;
    const PAD: f64 = 50.0;
    let max = series.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = if series.len() > 1 {
        (W - 2.0 * PAD) / (series.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let x = PAD + step * i as f64;
            let y = H - PAD - (v as f64 / max) * (H - 2.0 * PAD);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let escaped = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n",
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
            "<text x=\"{pad}\" y=\"20\">{title}</text>\n",
            "<line x1=\"{pad}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"black\"/>\n",
            "<line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{bottom}\" stroke=\"black\"/>\n",
            "<text x=\"5\" y=\"{pad}\">{max}</text>\n",
            "<text x=\"{right}\" y=\"{label}\" text-anchor=\"end\">{secs} s</text>\n",
            "<polyline fill=\"none\" stroke=\"steelblue\" stroke-width=\"2\" points=\"{points}\"/>\n",
            "</svg>\n"
        ),
        w = W,
        h = H,
        pad = PAD,
        bottom = H - PAD,
        right = W - PAD,
        label = H - PAD + 20.0,
        title = escaped,
        max = max as u64,
        secs = series.len(),
        points = points.join(" "),
    )
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

    #[test]
    fn svg_chart_has_one_point_per_second() {
        let svg = svg_chart("a <b>", &[1, 5, 3]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a &lt;b&gt;"));
        let points = svg
            .split("points=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .expect("points");
        assert_eq!(points.split(' ').count(), 3);
        assert!(svg_chart("empty", &[]).contains("points=\"\""));
    }

    #[test]
    fn throughput_per_second() {
        let (mps, mbps) = throughput(2_000, 2 * 1024 * 1024, Duration::from_secs(2));
        assert!((mps - 1_000.0).abs() < 1e-9);
        assert!((mbps - 1.0).abs() < 1e-9);
        assert_eq!(throughput(5, 5, Duration::ZERO), (0.0, 0.0));
    }
}
