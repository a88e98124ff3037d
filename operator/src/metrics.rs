//! Operator metrics (prometheus crate) and the HTTP endpoint that serves them with
//! `/healthz` and `/readyz`. The registry belongs to the operator instance, not to a global,
//! so tests and several controllers in one process do not share counters.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

/// How many objects of one kind a controller currently manages, read from its watch cache.
pub type ManagedCount = Arc<dyn Fn() -> usize + Send + Sync>;

/// The sources of `ferrum_operator_managed_objects`: one per controller (several per kind when
/// the operator runs one controller per watched namespace).
#[derive(Clone, Default)]
struct ManagedSources(Arc<Mutex<Vec<(String, ManagedCount)>>>);

impl std::fmt::Debug for ManagedSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|v| v.len()).unwrap_or_default();
        write!(f, "ManagedSources({n})")
    }
}

#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    duration: HistogramVec,
    roll_restarts: IntCounterVec,
    rolls_in_progress: IntGaugeVec,
    roll_pods_pending: IntGaugeVec,
    managed: IntGaugeVec,
    managed_sources: ManagedSources,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "ferrum_operator_reconciles_total",
                "Reconcile passes by kind and result (ok, invalid, error)",
            ),
            &["kind", "result"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ferrum_operator_reconcile_duration_seconds",
                "Time of one reconcile pass",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["kind"],
        )?;
        let roll_restarts = IntCounterVec::new(
            Opts::new(
                "ferrum_operator_roll_pod_restarts_total",
                "Broker pods restarted by rolling restarts",
            ),
            &["namespace", "group"],
        )?;
        let rolls_in_progress = IntGaugeVec::new(
            Opts::new(
                "ferrum_operator_rolls_in_progress",
                "1 while a BrokerGroup has pods left to restart, else 0",
            ),
            &["namespace", "group"],
        )?;
        let roll_pods_pending = IntGaugeVec::new(
            Opts::new(
                "ferrum_operator_roll_pods_pending",
                "Broker pods of a group still to be restarted by its roll",
            ),
            &["namespace", "group"],
        )?;
        let managed = IntGaugeVec::new(
            Opts::new(
                "ferrum_operator_managed_objects",
                "Custom resources the operator manages, by kind (BrokerGroup, Topic), as its \
                 watch caches hold them when scraped",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(managed.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(roll_restarts.clone()))?;
        registry.register(Box::new(rolls_in_progress.clone()))?;
        registry.register(Box::new(roll_pods_pending.clone()))?;
        Ok(Metrics {
            registry,
            reconciles,
            duration,
            roll_restarts,
            rolls_in_progress,
            roll_pods_pending,
            managed,
            managed_sources: ManagedSources::default(),
        })
    }

    /// Adds a source of `ferrum_operator_managed_objects{kind}`; the gauge is the sum of the
    /// sources of each kind, taken at every scrape, so a deleted object leaves it at once even
    /// though no reconcile pass follows its deletion.
    pub fn track_managed(&self, kind: &str, count: impl Fn() -> usize + Send + Sync + 'static) {
        self.managed_sources
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((kind.to_owned(), Arc::new(count)));
        self.refresh_managed();
    }

    fn refresh_managed(&self) {
        let mut totals: BTreeMap<String, usize> = BTreeMap::new();
        for (kind, count) in self
            .managed_sources
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            *totals.entry(kind.clone()).or_default() += count();
        }
        for (kind, n) in totals {
            self.managed
                .with_label_values(&[kind.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// One pod restarted by a roll.
    pub fn pod_restarted(&self, namespace: &str, group: &str) {
        self.roll_restarts
            .with_label_values(&[namespace, group])
            .inc();
    }

    /// The roll state of one group after a pass.
    pub fn set_roll(&self, namespace: &str, group: &str, pending: usize, rolling: bool) {
        self.rolls_in_progress
            .with_label_values(&[namespace, group])
            .set(i64::from(rolling));
        self.roll_pods_pending
            .with_label_values(&[namespace, group])
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    pub fn observe(&self, kind: &str, result: &str, elapsed: Duration) {
        self.reconciles.with_label_values(&[kind, result]).inc();
        self.duration
            .with_label_values(&[kind])
            .observe(elapsed.as_secs_f64());
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        self.refresh_managed();
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which we never build.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn respond(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (StatusCode::OK, metrics.render()),
        "/healthz" | "/readyz" => (StatusCode::OK, "ok\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

/// Serves until the task is dropped. Each connection is handled on its own task; a broken
/// client only ends its own connection.
pub async fn serve(listener: TcpListener, metrics: Metrics) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = respond(&metrics, req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn counters_and_histogram_are_rendered() {
        let m = Metrics::new().expect("metrics");
        m.observe("BrokerGroup", "ok", Duration::from_millis(20));
        m.observe("BrokerGroup", "error", Duration::from_millis(5));
        let text = m.render();
        assert!(
            text.contains(r#"ferrum_operator_reconciles_total{kind="BrokerGroup",result="ok"} 1"#)
        );
        assert!(
            text.contains(
                r#"ferrum_operator_reconciles_total{kind="BrokerGroup",result="error"} 1"#
            )
        );
        assert!(
            text.contains(
                r#"ferrum_operator_reconcile_duration_seconds_count{kind="BrokerGroup"} 2"#
            )
        );
    }

    #[test]
    fn roll_progress_is_rendered() {
        let m = Metrics::new().expect("metrics");
        m.set_roll("mq", "orders", 2, true);
        m.pod_restarted("mq", "orders");
        let text = m.render();
        assert!(
            text.contains(r#"ferrum_operator_rolls_in_progress{group="orders",namespace="mq"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ferrum_operator_roll_pods_pending{group="orders",namespace="mq"} 2"#)
        );
        assert!(text.contains(
            r#"ferrum_operator_roll_pod_restarts_total{group="orders",namespace="mq"} 1"#
        ));
        m.set_roll("mq", "orders", 0, false);
        assert!(
            m.render()
                .contains(r#"ferrum_operator_rolls_in_progress{group="orders",namespace="mq"} 0"#)
        );
    }

    #[test]
    fn managed_objects_sum_every_source_of_a_kind_at_each_render() {
        let m = Metrics::new().expect("metrics");
        let groups_a = Arc::new(std::sync::atomic::AtomicUsize::new(2));
        let seen = groups_a.clone();
        m.track_managed("BrokerGroup", move || {
            seen.load(std::sync::atomic::Ordering::Relaxed)
        });
        m.track_managed("BrokerGroup", || 1);
        m.track_managed("Topic", || 5);
        let text = m.render();
        assert!(
            text.contains(r#"ferrum_operator_managed_objects{kind="BrokerGroup"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"ferrum_operator_managed_objects{kind="Topic"} 5"#));
        // A group deleted from one namespace's cache shows at the next scrape.
        groups_a.store(0, std::sync::atomic::Ordering::Relaxed);
        assert!(
            m.render()
                .contains(r#"ferrum_operator_managed_objects{kind="BrokerGroup"} 1"#)
        );
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn endpoint_serves_metrics_and_health_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let m = Metrics::new().expect("metrics");
        m.observe("Topic", "ok", Duration::from_millis(1));
        let server = tokio::spawn(serve(listener, m));
        let result = tokio::time::timeout(Duration::from_secs(10), async {
            (
                get(addr, "/metrics").await,
                get(addr, "/healthz").await,
                get(addr, "/nope").await,
            )
        })
        .await;
        server.abort();
        let (metrics, health, missing) = result.expect("answers in time");
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains(r#"kind="Topic",result="ok"} 1"#));
        assert!(health.starts_with("HTTP/1.1 200"));
        assert!(missing.starts_with("HTTP/1.1 404"));
    }
}
