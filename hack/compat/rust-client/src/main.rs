//! rocketmq-client-rust (crate registry), unchanged, against a RocketMQ NameServer + broker.
//!
//! Both commands write one JSON object per message in the shape `ferrumctl --json` prints
//! (`{"properties":{...},"body":"..."}`), so the Go program's `canon` command turns them into
//! the same canonical lines as every other client in hack/compat/go-client.sh:
//!
//! ```text
//! rust-client produce NAMESRV TOPIC COUNT RUN OUT.jsonl
//! rust-client consume NAMESRV TOPIC GROUP COUNT TIMEOUT_SECS OUT.jsonl
//! ```

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_client_rust::{
    ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer,
    MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client needs a runtime owner, a client runtime and telemetry before any producer or
/// consumer can be built; they are kept together so they are shut down together.
struct Runtime {
    owner: RuntimeOwner,
    client: Arc<ClientRuntime>,
    telemetry: rocketmq_observability::TelemetryRuntimeGuard,
}

impl Runtime {
    fn new(scope: &str) -> Result<Runtime, BoxError> {
        let owner = RuntimeOwner::plan(RuntimeConfig {
            thread_name: format!("ferrum-compat-{scope}"),
            ..Default::default()
        })
        .map_err(|e| format!("runtime plan: {e:?}"))?
        .build()
        .map_err(|e| format!("runtime build: {e:?}"))?;
        let telemetry = rocketmq_observability::install_global(
            &rocketmq_observability::TelemetryBootstrapConfig::default(),
        )
        .map_err(|e| format!("telemetry: {e:?}"))?;
        let client = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            telemetry.handle(),
        )?;
        Ok(Runtime {
            owner,
            client,
            telemetry,
        })
    }

    async fn shutdown(self) {
        let _ = self.client.shutdown().await;
        let _ = self.owner.shutdown_tasks().await;
        let _ = self.owner.shutdown_background();
        let _ = self.telemetry.shutdown();
    }
}

fn json_line(properties: BTreeMap<String, String>, body: &[u8]) -> Result<String, BoxError> {
    let body = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    Ok(serde_json::json!({ "properties": properties, "body": body }).to_string())
}

fn write_lines(path: &str, lines: &[String]) -> Result<(), BoxError> {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("write {path}: {e}").into())
}

async fn produce(
    namesrv: &str,
    topic: &str,
    count: usize,
    run: &str,
    out: &str,
) -> Result<(), BoxError> {
    let runtime = Runtime::new("producer")?;
    let mut producer = DefaultMQProducer::builder(runtime.client.clone())
        .producer_group("ferrum-rust-producer".to_string())
        .name_server_addr(namesrv.to_string())
        .build();
    producer.start().await?;
    let mut lines = Vec::with_capacity(count);
    for i in 0..count {
        let filler = "ferrum·".repeat((i * 37) % 64);
        let body = format!("rust-body-{run}-{i} ünïcødé ✓ {filler}");
        let tags = if i % 2 == 0 { "TagA" } else { "TagB" };
        let keys = vec![format!("rust-{run}-{i}"), format!("rust-shared-{run}")];
        let message = Message::builder()
            .topic(topic.to_string())
            .tags(tags.to_string())
            .keys(keys.clone())
            .body_slice(body.as_bytes())
            .raw_property("ferrum.seq", i.to_string())?
            .raw_property("ferrum.origin", "rocketmq-client-rust")?
            .raw_property("ferrum.note", "héllo wörld = a:b;c")?
            .build()?;
        let result = producer
            .send_with_timeout(message, 10_000)
            .await?
            .ok_or_else(|| format!("send {i}: no send result"))?;
        if result.send_status != rocketmq_model::result::SendStatus::SendOk {
            return Err(format!("send {i}: status {:?}, want SendOk", result.send_status).into());
        }
        let mut properties = BTreeMap::new();
        properties.insert("KEYS".to_owned(), keys.join(" "));
        properties.insert("TAGS".to_owned(), tags.to_owned());
        properties.insert("ferrum.seq".to_owned(), i.to_string());
        properties.insert(
            "ferrum.origin".to_owned(),
            "rocketmq-client-rust".to_owned(),
        );
        properties.insert("ferrum.note".to_owned(), "héllo wörld = a:b;c".to_owned());
        lines.push(json_line(properties, body.as_bytes())?);
    }
    producer.shutdown().await;
    runtime.shutdown().await;
    write_lines(out, &lines)?;
    println!("produced {count} messages to {topic}, all SendOk");
    Ok(())
}

