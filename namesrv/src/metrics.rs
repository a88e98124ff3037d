//! NameServer metrics (prometheus crate) and the HTTP endpoint serving `/metrics`, `/healthz`
//! and `/readyz` on `metricsListen`.
//!
//! The registry belongs to one NameServer, not to a global, so tests running several in one
//! process do not share counters. A new metric: build it, pass it to
//! [`NamesrvMetrics::register`], keep the returned clone.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::core::Collector;
use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;

use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};

#[derive(Clone)]
pub struct NamesrvMetrics {
    registry: Registry,
    pub live_brokers: IntGauge,
    pub registrations: IntCounterVec,
    pub expiries: IntCounterVec,
    pub route_queries: IntCounterVec,
    pub requests: IntCounterVec,
    pub connections: IntGauge,
}

impl std::fmt::Debug for NamesrvMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamesrvMetrics").finish_non_exhaustive()
    }
}

/// The definitions are constants of this file and the unit tests build them; a bad one is a
/// programming error, so it stops the NameServer at start.
fn malformed<T>(name: &str, error: prometheus::Error) -> T {
    panic!("metric {name} is malformed: {error}")
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| malformed(name, e))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|e| malformed(name, e))
}

impl NamesrvMetrics {
    pub fn new() -> Self {
        let m = NamesrvMetrics {
            registry: Registry::new(),
            live_brokers: gauge(
                "ferrum_namesrv_live_brokers",
                "Brokers registered and not expired or dropped",
            ),
            registrations: counter_vec(
                "ferrum_namesrv_registrations_total",
                "REGISTER_BROKER requests, by result (ok, error)",
                &["result"],
            ),
            expiries: counter_vec(
                "ferrum_namesrv_broker_expiries_total",
                "Brokers removed without unregistering, by reason (expired, connection_closed)",
                &["reason"],
            ),
            route_queries: counter_vec(
                "ferrum_namesrv_route_queries_total",
                "GET_ROUTEINFO_BY_TOPIC requests, by result (found, not_found, error)",
                &["result"],
            ),
            requests: counter_vec(
                "ferrum_namesrv_requests_total",
                "Requests processed, by request code",
                &["request_code"],
            ),
            connections: gauge("ferrum_namesrv_connections", "Open remoting connections"),
        };
        let all: Vec<Box<dyn Collector>> = vec![
            Box::new(m.live_brokers.clone()),
            Box::new(m.registrations.clone()),
            Box::new(m.expiries.clone()),
            Box::new(m.route_queries.clone()),
            Box::new(m.requests.clone()),
            Box::new(m.connections.clone()),
        ];
        for c in all {
            if let Err(e) = m.registry.register(c) {
                malformed::<()>("registry", e);
            }
        }
        // Present from the first scrape, so rates and alerts see zero rather than nothing.
        for result in ["ok", "error"] {
            m.registrations.with_label_values(&[result]);
        }
        for reason in ["expired", "connection_closed"] {
            m.expiries.with_label_values(&[reason]);
        }
        for result in ["found", "not_found", "error"] {
            m.route_queries.with_label_values(&[result]);
        }
        m
    }

    /// Registers a metric defined elsewhere; a name clash is logged, not fatal.
    pub fn register<C: Collector + Clone + 'static>(&self, collector: C) -> C {
        if let Err(error) = self.registry.register(Box::new(collector.clone())) {
            tracing::error!(%error, "metric not registered");
        }
        collector
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one processed request by what it asked and how it was answered.
    pub fn observe(&self, request: &RemotingCommand, response_code: i32, live_brokers: usize) {
        let code = RequestCode::from_code(request.code);
        self.requests
            .with_label_values(&[code.map_or("OTHER", RequestCode::name)])
            .inc();
        let ok = response_code == ResponseCode::SUCCESS.code();
        match code {
            Some(RequestCode::REGISTER_BROKER) => {
                self.registrations
                    .with_label_values(&[if ok { "ok" } else { "error" }])
                    .inc();
            }
            Some(RequestCode::GET_ROUTEINFO_BY_TOPIC) => {
                let result = if ok {
                    "found"
                } else if response_code == ResponseCode::TOPIC_NOT_EXIST.code() {
                    "not_found"
                } else {
                    "error"
                };
                self.route_queries.with_label_values(&[result]).inc();
            }
            _ => {}
        }
        self.live_brokers.set(live_brokers as i64);
    }

