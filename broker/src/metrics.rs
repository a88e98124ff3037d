//! Broker metrics (prometheus crate) and the HTTP endpoint on `metricsPort` that serves
//! `/metrics`, `/healthz` and `/readyz`.
//!
//! Counters and histograms are updated where the work happens (send, pull, the remoting
//! server, registration, the store's flush thread). Gauges that describe state — CommitLog
//! offsets, disk usage, consumer lag, the broker's role — are computed from the store and the
//! offset manager when Prometheus scrapes, so they cost nothing between scrapes.
//!
//! Adding a metric from another module (replication, Raft): build it, hand it to
//! [`BrokerMetrics::register`], keep the returned clone and update it; for a value read at
//! scrape time, register a gauge and set it from a [`ScrapeHook`] added with
//! [`BrokerMetrics::on_scrape`]. Names start with `ferrum_broker_`, counters end in `_total`,
//! durations in `_seconds`, sizes in `_bytes`; labels stay bounded (topic, group, a slave's
//! broker id — never a client id or an offset). For example:
//!
//! ```ignore
//! let lag = core.metrics.register(IntGaugeVec::new(
//!     Opts::new("ferrum_broker_replication_lag_bytes", "CommitLog bytes a slave is behind"),
//!     &["slave_broker_id"],
//! )?);
//! ```

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

use ferrum_protocol::{RequestCode, ResponseCode};

use crate::processor::BrokerCore;

/// At most this many consumer-lag series are exported; a broker with more group/queue pairs
/// exports the first ones (sorted) and counts the rest in `consumer_lag_series_dropped`.
pub const MAX_LAG_SERIES: usize = 10_000;

/// Run on every scrape before the registry is gathered, to set state gauges.
pub type ScrapeHook = Box<dyn Fn(&BrokerCore) + Send + Sync>;

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Pulls include their long-poll hold (up to 25 s), so the buckets reach further.
const PULL_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
];
const FLUSH_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// What answered a request SYSTEM_BUSY (label `source` of `ferrum_broker_system_busy_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusySource {
    /// The remoting server: no processing slot within `waitTimeMillsInSendQueue`
    /// (`[TIMEOUT_CLEAN_QUEUE]`).
    Server,
    /// The store refused a write as busy (OS_PAGE_CACHE_BUSY, `[PC_SYNCHRONIZED]`).
    Store,
    /// Raft mode: a write held at the leader's closed write gate longer than a leadership
    /// transfer may hold it.
    RaftWriteGate,
    /// A leadership transfer refused: one is already running, or the target is behind.
    RaftTransfer,
}

impl BusySource {
    pub const ALL: [BusySource; 4] = [
        BusySource::Server,
        BusySource::Store,
        BusySource::RaftWriteGate,
        BusySource::RaftTransfer,
    ];

    pub fn label(self) -> &'static str {
        match self {
            BusySource::Server => "server",
            BusySource::Store => "store",
            BusySource::RaftWriteGate => "raft_write_gate",
            BusySource::RaftTransfer => "raft_transfer",
        }
    }

    /// The source of a SYSTEM_BUSY answer to a processed request. A transfer request answers
    /// it only when it refuses the transfer; a write in Raft mode goes through the Raft log,
    /// whose only busy answer is the closed write gate; any other write meets the store.
    pub fn of_answer(request: Option<RequestCode>, raft: bool) -> BusySource {
        match request {
            Some(RequestCode::FERRUM_RAFT_TRANSFER_LEADER) => BusySource::RaftTransfer,
            _ if raft => BusySource::RaftWriteGate,
            _ => BusySource::Store,
        }
    }
}

pub struct BrokerMetrics {
    registry: Registry,
    hooks: Mutex<Vec<ScrapeHook>>,
    pub messages_in: IntCounterVec,
    pub bytes_in: IntCounterVec,
    pub messages_out: IntCounterVec,
    pub bytes_out: IntCounterVec,
    pub send_latency: Histogram,
    pub pull_latency: Histogram,
    pub pull_held: IntGauge,
    pub requests: IntCounterVec,
    pub system_busy: IntCounterVec,
    pub connections: IntGauge,
    pub connections_opened: IntCounter,
    pub flush_latency: Histogram,
    pub store_recovery_seconds: Gauge,
    pub namesrv_registered: IntGauge,
    pub registrations: IntCounterVec,
    commitlog_min_offset: IntGauge,
    commitlog_max_offset: IntGauge,
    commitlog_size: IntGauge,
    commitlog_unflushed: IntGauge,
    disk_used_ratio: Gauge,
    consumer_lag: IntGaugeVec,
    consumer_lag_dropped: IntGauge,
    topics: IntGauge,
    info: GaugeVec,
    /// Raft-mode series (empty outside Raft mode); updated by `raft::metrics`.
    pub raft: crate::raft::metrics::RaftMetricSet,
}