#[derive(Default)]
struct Received {
    ids: HashSet<String>,
    lines: Vec<String>,
    errors: Vec<String>,
}

struct Collector(Arc<Mutex<Received>>);

impl MessageListenerConcurrently for Collector {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut received = match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        for msg in msgs {
            // Redelivery is allowed (at least once): the broker's msgId tells copies apart.
            if !received.ids.insert(msg.msg_id().to_string()) {
                continue;
            }
            let properties: BTreeMap<String, String> = msg
                .properties()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let body = msg.body().unwrap_or_default();
            match json_line(properties, &body) {
                Ok(line) => received.lines.push(line),
                Err(e) => received.errors.push(e.to_string()),
            }
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

async fn consume(
    namesrv: &str,
    topic: &str,
    group: &str,
    count: usize,
    timeout: Duration,
    out: &str,
) -> Result<(), BoxError> {
    let runtime = Runtime::new("consumer")?;
    let received = Arc::new(Mutex::new(Received::default()));
    let mut consumer = DefaultMQPushConsumer::builder(runtime.client.clone())
        .consumer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    consumer.subscribe(topic.to_string(), "*").await?;
    consumer.register_message_listener_concurrently(Collector(received.clone()));
    consumer.start().await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let (lines, errors) = loop {
        let (n, done) = {
            let r = received.lock().map_err(|_| "listener panicked")?;
            (
                r.lines.len(),
                r.lines.len() >= count || !r.errors.is_empty(),
            )
        };
        if done || tokio::time::Instant::now() >= deadline {
            let r = received.lock().map_err(|_| "listener panicked")?;
            let _ = n;
            break (r.lines.clone(), r.errors.clone());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), consumer.shutdown()).await;
    runtime.shutdown().await;
    write_lines(out, &lines)?;
    if let Some(e) = errors.first() {
        return Err(format!("bad message received: {e}").into());
    }
    if lines.len() < count {
        return Err(format!(
            "received {} of {count} messages within {timeout:?}",
            lines.len()
        )
        .into());
    }
    println!("consumed {} messages from {topic}", lines.len());
    Ok(())
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> Result<T, BoxError> {
    args.get(i)
        .ok_or_else(|| format!("missing argument {name}"))?
        .parse()
        .map_err(|_| format!("invalid {name}: {:?}", args[i]).into())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("produce") => {
            async {
                let ns: String = arg(&args, 1, "NAMESRV")?;
                let topic: String = arg(&args, 2, "TOPIC")?;
                let count: usize = arg(&args, 3, "COUNT")?;
                let run: String = arg(&args, 4, "RUN")?;
                let out: String = arg(&args, 5, "OUT")?;
                produce(&ns, &topic, count, &run, &out).await
            }
            .await
        }
        Some("consume") => {
            async {
                let ns: String = arg(&args, 1, "NAMESRV")?;
                let topic: String = arg(&args, 2, "TOPIC")?;
                let group: String = arg(&args, 3, "GROUP")?;
                let count: usize = arg(&args, 4, "COUNT")?;
                let secs: u64 = arg(&args, 5, "TIMEOUT_SECS")?;
                let out: String = arg(&args, 6, "OUT")?;
                consume(&ns, &topic, &group, count, Duration::from_secs(secs), &out).await
            }
            .await
        }
        _ => Err("usage: rust-client produce|consume ...".into()),
    };
    if let Err(e) = result {
        eprintln!("rust-client: {e}");
        std::process::exit(1);
    }
}
