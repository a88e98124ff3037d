//! Replication metrics in the broker registry, all read from [`super::HaState`] at scrape time
//! so the streaming path does no metric work.

use prometheus::{GaugeVec, IntCounter, IntGauge, IntGaugeVec, Opts};

use crate::metrics::BrokerMetrics;
use crate::processor::BrokerCore;

/// Brings a counter up to a monotonic total kept elsewhere.
fn catch_up(counter: &IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// Registers the replication series and the hook that sets them on every scrape.
pub fn install(metrics: &BrokerMetrics) -> Result<(), prometheus::Error> {
    let lag_bytes = metrics.register(IntGaugeVec::new(
        Opts::new(
            "ferrum_broker_replication_lag_bytes",
            "On a master: CommitLog bytes each authenticated slave has not acknowledged",
        ),
        &["slave_broker_id"],
    )?);
    let lag_seconds = metrics.register(GaugeVec::new(
        Opts::new(
            "ferrum_broker_replication_lag_seconds",
            "On a master: time since each slave last held everything this master had (0 when caught up)",
        ),
        &["slave_broker_id"],
    )?);
    let slaves = metrics.register(IntGauge::new(
        "ferrum_broker_ha_slaves_connected",
        "Authenticated slaves streaming from this master",
    )?);
    let epoch = metrics.register(IntGauge::new(
        "ferrum_broker_ha_epoch",
        "The replication epoch this broker is in (a promotion opens the next one)",
    )?);
    let truncated_messages = metrics.register(IntCounter::new(
        "ferrum_broker_ha_truncated_messages_total",
        "Messages dropped as a divergent CommitLog tail on rejoining a newer master",
    )?);
    let truncated_bytes = metrics.register(IntCounter::new(
        "ferrum_broker_ha_truncated_bytes_total",
        "CommitLog bytes dropped as a divergent tail on rejoining a newer master",
    )?);
    let rejections = metrics.register(IntCounter::new(
        "ferrum_broker_ha_handshake_rejections_total",
        "HA handshakes this broker refused (secret, group, version, stale master)",
    )?);
    let demotions = metrics.register(IntCounter::new(
        "ferrum_broker_ha_demotions_total",
        "Times this running master found a newer-epoch master of its group and became its slave",
    )?);
    metrics.on_scrape(Box::new(move |core: &BrokerCore| {
        let status = core.ha.status(&core.config, &core.store);
        // Reset so a slave that left does not keep reporting its last lag.
        lag_bytes.reset();
        lag_seconds.reset();
        for slave in &status.slaves {
            let id = slave.broker_id.to_string();
            let bytes = lag_bytes.with_label_values(&[id.as_str()]);
            // Two connections from one brokerId (a reconnect in progress): report the worse.
            bytes.set(bytes.get().max(slave.lag_bytes));
            let seconds = lag_seconds.with_label_values(&[id.as_str()]);
            seconds.set(seconds.get().max(slave.lag_millis as f64 / 1000.0));
        }
        slaves.set(status.slaves.len() as i64);
        epoch.set(i64::from(status.epoch));
        catch_up(&truncated_messages, status.truncated_messages);
        catch_up(&truncated_bytes, status.truncated_bytes);
        let (rejected, demoted) = core.ha.rejections_and_demotions();
        catch_up(&rejections, rejected);
        catch_up(&demotions, demoted);
    }));
    Ok(())
}