impl std::fmt::Debug for BrokerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerMetrics").finish_non_exhaustive()
    }
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .unwrap_or_else(|e| unreachable_metric(name, e))
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable_metric(name, e))
}

fn int_gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|e| unreachable_metric(name, e))
}

/// The metric definitions are constants of this file; a bad one is a programming error that the
/// unit tests catch, so failing loudly at start-up is right.
fn unreachable_metric<T>(name: &str, error: prometheus::Error) -> T {
    panic!("metric {name} is malformed: {error}")
}

impl BrokerMetrics {
    pub fn new() -> Self {
        let m = BrokerMetrics {
            registry: Registry::new(),
            hooks: Mutex::new(Vec::new()),
            messages_in: counter_vec(
                "ferrum_broker_messages_in_total",
                "Messages stored by send requests, by topic",
                &["topic"],
            ),
            bytes_in: counter_vec(
                "ferrum_broker_bytes_in_total",
                "Message body bytes stored by send requests, by topic",
                &["topic"],
            ),
            messages_out: counter_vec(
                "ferrum_broker_messages_out_total",
                "Messages returned by pull requests, by topic and consumer group",
                &["topic", "group"],
            ),
            bytes_out: counter_vec(
                "ferrum_broker_bytes_out_total",
                "Stored message bytes returned by pull requests, by topic and consumer group",
                &["topic", "group"],
            ),
            send_latency: histogram(
                "ferrum_broker_send_latency_seconds",
                "Time from a send request's dispatch to its answer",
                LATENCY_BUCKETS,
            ),
            pull_latency: histogram(
                "ferrum_broker_pull_latency_seconds",
                "Time from a pull request's dispatch to its answer, long-poll hold included",
                PULL_BUCKETS,
            ),
            pull_held: int_gauge(
                "ferrum_broker_pull_requests_held",
                "Pull requests held by long polling right now",
            ),
            requests: counter_vec(
                "ferrum_broker_requests_total",
                "Remoting requests answered, by request code and response code",
                &["request_code", "response_code"],
            ),
            system_busy: counter_vec(
                "ferrum_broker_system_busy_total",
                "Requests refused with SYSTEM_BUSY, by what refused them (server, store, \
                 raft_write_gate, raft_transfer)",
                &["source"],
            ),
            connections: int_gauge(
                "ferrum_broker_connections",
                "Open remoting connections (listenPort and the VIP port)",
            ),
            connections_opened: IntCounter::new(
                "ferrum_broker_connections_opened_total",
                "Remoting connections accepted",
            )
            .unwrap_or_else(|e| unreachable_metric("connections_opened", e)),
            flush_latency: histogram(
                "ferrum_broker_commitlog_flush_seconds",
                "Duration of CommitLog flushes that made bytes durable",
                FLUSH_BUCKETS,
            ),
            store_recovery_seconds: Gauge::new(
                "ferrum_broker_store_recovery_seconds",
                "Time the message store took to open and recover at start",
            )
            .unwrap_or_else(|e| unreachable_metric("store_recovery_seconds", e)),
            namesrv_registered: int_gauge(
                "ferrum_broker_namesrv_registered",
                "NameServers that accepted the last registration round",
            ),
            registrations: counter_vec(
                "ferrum_broker_registrations_total",
                "Registrations with a NameServer, by result (ok, refused, error)",
                &["result"],
            ),
            commitlog_min_offset: int_gauge(
                "ferrum_broker_commitlog_min_offset_bytes",
                "Physical offset of the oldest CommitLog byte still kept",
            ),
            commitlog_max_offset: int_gauge(
                "ferrum_broker_commitlog_max_offset_bytes",
                "Physical offset one past the newest CommitLog byte",
            ),
            commitlog_size: int_gauge(
                "ferrum_broker_commitlog_size_bytes",
                "CommitLog bytes kept (max offset - min offset)",
            ),
            commitlog_unflushed: int_gauge(
                "ferrum_broker_commitlog_unflushed_bytes",
                "CommitLog bytes written but not yet flushed to disk",
            ),
            disk_used_ratio: Gauge::new(
                "ferrum_broker_disk_used_ratio",
                "Used fraction (0-1) of the filesystem holding the store",
            )
            .unwrap_or_else(|e| unreachable_metric("disk_used_ratio", e)),
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    "ferrum_broker_consumer_lag_messages",
                    "Messages between a group's committed offset and the queue's max offset",
                ),
                &["group", "topic", "queue_id"],
            )
            .unwrap_or_else(|e| unreachable_metric("consumer_lag", e)),
            consumer_lag_dropped: int_gauge(
                "ferrum_broker_consumer_lag_series_dropped",
                "Group/queue pairs left out of the consumer lag because of its series limit",
            ),
            topics: int_gauge("ferrum_broker_topics", "Topics configured on this broker"),
            info: GaugeVec::new(
                Opts::new(
                    "ferrum_broker_info",
                    "Always 1; labels say the broker's cluster, name, id and current role",
                ),
                &["cluster", "broker_name", "broker_id", "role"],
            )
            .unwrap_or_else(|e| unreachable_metric("info", e)),
            raft: crate::raft::metrics::RaftMetricSet::new()
                .unwrap_or_else(|e| unreachable_metric("raft", e)),
        };
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.messages_in.clone()),
            Box::new(m.bytes_in.clone()),
            Box::new(m.messages_out.clone()),
            Box::new(m.bytes_out.clone()),
            Box::new(m.send_latency.clone()),
            Box::new(m.pull_latency.clone()),
            Box::new(m.pull_held.clone()),
            Box::new(m.requests.clone()),
            Box::new(m.system_busy.clone()),
            Box::new(m.connections.clone()),
            Box::new(m.connections_opened.clone()),
            Box::new(m.flush_latency.clone()),
            Box::new(m.store_recovery_seconds.clone()),
            Box::new(m.namesrv_registered.clone()),
            Box::new(m.registrations.clone()),
            Box::new(m.commitlog_min_offset.clone()),
            Box::new(m.commitlog_max_offset.clone()),
            Box::new(m.commitlog_size.clone()),
            Box::new(m.commitlog_unflushed.clone()),
            Box::new(m.disk_used_ratio.clone()),
            Box::new(m.consumer_lag.clone()),
            Box::new(m.consumer_lag_dropped.clone()),
            Box::new(m.topics.clone()),
            Box::new(m.info.clone()),
        ];
        for c in collectors {
            if let Err(e) = m.registry.register(c) {
                unreachable_metric::<()>("registry", e);
            }
        }
        // Present from the first scrape, so rates and alerts see zero rather than nothing.
        for source in BusySource::ALL {
            m.system_busy.with_label_values(&[source.label()]);
        }
        for result in ["ok", "refused", "error"] {
            m.registrations.with_label_values(&[result]);
        }
        if let Err(error) = crate::ha::metrics::install(&m) {
            tracing::error!(%error, "replication metrics not registered");
        }
        crate::raft::metrics::install(&m);
        m
    }

    /// Registers a metric defined elsewhere and returns it for updating. A clash with an
    /// existing name is logged and the metric stays unexported rather than failing the broker.
    pub fn register<C: Collector + Clone + 'static>(&self, collector: C) -> C {
        if let Err(error) = self.registry.register(Box::new(collector.clone())) {
            tracing::error!(%error, "metric not registered");
        }
        collector
    }

    /// Adds a hook run on every scrape, for gauges read from state.
    pub fn on_scrape(&self, hook: ScrapeHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The observer the store calls after each CommitLog flush.
    pub fn flush_observer(&self) -> ferrum_store::FlushObserver {
        let h = self.flush_latency.clone();
        Arc::new(move |d: Duration| h.observe(d.as_secs_f64()))
    }

    /// Counts one answered request; send and pull latencies go to their histograms. `raft` is
    /// whether the broker stores through Raft, which decides what a SYSTEM_BUSY came from.
    pub fn observe_request(
        &self,
        request_code: i32,
        response_code: i32,
        elapsed: Duration,
        raft: bool,
    ) {
        let request = RequestCode::from_code(request_code);
        let response = ResponseCode::from_code(response_code);
        self.requests
            .with_label_values(&[
                request.map_or("OTHER", RequestCode::name),
                response.map_or("OTHER", ResponseCode::name),
            ])
            .inc();
        match request {
            Some(
                RequestCode::SEND_MESSAGE
                | RequestCode::SEND_MESSAGE_V2
                | RequestCode::SEND_BATCH_MESSAGE,
            ) => self.send_latency.observe(elapsed.as_secs_f64()),
            Some(RequestCode::PULL_MESSAGE | RequestCode::LITE_PULL_MESSAGE) => {
                self.pull_latency.observe(elapsed.as_secs_f64())
            }
            _ => {}
        }
        if response == Some(ResponseCode::SYSTEM_BUSY) {
            self.system_busy
                .with_label_values(&[BusySource::of_answer(request, raft).label()])
                .inc();
        }
    }

    /// Counts a request the remoting server refused because no slot freed up in time.
    pub fn server_busy(&self) {
        self.system_busy
            .with_label_values(&[BusySource::Server.label()])
            .inc();
    }

    pub fn message_in(&self, topic: &str, messages: u64, bytes: u64) {
        self.messages_in
            .with_label_values(&[topic])
            .inc_by(messages);
        self.bytes_in.with_label_values(&[topic]).inc_by(bytes);
    }

    pub fn message_out(&self, topic: &str, group: &str, messages: u64, bytes: u64) {
        self.messages_out
            .with_label_values(&[topic, group])
            .inc_by(messages);
        self.bytes_out
            .with_label_values(&[topic, group])
            .inc_by(bytes);
    }

    /// Counts a pull as held until the guard is dropped (also when the request is cancelled).
    pub fn hold_pull(&self) -> HeldPull {
        self.pull_held.inc();
        HeldPull(self.pull_held.clone())
    }

    /// The outcome of one registration round over `links` NameServers.
    pub fn registered(&self, accepted: usize, refused: usize, failed: usize) {
        self.namesrv_registered.set(accepted as i64);
        for (result, n) in [("ok", accepted), ("refused", refused), ("error", failed)] {
            if n > 0 {
                self.registrations
                    .with_label_values(&[result])
                    .inc_by(n as u64);
            }
        }
    }

    /// Sets the state gauges from `core` and renders the text exposition format.
    pub fn render(&self, core: &BrokerCore) -> String {
        self.refresh(core);
        for hook in self.hooks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            hook(core);
        }
        let mut buf = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(%error, "metrics not encoded");
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    fn refresh(&self, core: &BrokerCore) {
        let store = &core.store;
        let (min, max) = (store.min_phy_offset(), store.max_phy_offset());
        self.commitlog_min_offset.set(min);
        self.commitlog_max_offset.set(max);
        self.commitlog_size.set((max - min).max(0));
        self.commitlog_unflushed
            .set((max - store.flushed_phy_offset()).max(0));
        if let Some(ratio) = store.disk_used_ratio() {
            self.disk_used_ratio.set(ratio);
        }
        self.topics
            .set(core.topics.snapshot().topic_config_table.len() as i64);

        let role = core.ha.role();
        self.info.reset();
        self.info
            .with_label_values(&[
                core.config.broker_cluster_name.as_str(),
                core.config.broker_name.as_str(),
                &role.broker_id.to_string(),
                &role.role.to_string(),
            ])
            .set(1.0);

        let offsets = core.offsets.snapshot();
        let lags = consumer_lags(&offsets.offset_table, |topic, queue_id| {
            store.get_max_offset_in_queue(topic, queue_id)
        });
        self.consumer_lag.reset();
        let dropped = lags.len().saturating_sub(MAX_LAG_SERIES);
        for lag in lags.iter().take(MAX_LAG_SERIES) {
            self.consumer_lag
                .with_label_values(&[lag.group, lag.topic, &lag.queue_id.to_string()])
                .set(lag.lag);
        }
        self.consumer_lag_dropped.set(dropped as i64);
    }
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A held long-poll pull; decrements the gauge when dropped.
#[derive(Debug)]
pub struct HeldPull(IntGauge);

impl Drop for HeldPull {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Lag<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub queue_id: i32,
    pub lag: i64,
}

/// Lag of every committed `topic@group` queue offset against the queue's max offset, sorted
/// by group, topic, queue. Keys without `@` are not consumer offsets and are skipped.
pub fn consumer_lags<'a>(
    table: &'a std::collections::BTreeMap<String, std::collections::BTreeMap<i32, i64>>,
    max_offset: impl Fn(&str, i32) -> i64,
) -> Vec<Lag<'a>> {
    let mut out = Vec::new();
    for (key, queues) in table {
        let Some((topic, group)) = key.split_once('@') else {
            continue;
        };
        for (&queue_id, &committed) in queues {
            out.push(Lag {
                group,
                topic,
                queue_id,
                lag: (max_offset(topic, queue_id) - committed).max(0),
            });
        }
    }
    out.sort_by(|a, b| (a.group, a.topic, a.queue_id).cmp(&(b.group, b.topic, b.queue_id)));
    out
}