    /// Brokers removed by the liveness scan or by their connection closing.
    pub fn removed(&self, reason: &str, count: usize, live_brokers: usize) {
        if count > 0 {
            self.expiries
                .with_label_values(&[reason])
                .inc_by(count as u64);
        }
        self.live_brokers.set(live_brokers as i64);
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(%error, "metrics not encoded");
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for NamesrvMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The NameServer is ready as soon as this endpoint runs: it is started after the remoting
/// port is bound, and routes are rebuilt from registrations, so there is nothing to load.
fn respond(metrics: &NamesrvMetrics, path: &str) -> (StatusCode, String) {
    match path {
        "/metrics" => (StatusCode::OK, metrics.render()),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => (StatusCode::OK, "ready\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

/// Serves until the task is dropped; a broken client only ends its own connection.
pub async fn serve(listener: TcpListener, metrics: NamesrvMetrics) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (status, body) = respond(&metrics, req.uri().path());
                let mut resp = Response::new(Full::new(Bytes::from(body)));
                *resp.status_mut() = status;
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
    use ferrum_protocol::headers::GetRouteInfoRequestHeader;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn route_request() -> RemotingCommand {
        RemotingCommand::request(
            RequestCode::GET_ROUTEINFO_BY_TOPIC,
            &GetRouteInfoRequestHeader {
                topic: "T".into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn registry_renders_every_family() {
        let m = NamesrvMetrics::new();
        m.observe(&route_request(), ResponseCode::TOPIC_NOT_EXIST.code(), 2);
        m.observe(&route_request(), ResponseCode::SUCCESS.code(), 2);
        m.removed("expired", 1, 1);
        let text = m.render();
        for family in [
            "ferrum_namesrv_live_brokers 1",
            r#"ferrum_namesrv_route_queries_total{result="found"} 1"#,
            r#"ferrum_namesrv_route_queries_total{result="not_found"} 1"#,
            r#"ferrum_namesrv_route_queries_total{result="error"} 0"#,
            r#"ferrum_namesrv_registrations_total{result="ok"} 0"#,
            r#"ferrum_namesrv_broker_expiries_total{reason="expired"} 1"#,
            r#"ferrum_namesrv_requests_total{request_code="GET_ROUTEINFO_BY_TOPIC"} 2"#,
            "ferrum_namesrv_connections 0",
        ] {
            assert!(text.contains(family), "{family} missing in:\n{text}");
        }
    }

    #[test]
    fn metrics_listen_comes_from_flag_env_or_config_file() {
        let file = crate::config::parse_config("metricsListen=127.0.0.1:9100").expect("parse");
        let settings = crate::config::PartialSettings::default().resolve(file);
        assert_eq!(
            settings.metrics_listen,
            Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9100)))
        );
        let err = crate::config::parse_config("metricsListen=9100").unwrap_err();
        assert!(err.to_string().contains("metricsListen"), "{err}");
        assert_eq!(crate::config::Settings::default().metrics_listen, None);
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
        let m = NamesrvMetrics::new();
        m.observe(&route_request(), ResponseCode::SUCCESS.code(), 3);
        let server = tokio::spawn(serve(listener, m));
        let result = tokio::time::timeout(Duration::from_secs(10), async {
            (
                get(addr, "/metrics").await,
                get(addr, "/readyz").await,
                get(addr, "/nope").await,
            )
        })
        .await;
        server.abort();
        let (metrics, ready, missing) = result.expect("answers in time");
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("ferrum_namesrv_live_brokers 3"));
        assert!(ready.starts_with("HTTP/1.1 200"));
        assert!(missing.starts_with("HTTP/1.1 404"));
    }
}
