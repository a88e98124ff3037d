//! Latency-based fault avoidance, as RocketMQ's `MQFaultStrategy`: a broker that answered slowly
//! or failed is avoided for a while that grows with its latency.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Latency thresholds (ms) and how long a broker at or above each is avoided (ms); RocketMQ's
/// `latencyMax` / `notAvailableDuration`.
const LATENCY_MAX_MS: [u64; 7] = [50, 100, 550, 1_000, 2_000, 3_000, 15_000];
const NOT_AVAILABLE_MS: [u64; 7] = [0, 0, 30_000, 60_000, 120_000, 180_000, 600_000];
/// The latency charged to a broker that could not be reached at all.
const ISOLATION_LATENCY: Duration = Duration::from_millis(30_000);

/// How long a broker with `latency` is avoided.
pub fn not_available_duration(latency: Duration) -> Duration {
    let ms = latency.as_millis() as u64;
    for i in (0..LATENCY_MAX_MS.len()).rev() {
        if ms >= LATENCY_MAX_MS[i] {
            return Duration::from_millis(NOT_AVAILABLE_MS[i]);
        }
    }
    Duration::ZERO
}

#[derive(Debug, Clone, Copy)]
struct FaultItem {
    latency: Duration,
    available_at: Instant,
}

/// Broker name → when it may be used again. Time is passed in so the logic is testable.
#[derive(Debug, Default)]
pub struct LatencyFaultTolerance {
    items: HashMap<String, FaultItem>,
}

impl LatencyFaultTolerance {
    /// Records a send to `broker` that took `latency`; `isolation` marks an unreachable broker.
    pub fn update(&mut self, broker: &str, latency: Duration, isolation: bool, now: Instant) {
        let latency = if isolation {
            ISOLATION_LATENCY
        } else {
            latency
        };
        let item = FaultItem {
            latency,
            available_at: now + not_available_duration(latency),
        };
        self.items.insert(broker.to_owned(), item);
    }

    pub fn is_available(&self, broker: &str, now: Instant) -> bool {
        self.items
            .get(broker)
            .is_none_or(|item| now >= item.available_at)
    }

    /// Among avoided brokers, the one that will be available first (lowest latency on a tie);
    /// what to use when every broker is avoided.
    pub fn least_bad(&self) -> Option<&str> {
        self.items
            .iter()
            .min_by_key(|(_, item)| (item.available_at, item.latency))
            .map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_rocketmq_table() {
        assert_eq!(
            not_available_duration(Duration::from_millis(10)),
            Duration::ZERO
        );
        assert_eq!(
            not_available_duration(Duration::from_millis(549)),
            Duration::ZERO
        );
        assert_eq!(
            not_available_duration(Duration::from_millis(550)),
            Duration::from_secs(30)
        );
        assert_eq!(
            not_available_duration(Duration::from_millis(2_500)),
            Duration::from_secs(120)
        );
        assert_eq!(
            not_available_duration(Duration::from_secs(40)),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn failed_broker_is_avoided_then_forgiven() {
        let t0 = Instant::now();
        let mut f = LatencyFaultTolerance::default();
        f.update("a", Duration::from_millis(3), false, t0);
        assert!(f.is_available("a", t0));
        f.update("b", Duration::ZERO, true, t0);
        assert!(!f.is_available("b", t0 + Duration::from_secs(599)));
        assert!(f.is_available("b", t0 + Duration::from_secs(600)));
        assert!(f.is_available("never-seen", t0));
        f.update("c", Duration::from_millis(600), false, t0);
        assert!(!f.is_available("c", t0 + Duration::from_secs(29)));
        // "a" is usable now, so it is the least bad; then "c" (30 s) before "b" (600 s).
        assert_eq!(f.least_bad(), Some("a"));
        f.items.remove("a");
        assert_eq!(f.least_bad(), Some("c"));
    }
}
