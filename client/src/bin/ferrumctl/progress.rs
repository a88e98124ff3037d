//! What ferrumctl shows while a long operation runs, and the `group progress` lag table.
//!
//! A bar is drawn on stderr only when stdout and stderr are both terminals and `--json` is off;
//! otherwise nothing is drawn and the commands print exactly the lines they always print, so
//! pipes, scripts and log files never see control characters.

use std::io::IsTerminal;
use std::time::Duration;

use ferrum_client::admin::QueueProgress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Steps (messages, brokers) counted against a known total.
pub const STEPS: &str = "{prefix} [{bar:40}] {pos}/{len} ({elapsed}, eta {eta}) {msg}";
/// Seconds of a run limited by time.
pub const SECONDS: &str = "{prefix} [{bar:40}] {pos}/{len} s {msg}";

/// Whether bars are drawn: an interactive terminal and no `--json`.
pub fn interactive(json: bool) -> bool {
    !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// A progress bar, or nothing when output is not interactive.
#[derive(Debug, Clone, Default)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar of `len` steps with `template` (see [`STEPS`], [`SECONDS`]), drawn only if `show`.
    pub fn new(show: bool, len: u64, template: &str, prefix: &str) -> Self {
        if !show || len == 0 {
            return Progress(None);
        }
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(prefix.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress(Some(bar))
    }

    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }

    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    /// Moves the bar to `pos`, never past its end (a run may overshoot its estimate).
    pub fn set_position(&self, pos: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(bar.length().map_or(pos, |len| pos.min(len)));
        }
    }

    pub fn set_message(&self, msg: impl FnOnce() -> String) {
        if let Some(bar) = &self.0 {
            bar.set_message(msg());
        }
    }

    /// Whether the bar has reached its length (a hidden one never has).
    pub fn is_full(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|bar| bar.length().is_some_and(|len| bar.position() >= len))
    }

    /// Runs `print` with the bar cleared, so printed lines never interleave with it.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Removes the bar; the lines printed meanwhile stay.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Messages a consumer reads before it is caught up: from each queue's start offset to its
/// max offset, capped by `--count`.
pub fn catch_up(queues: &[(i64, i64)], count: Option<u64>) -> u64 {
    let behind: u64 = queues
        .iter()
        .map(|&(start, max)| u64::try_from(max - start).unwrap_or(0))
        .sum();
    count.map_or(behind, |c| behind.min(c))
}

/// The `group progress` table: one row per queue, a subtotal after each broker's queues and
/// the total lag over every broker.
pub fn lag_table(rows: &[QueueProgress]) -> String {
    let line = |broker: &str, queue: &str, broker_offset: &str, consumer: &str, lag: &str| {
        format!("{broker:<20} {queue:>6} {broker_offset:>14} {consumer:>15} {lag:>10}\n")
    };
    let mut out = line("BROKER", "QUEUE", "BROKER_OFFSET", "CONSUMER_OFFSET", "LAG");
    let mut sorted: Vec<&QueueProgress> = rows.iter().collect();
    sorted.sort_by(|a, b| (&a.broker_name, a.queue_id).cmp(&(&b.broker_name, b.queue_id)));
    let (mut total, mut brokers) = (0i64, 0usize);
    let mut i = 0;
    while i < sorted.len() {
        let broker = &sorted[i].broker_name;
        let mut subtotal = 0i64;
        while i < sorted.len() && &sorted[i].broker_name == broker {
            let r = sorted[i];
            let consumer = r.consumer_offset.map_or("-".to_owned(), |o| o.to_string());
            out.push_str(&line(
                &r.broker_name,
                &r.queue_id.to_string(),
                &r.broker_offset.to_string(),
                &consumer,
                &r.lag.to_string(),
            ));
            subtotal += r.lag;
            i += 1;
        }
        out.push_str(&line(broker, "all", "", "", &subtotal.to_string()));
        total += subtotal;
        brokers += 1;
    }
    out.push_str(&format!(
        "total lag: {total} over {brokers} broker(s), {} queue(s)\n",
        rows.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        broker: &str,
        queue_id: i32,
        broker_offset: i64,
        consumer: Option<i64>,
    ) -> QueueProgress {
        QueueProgress {
            broker_name: broker.into(),
            queue_id,
            broker_offset,
            consumer_offset: consumer,
            lag: broker_offset - consumer.unwrap_or(0),
        }
    }

    #[test]
    fn templates_parse() {
        for t in [STEPS, SECONDS] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }

    #[test]
    fn a_hidden_bar_does_nothing_and_runs_prints() {
        let p = Progress::new(false, 10, STEPS, "sent");
        assert!(!p.is_shown());
        p.inc(3);
        assert!(!p.is_full());
        assert_eq!(p.suspend(|| 7), 7);
        p.finish();
        assert!(!Progress::new(true, 0, STEPS, "nothing to do").is_shown());
    }

    #[test]
    fn catch_up_sums_queues_and_respects_count() {
        assert_eq!(catch_up(&[(0, 10), (5, 7), (9, 3)], None), 12);
        assert_eq!(catch_up(&[(0, 10), (5, 7)], Some(4)), 4);
        assert_eq!(catch_up(&[], Some(4)), 0);
    }

    #[test]
    fn lag_table_totals_per_broker_and_overall() {
        let rows = vec![
            row("broker-b", 0, 5, Some(5)),
            row("broker-a", 1, 10, Some(4)),
            row("broker-a", 0, 8, None),
            row("broker-b", 1, 9, Some(2)),
        ];
        let table = lag_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 1 + 4 + 2 + 1, "{table}");
        let cells = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(cells(lines[1]), ["broker-a", "0", "8", "-", "8"]);
        assert_eq!(cells(lines[2]), ["broker-a", "1", "10", "4", "6"]);
        assert_eq!(cells(lines[3]), ["broker-a", "all", "14"]);
        assert_eq!(cells(lines[6]), ["broker-b", "all", "7"]);
        assert_eq!(lines[7], "total lag: 21 over 2 broker(s), 4 queue(s)");
    }
}
