//! `ferrumctl bench produce --svg --json` against a real NameServer and broker: the plot has
//! the messages-per-second line and the p50 / p99 latency lines on one time axis, and the JSON
//! report's per-second latency covers every acknowledged message.

mod common;

use std::time::Duration;

use ferrum_client::{Admin, Producer};
use ferrum_protocol::route::TopicConfig;

use common::{sibling_binary, start_broker_with_sets, start_namesrv};

const TOPIC: &str = "BenchSvgTopic";
const MESSAGES: u64 = 400;

/// The number of points of each polyline of `series` in the SVG.
fn runs(svg: &str, series: &str) -> Vec<usize> {
    svg.split(&format!("<polyline data-series=\"{series}\""))
        .skip(1)
        .map(|rest| {
            rest.split("points=\"")
                .nth(1)
                .and_then(|p| p.split('"').next())
                .map_or(0, |p| p.split(' ').filter(|s| !s.is_empty()).count())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_svg_plots_throughput_and_latency_per_second() {
    tokio::time::timeout(Duration::from_secs(120), scenario())
        .await
        .expect("scenario finishes in time");
}

async fn scenario() {
    let namesrv = start_namesrv();
    let store = tempfile::tempdir().expect("tempdir");
    let broker = start_broker_with_sets(
        &namesrv.addr,
        &[
            "listenPort=0".to_owned(),
            "haListenPort=0".to_owned(),
            "metricsPort=0".to_owned(),
            "bindAddress=127.0.0.1".to_owned(),
            format!("storePathRootDir={}", store.path().display()),
            "mappedFileSizeCommitLog=1048576".to_owned(),
            "brokerName=bench-svg".to_owned(),
            "brokerClusterName=BenchSvg".to_owned(),
            "registerNameServerPeriod=1000".to_owned(),
        ],
    );
    Admin::new([namesrv.addr.as_str()])
        .create_topic(&broker.addr, &TopicConfig::new(TOPIC, 2))
        .await
        .expect("topic created");
    let producer = Producer::new([namesrv.addr.as_str()], "bench-svg-route");
    assert!(
        common::eventually(Duration::from_secs(15), || async {
            producer.publish_info(TOPIC).await.is_ok()
        })
        .await,
        "the NameServer routes {TOPIC}"
    );

    let out_dir = tempfile::tempdir().expect("tempdir");
    let svg_path = out_dir.path().join("bench.svg");
    let ferrumctl = sibling_binary("ferrum-client", "ferrumctl");
    let mut cmd = tokio::process::Command::new(ferrumctl);
    cmd.args(["-n", &namesrv.addr, "--json", "bench", "produce", TOPIC])
        // An offered rate spreads the sends over about two seconds, so the series has points.
        .args(["-c", "2", "-s", "128", "-d", "30", "--rate", "200"])
        .args(["--count", &MESSAGES.to_string()])
        .arg("--svg")
        .arg(&svg_path)
        .env_remove("FERRUM_NAMESRV")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("ferrumctl bench ended in time")
        .expect("run ferrumctl");
    assert!(
        out.status.success(),
        "ferrumctl bench: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "a JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(report["messages"], MESSAGES, "{report}");
    let seconds = report["latency_per_second"]
        .as_array()
        .expect("latency_per_second");
    let counted: u64 = seconds
        .iter()
        .map(|s| s["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(counted, MESSAGES, "every acknowledged send is in a second");
    for s in seconds.iter().filter(|s| s["count"].as_u64() > Some(0)) {
        let (p50, p99) = (
            s["p50_us"].as_u64().expect("p50"),
            s["p99_us"].as_u64().expect("p99"),
        );
        assert!(p50 <= p99, "{s}");
    }

    let svg = std::fs::read_to_string(&svg_path).expect("the SVG was written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(TOPIC));
    let throughput_points: usize = runs(&svg, "msgs/s").iter().sum();
    let per_second = report["per_second"].as_array().expect("per_second");
    assert!(!per_second.is_empty(), "{report}");
    assert_eq!(throughput_points, per_second.len(), "{svg}");
    let with_samples = seconds
        .iter()
        .filter(|s| s["count"].as_u64() > Some(0))
        .count();
    assert!(
        with_samples >= 2,
        "sends completed over at least two seconds: {report}"
    );
    for line in ["p50", "p99"] {
        let points: usize = runs(&svg, line).iter().sum();
        assert_eq!(points, with_samples, "{line}: {svg}");
    }
    drop(broker);
}