/// What the HTTP endpoint answers; `ready` is evaluated per `/readyz` request.
pub fn respond(
    path: &str,
    metrics: impl FnOnce() -> String,
    ready: impl FnOnce() -> bool,
) -> (StatusCode, String) {
    match path {
        "/metrics" => (StatusCode::OK, metrics()),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if ready() => (StatusCode::OK, "ready\n".to_owned()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

/// The broker is ready once its store is open (a `BrokerCore` exists only then) and a
/// NameServer accepted it, or when it has no NameServer to register with.
pub fn is_ready(core: &BrokerCore) -> bool {
    core.config.namesrv_addr.is_empty() || core.metrics.namesrv_registered.get() > 0
}

/// Serves `/metrics`, `/healthz` and `/readyz` for `core` until the task is dropped. Each
/// connection runs on its own task; a broken client only ends its own connection.
pub async fn serve(listener: TcpListener, core: Arc<BrokerCore>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let core = core.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let core = core.clone();
                async move {
                    let path = req.uri().path().to_owned();
                    // Rendering walks the offset table and the store; keep it off the reactor.
                    let (status, body) = tokio::task::spawn_blocking(move || {
                        respond(&path, || core.metrics.render(&core), || is_ready(&core))
                    })
                    .await
                    .unwrap_or((StatusCode::INTERNAL_SERVER_ERROR, String::new()));
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = status;
                    Ok::<_, Infallible>(resp)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn registry_renders_every_family() {
        let m = BrokerMetrics::new();
        m.message_in("TopicA", 3, 300);
        m.message_out("TopicA", "g1", 2, 200);
        m.observe_request(
            RequestCode::SEND_MESSAGE.code(),
            0,
            Duration::from_millis(2),
            false,
        );
        m.observe_request(
            11,
            ResponseCode::SYSTEM_BUSY.code(),
            Duration::from_millis(2),
            false,
        );
        m.observe_request(999_999, 12_345, Duration::from_millis(1), false);
        m.registered(1, 0, 1);
        let families: Vec<String> = m
            .registry()
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for name in [
            "ferrum_broker_messages_in_total",
            "ferrum_broker_bytes_in_total",
            "ferrum_broker_messages_out_total",
            "ferrum_broker_bytes_out_total",
            "ferrum_broker_send_latency_seconds",
            "ferrum_broker_pull_latency_seconds",
            "ferrum_broker_pull_requests_held",
            "ferrum_broker_requests_total",
            "ferrum_broker_system_busy_total",
            "ferrum_broker_connections",
            "ferrum_broker_store_recovery_seconds",
            "ferrum_broker_namesrv_registered",
            "ferrum_broker_registrations_total",
            "ferrum_broker_commitlog_min_offset_bytes",
            "ferrum_broker_commitlog_max_offset_bytes",
            "ferrum_broker_commitlog_size_bytes",
            "ferrum_broker_disk_used_ratio",
        ] {
            assert!(
                families.iter().any(|f| f == name),
                "{name} missing: {families:?}"
            );
        }
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&m.registry().gather(), &mut buf)
            .expect("encode");
        let text = String::from_utf8(buf).expect("utf8");
        assert!(text.contains(r#"ferrum_broker_messages_in_total{topic="TopicA"} 3"#));
        assert!(text.contains(r#"ferrum_broker_bytes_out_total{group="g1",topic="TopicA"} 200"#));
        assert!(text.contains(
            r#"ferrum_broker_requests_total{request_code="SEND_MESSAGE",response_code="SUCCESS"} 1"#
        ));
        // Unknown codes from a client fold into one series instead of growing the label set.
        assert!(text.contains(
            r#"ferrum_broker_requests_total{request_code="OTHER",response_code="OTHER"} 1"#
        ));
        assert!(text.contains(r#"ferrum_broker_system_busy_total{source="store"} 1"#));
        assert!(text.contains("ferrum_broker_send_latency_seconds_count 1"));
        assert!(text.contains(r#"ferrum_broker_registrations_total{result="error"} 1"#));
    }

    #[test]
    fn system_busy_is_counted_by_what_refused() {
        let m = BrokerMetrics::new();
        let busy = ResponseCode::SYSTEM_BUSY.code();
        let send = RequestCode::SEND_MESSAGE_V2.code();
        let transfer = RequestCode::FERRUM_RAFT_TRANSFER_LEADER.code();
        m.observe_request(send, busy, Duration::ZERO, false);
        m.observe_request(send, busy, Duration::ZERO, true);
        m.observe_request(send, busy, Duration::ZERO, true);
        m.observe_request(transfer, busy, Duration::ZERO, true);
        m.observe_request(send, ResponseCode::SUCCESS.code(), Duration::ZERO, true);
        m.server_busy();
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&m.registry().gather(), &mut buf)
            .expect("encode");
        let text = String::from_utf8(buf).expect("utf8");
        for (source, n) in [
            ("server", 1),
            ("store", 1),
            ("raft_write_gate", 2),
            ("raft_transfer", 1),
        ] {
            assert!(
                text.contains(&format!(
                    "ferrum_broker_system_busy_total{{source=\"{source}\"}} {n}"
                )),
                "{source}: {text}"
            );
        }
    }

    #[test]
    fn held_pull_gauge_follows_guards() {
        let m = BrokerMetrics::new();
        let a = m.hold_pull();
        let b = m.hold_pull();
        assert_eq!(m.pull_held.get(), 2);
        drop(a);
        assert_eq!(m.pull_held.get(), 1);
        drop(b);
        assert_eq!(m.pull_held.get(), 0);
    }

    #[test]
    fn another_module_can_add_a_metric() {
        let m = BrokerMetrics::new();
        let lag = m.register(
            IntGaugeVec::new(
                Opts::new("ferrum_broker_example_extra_bytes", "test"),
                &["slave_broker_id"],
            )
            .expect("gauge"),
        );
        lag.with_label_values(&["1"]).set(42);
        // A second registration of the same name is refused without panicking.
        let _ = m.register(IntGauge::new("ferrum_broker_example_extra_bytes", "dup").expect("g"));
        let names: Vec<String> = m
            .registry()
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n == "ferrum_broker_example_extra_bytes")
        );
    }

    #[test]
    fn consumer_lag_is_max_minus_committed_and_never_negative() {
        let mut table = BTreeMap::new();
        table.insert("TopicA@g1".to_owned(), BTreeMap::from([(0, 5), (1, 20)]));
        table.insert("TopicA@g0".to_owned(), BTreeMap::from([(0, 10)]));
        table.insert("garbage".to_owned(), BTreeMap::from([(0, 1)]));
        let lags = consumer_lags(&table, |topic, q| {
            assert_eq!(topic, "TopicA");
            if q == 0 { 10 } else { 12 }
        });
        assert_eq!(
            lags,
            vec![
                Lag {
                    group: "g0",
                    topic: "TopicA",
                    queue_id: 0,
                    lag: 0
                },
                Lag {
                    group: "g1",
                    topic: "TopicA",
                    queue_id: 0,
                    lag: 5
                },
                Lag {
                    group: "g1",
                    topic: "TopicA",
                    queue_id: 1,
                    lag: 0
                },
            ]
        );
    }

    #[test]
    fn endpoints_answer_by_path() {
        let (s, body) = respond("/metrics", || "x 1\n".to_owned(), || false);
        assert_eq!((s, body.as_str()), (StatusCode::OK, "x 1\n"));
        assert_eq!(respond("/healthz", String::new, || false).0, StatusCode::OK);
        assert_eq!(
            respond("/readyz", String::new, || false).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(respond("/readyz", String::new, || true).0, StatusCode::OK);
        assert_eq!(
            respond("/nope", String::new, || true).0,
            StatusCode::NOT_FOUND
        );
    }
}
