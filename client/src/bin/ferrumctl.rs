//! `ferrumctl`: the command-line tool for Ferrum (and any RocketMQ) clusters. It speaks only the
//! RocketMQ remoting protocol.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ferrum_client::admin::Admin;
use ferrum_client::consumer::{PullConfig, PullConsumer, PullStatus};
use ferrum_client::namesrv::parse_addrs;
use ferrum_client::producer::{Producer, ProducerConfig, now_millis};
use ferrum_client::stats::{
    LatencyRecorder, LatencySummary, SecondLatency, svg_bench_chart, throughput,
};
use ferrum_client::{ConnectOptions, Message, MessageQueue};
use ferrum_protocol::SerializeType;
use ferrum_protocol::message::MessageExt;
use ferrum_protocol::route::{PERM_READ, PERM_WRITE, TopicConfig};
use serde::Serialize;
use tokio::sync::mpsc;

#[path = "ferrumctl/progress.rs"]
mod progress;
use progress::Progress;

#[derive(Debug, Parser)]
#[command(
    name = "ferrumctl",
    version,
    about = "Administer, feed and measure Ferrum / RocketMQ clusters"
)]
struct Cli {
    /// NameServer addresses, `;`-separated (host:port;host:port).
    #[arg(
        short = 'n',
        long,
        env = "FERRUM_NAMESRV",
        default_value = "127.0.0.1:9876",
        global = true
    )]
    namesrv: String,
    /// Timeout of each request, in milliseconds.
    #[arg(long, default_value_t = 3000, global = true)]
    timeout_ms: u64,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Send headers in RocketMQ's binary serialization instead of JSON.
    #[arg(long, global = true)]
    rocketmq_headers: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Clusters and their broker groups.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Create, delete and inspect topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Send, fetch and look up single messages.
    #[command(subcommand)]
    Message(MessageCmd),
    /// Tail a topic: print messages as they arrive.
    Consume(ConsumeArgs),
    /// Consumer-group inspection.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Load generators (RocketMQ protocol only, so they drive any RocketMQ broker).
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Replication: role, epoch and lag of brokers; promote a slave (Ferrum brokers only).
    #[command(subcommand)]
    Broker(BrokerCmd),
    /// Raft mode (enableDLegerCommitLog=true): term, leader and replication of a group.
    #[command(subcommand)]
    Raft(RaftCmd),
}

#[derive(Debug, Subcommand)]
enum RaftCmd {
    /// Term, role, leader, commit and applied index and each peer's match index and lag.
    Status {
        /// The broker's address.
        #[arg(short = 'b', long = "broker-addr")]
        broker_addr: String,
    },
    /// Hand the leadership to a follower (the most up-to-date one unless --to names one);
    /// returns once the target leads, with its term.
    TransferLeader {
        /// The current leader's address.
        #[arg(short = 'b', long = "broker-addr")]
        broker_addr: String,
        /// The target's dLegerSelfId (e.g. n1).
        #[arg(long = "to")]
        to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum BrokerCmd {
    /// Role, epoch, offsets and per-slave replication lag of brokers.
    Status {
        /// Broker address(es); default: every broker the NameServers know.
        #[arg(short = 'b', long = "broker-addr")]
        broker_addr: Vec<String>,
    },
    /// Make a slave its group's master in a new epoch, without a restart.
    Promote {
        /// The slave's address.
        #[arg(short = 'b', long = "broker-addr")]
        broker_addr: String,
        /// Become SYNC_MASTER instead of ASYNC_MASTER.
        #[arg(long)]
        sync: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCmd {
    /// Every cluster, broker group and member address.
    List,
}

#[derive(Debug, Subcommand)]
enum TopicCmd {
    /// Create or update a topic on every master of a cluster (or on one broker).
    Create {
        topic: String,
        /// Cluster whose masters get the topic.
        #[arg(
            short = 'c',
            long,
            default_value = "DefaultCluster",
            conflicts_with = "broker"
        )]
        cluster: String,
        /// One broker address instead of a cluster.
        #[arg(short = 'b', long)]
        broker: Option<String>,
        #[arg(short = 'r', long, default_value_t = 8)]
        read_queues: i32,
        #[arg(short = 'w', long, default_value_t = 8)]
        write_queues: i32,
        /// Permission bits: 6 read+write, 4 read only, 2 write only.
        #[arg(short = 'p', long, default_value_t = PERM_READ | PERM_WRITE)]
        perm: i32,
        #[arg(long)]
        order: bool,
    },
    /// Delete a topic from the brokers of a cluster and from every NameServer.
    Delete {
        topic: String,
        #[arg(short = 'c', long)]
        cluster: Option<String>,
    },
    /// Every topic the NameServer knows.
    List,
    /// The topic's route: broker groups, addresses, queues.
    Route { topic: String },
    /// Min and max offset of every queue.
    Status { topic: String },
}

#[derive(Debug, Subcommand)]
enum MessageCmd {
    /// Send messages.
    Send {
        topic: String,
        /// Message body.
        body: String,
        #[arg(long)]
        tags: Option<String>,
        /// Keys (indexed for `query-key`), comma-separated.
        #[arg(long, value_delimiter = ',')]
        keys: Vec<String>,
        /// Route by hash of this key, so messages with one key stay in order.
        #[arg(long)]
        sharding_key: Option<String>,
        /// How many copies to send.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Fetch messages of one queue from an offset.
    Get {
        topic: String,
        /// Broker group name (default: the first one in the route).
        #[arg(short = 'b', long)]
        broker: Option<String>,
        #[arg(short = 'q', long, default_value_t = 0)]
        queue: i32,
        #[arg(short = 'o', long, default_value_t = 0)]
        offset: i64,
        #[arg(short = 'm', long, default_value_t = 1)]
        max: i32,
    },
    /// Messages of a topic with a key.
    QueryKey {
        topic: String,
        key: String,
        #[arg(long, default_value_t = 64)]
        max: i32,
    },
    /// The message with an offset message id.
    ViewId { msg_id: String },
}

#[derive(Debug, Args)]
struct ConsumeArgs {
    topic: String,
    #[arg(short = 'g', long, default_value = "ferrumctl-tail")]
    group: String,
    /// Start at each queue's first message instead of its end.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Commit offsets of the group as messages are printed.
    #[arg(long)]
    commit: bool,
}

#[derive(Debug, Subcommand)]
enum GroupCmd {
    /// Committed offset and lag of a group on every queue of a topic.
    Progress { group: String, topic: String },
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// N concurrent synchronous producers.
    Produce(BenchProduceArgs),
    /// Pull every queue of a topic as fast as possible.
    Consume(BenchConsumeArgs),
}

#[derive(Debug, Args)]
struct BenchLimit {
    /// Run for this many seconds.
    #[arg(short = 'd', long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many messages (whichever comes first).
    #[arg(long)]
    count: Option<u64>,
    /// Also write an SVG chart of messages per second and of the p50 / p99 latency of each
    /// second to this file.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct BenchProduceArgs {
    topic: String,
    /// Concurrent synchronous senders.
    #[arg(short = 'c', long, default_value_t = 32)]
    concurrency: u32,
    /// Body size in bytes.
    #[arg(short = 's', long, default_value_t = 1024)]
    size: usize,
    #[command(flatten)]
    limit: BenchLimit,
    /// Give each sender its own client (own connections) instead of sharing one.
    #[arg(long)]
    separate_clients: bool,
    #[arg(long, default_value = "ferrumctl-bench")]
    group: String,
    /// Offered rate in messages per second (open loop): sends are scheduled at fixed intended
    /// times and latency is measured from the intended time, so a stalled broker's backlog
    /// counts (no coordinated omission). `-c` bounds the sends in flight.
    #[arg(long)]
    rate: Option<u64>,
}

#[derive(Debug, Args)]
struct BenchConsumeArgs {
    topic: String,
    #[arg(short = 'g', long, default_value = "ferrumctl-bench")]
    group: String,
    #[command(flatten)]
    limit: BenchLimit,
    /// Messages per pull.
    #[arg(long, default_value_t = 32)]
    batch: i32,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

struct Ctx {
    addrs: Vec<String>,
    timeout: Duration,
    json: bool,
    connect: ConnectOptions,
}

impl Ctx {
    fn admin(&self) -> Admin {
        Admin::with_options(&self.addrs, self.connect.clone()).with_timeout(self.timeout)
    }

    fn producer_config(&self) -> ProducerConfig {
        ProducerConfig {
            send_timeout: self.timeout,
            connect: self.connect.clone(),
            ..Default::default()
        }
    }

    fn pull_config(&self, long_poll: Option<Duration>) -> PullConfig {
        PullConfig {
            timeout: self.timeout,
            long_poll,
            connect: self.connect.clone(),
            ..Default::default()
        }
    }

    /// Whether long operations draw progress bars (a terminal, no `--json`).
    fn bars(&self) -> bool {
        progress::interactive(self.json)
    }

    fn print<T: Serialize>(&self, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            print!("{}", text(value));
        }
        Ok(())
    }
}

async fn run(cli: Cli) -> Result<()> {
    let addrs = parse_addrs(&cli.namesrv);
    if addrs.is_empty() {
        bail!("no NameServer address: pass -n host:port[;host:port] or set FERRUM_NAMESRV");
    }
    if cli.timeout_ms == 0 {
        bail!("--timeout-ms must be positive");
    }
    let ctx = Ctx {
        addrs,
        timeout: Duration::from_millis(cli.timeout_ms),
        json: cli.json,
        connect: ConnectOptions {
            serialize_type: if cli.rocketmq_headers {
                SerializeType::RocketMq
            } else {
                SerializeType::Json
            },
            ..Default::default()
        },
    };
    match cli.command {
        Command::Cluster(ClusterCmd::List) => cluster_list(&ctx).await,
        Command::Topic(cmd) => topic(&ctx, cmd).await,
        Command::Message(cmd) => message(&ctx, cmd).await,
        Command::Consume(args) => consume(&ctx, args).await,
        Command::Group(GroupCmd::Progress { group, topic }) => {
            group_progress(&ctx, &group, &topic).await
        }
        Command::Bench(BenchCmd::Produce(args)) => bench_produce(&ctx, args).await,
        Command::Bench(BenchCmd::Consume(args)) => bench_consume(&ctx, args).await,
        Command::Broker(cmd) => broker(&ctx, cmd).await,
        Command::Raft(RaftCmd::Status { broker_addr }) => {
            let status = ctx
                .admin()
                .raft_status(&broker_addr)
                .await
                .with_context(|| format!("raft status of {broker_addr}"))?;
            ctx.print(&status, raft_status_text)
        }
        Command::Raft(RaftCmd::TransferLeader { broker_addr, to }) => {
            let result = ctx
                .admin()
                .transfer_leader(&broker_addr, to.as_deref())
                .await
                .with_context(|| format!("raft transfer-leader at {broker_addr}"))?;
            ctx.print(&result, |r| {
                format!(
                    "leader={} ({}) term={} previous={} elapsed_ms={}\n",
                    r.leader_id, r.leader_raft_addr, r.term, r.previous_leader_id, r.elapsed_millis
                )
            })
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn raft_status_text(s: &ferrum_client::admin::RaftStatus) -> String {
    let name = |id: &str, node: u64| {
        if id.is_empty() {
            node.to_string()
        } else {
            format!("{id} ({node})")
        }
    };
    let leader = s.leader.map_or_else(
        || "-".to_owned(),
        |l| {
            let id = s
                .peers
                .iter()
                .find(|p| p.node_id == l)
                .map_or("", |p| p.id.as_str());
            name(id, l)
        },
    );
    let mut out = format!(
        "node={} role={} term={} leader={} last_log_index={} commit_index={} applied_index={}\n",
        name(&s.self_id, s.node_id),
        s.role,
        s.term,
        leader,
        opt(s.last_log_index),
        opt(s.commit_index),
        opt(s.applied_index)
    );
    for p in &s.peers {
        out.push_str(&format!(
            "  peer node={} {} match_index={} lag={}\n",
            name(&p.id, p.node_id),
            p.addr,
            opt(p.match_index),
            opt(p.lag)
        ));
    }
    out
}

fn replica_status_text(statuses: &Vec<ferrum_protocol::replica::BrokerReplicaStatus>) -> String {
    let mut out = String::new();
    for s in statuses {
        out.push_str(&format!(
            "{}/{} id={} {} epoch={} (from offset {}) offsets={}..{}",
            s.cluster_name,
            s.broker_name,
            s.broker_id,
            s.role,
            s.epoch,
            s.epoch_start_offset,
            s.min_phy_offset,
            s.max_phy_offset
        ));
        if let Some(master) = &s.master_addr {
            out.push_str(&format!(" master={master}"));
        }
        if s.truncated_messages > 0 || s.truncated_bytes > 0 {
            out.push_str(&format!(
                " truncated={} msgs/{} bytes",
                s.truncated_messages, s.truncated_bytes
            ));
        }
        out.push('\n');
        for slave in &s.slaves {
            out.push_str(&format!(
                "  slave id={} {} acked={} lag={} bytes / {} ms\n",
                slave.broker_id, slave.addr, slave.acked_offset, slave.lag_bytes, slave.lag_millis
            ));
        }
    }
    out
}

async fn broker(ctx: &Ctx, cmd: BrokerCmd) -> Result<()> {
    let admin = ctx.admin();
    match cmd {
        BrokerCmd::Status { broker_addr } => {
            let addrs = if broker_addr.is_empty() {
                let info = admin
                    .namesrv()
                    .cluster_info()
                    .await
                    .context("broker status: cluster info")?;
                info.broker_addr_table
                    .values()
                    .flat_map(|b| b.broker_addrs.values().cloned())
                    .collect()
            } else {
                broker_addr
            };
            let mut statuses = Vec::new();
            for addr in &addrs {
                statuses.push(
                    admin
                        .broker_replica_status(addr)
                        .await
                        .with_context(|| format!("broker status of {addr}"))?,
                );
            }
            ctx.print(&statuses, replica_status_text)
        }
        BrokerCmd::Promote { broker_addr, sync } => {
            let status = admin
                .promote_broker(&broker_addr, sync)
                .await
                .with_context(|| format!("promote {broker_addr}"))?;
            ctx.print(&vec![status], replica_status_text)
        }
    }
}

async fn cluster_list(ctx: &Ctx) -> Result<()> {
    let info = ctx
        .admin()
        .namesrv()
        .cluster_info()
        .await
        .context("cluster list")?;
    ctx.print(&info, |info| {
        let mut out = format!(
            "{:<20} {:<20} {:>8}  {}\n",
            "CLUSTER", "BROKER", "ID", "ADDRESS"
        );
        for (cluster, names) in &info.cluster_addr_table {
            for name in names {
                let Some(b) = info.broker_addr_table.get(name) else {
                    continue;
                };
                for (id, addr) in &b.broker_addrs {
                    out.push_str(&format!("{cluster:<20} {name:<20} {id:>8}  {addr}\n"));
                }
            }
        }
        out
    })
}

async fn topic(ctx: &Ctx, cmd: TopicCmd) -> Result<()> {
    let admin = ctx.admin();
    match cmd {
        TopicCmd::Create {
            topic,
            cluster,
            broker,
            read_queues,
            write_queues,
            perm,
            order,
        } => {
            validate_topic(&topic)?;
            if !(1..=1024).contains(&read_queues) || !(1..=1024).contains(&write_queues) {
                bail!("queue counts must be between 1 and 1024");
            }
            if !(0..=7).contains(&perm) {
                bail!("--perm must be a combination of 4 (read), 2 (write) and 1 (inherit)");
            }
            let mut config = TopicConfig::new(topic.clone(), write_queues);
            config.read_queue_nums = read_queues;
            config.write_queue_nums = write_queues;
            config.perm = perm;
            config.order = order;
            let brokers = match broker {
                Some(addr) => {
                    admin
                        .create_topic(&addr, &config)
                        .await
                        .with_context(|| format!("create topic {topic} on {addr}"))?;
                    vec![addr]
                }
                None => {
                    let brokers = admin
                        .master_addrs(Some(&cluster))
                        .await
                        .with_context(|| format!("create topic {topic} in cluster {cluster}"))?;
                    if brokers.is_empty() {
                        bail!("cluster {cluster} has no master broker registered");
                    }
                    let bar = Progress::new(
                        ctx.bars() && brokers.len() > 1,
                        brokers.len() as u64,
                        progress::STEPS,
                        "brokers",
                    );
                    for addr in &brokers {
                        bar.set_message(|| addr.clone());
                        admin.create_topic(addr, &config).await.with_context(|| {
                            format!("create topic {topic} in cluster {cluster} on {addr}")
                        })?;
                        bar.inc(1);
                    }
                    bar.finish();
                    brokers
                }
            };
            ctx.print(&brokers, |b| {
                format!("created topic {topic} on {}\n", b.join(", "))
            })
        }
        TopicCmd::Delete { topic, cluster } => {
            admin
                .delete_topic(&topic, cluster.as_deref())
                .await
                .with_context(|| format!("delete topic {topic}"))?;
            ctx.print(&topic, |t| format!("deleted topic {t}\n"))
        }
        TopicCmd::List => {
            let list = admin.namesrv().all_topics().await.context("topic list")?;
            ctx.print(&list.topic_list, |l| {
                l.iter().map(|t| format!("{t}\n")).collect()
            })
        }
        TopicCmd::Route { topic } => {
            let route = admin
                .namesrv()
                .topic_route(&topic)
                .await
                .with_context(|| format!("route of {topic}"))?;
            // The route has no readable text form richer than its JSON.
            println!("{}", serde_json::to_string_pretty(&route)?);
            Ok(())
        }
        TopicCmd::Status { topic } => {
            let status = admin
                .topic_status(&topic)
                .await
                .with_context(|| format!("status of {topic}"))?;
            ctx.print(&status, |rows| {
                let mut out = format!(
                    "{:<20} {:>6} {:>14} {:>14}\n",
                    "BROKER", "QUEUE", "MIN", "MAX"
                );
                for r in rows {
                    out.push_str(&format!(
                        "{:<20} {:>6} {:>14} {:>14}\n",
                        r.broker_name, r.queue_id, r.min_offset, r.max_offset
                    ));
                }
                out
            })
        }
    }
}

fn validate_topic(topic: &str) -> Result<()> {
    if topic.is_empty() || topic.len() > 127 {
        bail!("topic name must be 1 to 127 characters");
    }
    if !topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '%' || c == '|')
    {
        bail!("topic name '{topic}' may only contain letters, digits, '-', '_', '%' and '|'");
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct MessageOut {
    msg_id: String,
    topic: String,
    queue_id: i32,
    queue_offset: i64,
    commit_log_offset: i64,
    store_timestamp: i64,
    born_timestamp: i64,
    born_host: String,
    store_host: String,
    reconsume_times: i32,
    properties: BTreeMap<String, String>,
    body: String,
}

impl MessageOut {
    fn new(m: &MessageExt) -> Self {
        MessageOut {
            msg_id: m.msg_id(),
            topic: m.topic.clone(),
            queue_id: m.queue_id,
            queue_offset: m.queue_offset,
            commit_log_offset: m.commit_log_offset,
            store_timestamp: m.store_timestamp,
            born_timestamp: m.born_timestamp,
            born_host: m.born_host.to_string(),
            store_host: m.store_host.to_string(),
            reconsume_times: m.reconsume_times,
            properties: m.properties.clone(),
            body: String::from_utf8_lossy(&m.body).into_owned(),
        }
    }

    fn text(&self) -> String {
        let props: Vec<String> = self
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "msgId={} topic={} queue={} offset={} storeTime={} props[{}]\n  {}\n",
            self.msg_id,
            self.topic,
            self.queue_id,
            self.queue_offset,
            self.store_timestamp,
            props.join(" "),
            self.body
        )
    }
}

fn print_messages(ctx: &Ctx, messages: &[MessageExt]) -> Result<()> {
    let out: Vec<MessageOut> = messages.iter().map(MessageOut::new).collect();
    ctx.print(&out, |ms| ms.iter().map(MessageOut::text).collect())
}

async fn message(ctx: &Ctx, cmd: MessageCmd) -> Result<()> {
    match cmd {
        MessageCmd::Send {
            topic,
            body,
            tags,
            keys,
            sharding_key,
            count,
        } => {
            validate_topic(&topic)?;
            let config = ctx.producer_config();
            let producer = Producer::with_config(&ctx.addrs, "ferrumctl", config);
            let bar = Progress::new(
                ctx.bars() && count > 1,
                count.into(),
                progress::STEPS,
                "sent",
            );
            for _ in 0..count {
                let mut msg = Message::new(body.clone()).with_keys(&keys);
                if let Some(tags) = &tags {
                    msg = msg.with_tags(tags.clone());
                }
                let result = match &sharding_key {
                    Some(key) => producer.send_with_key(&topic, msg, key).await,
                    None => producer.send(&topic, msg).await,
                }
                .with_context(|| format!("send to {topic}"))?;
                #[derive(Serialize)]
                struct Sent<'a> {
                    status: String,
                    msg_id: &'a str,
                    unique_id: &'a str,
                    broker_name: &'a str,
                    queue_id: i32,
                    queue_offset: i64,
                }
                let sent = Sent {
                    status: format!("{:?}", result.status),
                    msg_id: &result.msg_id,
                    unique_id: &result.unique_id,
                    broker_name: &result.queue.broker_name,
                    queue_id: result.queue.queue_id,
                    queue_offset: result.queue_offset,
                };
                bar.suspend(|| {
                    ctx.print(&sent, |s| {
                        format!(
                            "{} msgId={} uniqueId={} queue={}#{} offset={}\n",
                            s.status,
                            s.msg_id,
                            s.unique_id,
                            s.broker_name,
                            s.queue_id,
                            s.queue_offset
                        )
                    })
                })?;
                bar.inc(1);
            }
            bar.finish();
            Ok(())
        }
        MessageCmd::Get {
            topic,
            broker,
            queue,
            offset,
            max,
        } => {
            if !(1..=1024).contains(&max) {
                bail!("--max must be between 1 and 1024");
            }
            let consumer =
                PullConsumer::with_config(&ctx.addrs, "ferrumctl", ctx.pull_config(None));
            let queues = consumer
                .queues(&topic)
                .await
                .with_context(|| format!("route of {topic}"))?;
            let broker = match broker {
                Some(b) => b,
                None => queues
                    .first()
                    .map(|q| q.broker_name.clone())
                    .context("the topic has no readable queue")?,
            };
            let mq = queues
                .into_iter()
                .find(|q| q.broker_name == broker && q.queue_id == queue)
                .with_context(|| {
                    format!("topic {topic} has no readable queue {queue} on broker {broker}")
                })?;
            let result = consumer
                .pull(&mq, offset, max)
                .await
                .with_context(|| format!("pull {mq} at {offset}"))?;
            if result.status != PullStatus::Found {
                bail!(
                    "no message at offset {offset} of {mq} ({:?}; the queue holds offsets {}..{})",
                    result.status,
                    result.min_offset,
                    result.max_offset
                );
            }
            print_messages(ctx, &result.messages)
        }
        MessageCmd::QueryKey { topic, key, max } => {
            let found = ctx
                .admin()
                .query_by_key(&topic, &key, max)
                .await
                .with_context(|| format!("query {topic} by key {key}"))?;
            if found.is_empty() && !ctx.json {
                eprintln!("no message of {topic} has key {key}");
            }
            print_messages(ctx, &found)
        }
        MessageCmd::ViewId { msg_id } => {
            let m = ctx
                .admin()
                .view_message(&msg_id)
                .await
                .with_context(|| format!("view message {msg_id}"))?;
            print_messages(ctx, std::slice::from_ref(&m))
        }
    }
}

async fn group_progress(ctx: &Ctx, group: &str, topic: &str) -> Result<()> {
    let rows = ctx
        .admin()
        .group_progress(group, topic)
        .await
        .with_context(|| format!("progress of {group} on {topic}"))?;
    ctx.print(&rows, |rows| progress::lag_table(rows))
}

/// Pulls one queue forever, sending what it finds to `tx`.
async fn pull_loop(
    consumer: PullConsumer,
    mq: MessageQueue,
    mut offset: i64,
    batch: i32,
    tx: mpsc::Sender<(MessageQueue, Vec<MessageExt>, Duration, i64)>,
) {
    loop {
        let started = Instant::now();
        match consumer.pull(&mq, offset, batch).await {
            Ok(result) => {
                let elapsed = started.elapsed();
                match result.status {
                    PullStatus::Found | PullStatus::NoMatchedMsg => {}
                    PullStatus::OffsetIllegal => {
                        tracing::warn!(%mq, offset, next = result.next_begin_offset, "offset moved");
                    }
                    PullStatus::NoNewMsg => {}
                }
                offset = result.next_begin_offset;
                if !result.messages.is_empty()
                    && tx
                        .send((mq.clone(), result.messages, elapsed, offset))
                        .await
                        .is_err()
                {
                    return;
                }
                if tx.is_closed() {
                    return;
                }
            }
            Err(e) => {
                eprintln!("pull {mq} at {offset} failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn start_offset(
    consumer: &PullConsumer,
    mq: &MessageQueue,
    from_beginning: bool,
    use_committed: bool,
) -> Result<i64> {
    if use_committed && let Some(o) = consumer.committed_offset(mq).await? {
        return Ok(o);
    }
    Ok(if from_beginning {
        consumer.min_offset(mq).await?
    } else {
        consumer.max_offset(mq).await?
    })
}

/// The topic's readable queues; a topic without any is an error for the consume commands.
async fn readable_queues(consumer: &PullConsumer, topic: &str) -> Result<Vec<MessageQueue>> {
    let queues = consumer
        .queues(topic)
        .await
        .with_context(|| format!("route of {topic}"))?;
    if queues.is_empty() {
        bail!("topic {topic} has no readable queue");
    }
    Ok(queues)
}

async fn consume(ctx: &Ctx, args: ConsumeArgs) -> Result<()> {
    let config = ctx.pull_config(Some(Duration::from_secs(5)));
    let consumer = PullConsumer::with_config(&ctx.addrs, &args.group, config);
    let queues = readable_queues(&consumer, &args.topic).await?;
    let (tx, mut rx) = mpsc::channel(64);
    let mut behind = Vec::new();
    for mq in queues {
        let offset = start_offset(&consumer, &mq, args.from_beginning, args.commit)
            .await
            .with_context(|| format!("start offset of {mq}"))?;
        // The catch-up bar needs each queue's end; scripts (no terminal) skip the request.
        if ctx.bars() {
            behind.push((offset, consumer.max_offset(&mq).await.unwrap_or(offset)));
        }
        tokio::spawn(pull_loop(consumer.clone(), mq, offset, 32, tx.clone()));
    }
    drop(tx);
    // Shown until the backlog present at start is read; tailing after that prints lines only.
    let mut bar = Progress::new(
        ctx.bars(),
        progress::catch_up(&behind, args.count),
        progress::STEPS,
        "catching up",
    );
    let mut seen = 0u64;
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some((mq, messages, _, next_offset)) = next else {
            break;
        };
        // When --count stops mid-batch, only what was printed is committed: the rest of the
        // batch stays for the group's next consumer.
        let mut commit_to = next_offset;
        for m in &messages {
            let out = MessageOut::new(m);
            if ctx.json {
                println!("{}", serde_json::to_string(&out)?);
            } else {
                bar.suspend(|| print!("{}", out.text()));
            }
            bar.inc(1);
            if bar.is_full() {
                bar.finish();
                bar = Progress::default();
            }
            seen += 1;
            if args.count.is_some_and(|c| seen >= c) {
                commit_to = m.queue_offset + 1;
                break;
            }
        }
        if args.commit {
            consumer
                .commit_offset(&mq, commit_to)
                .await
                .with_context(|| format!("commit offset of {mq}"))?;
        }
        if args.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    bar.finish();
    Ok(())
}

#[derive(Debug, Serialize)]
struct BenchReport {
    mode: &'static str,
    /// Offered messages per second of an open-loop run (`--rate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    offered_rate: Option<u64>,
    topic: String,
    concurrency: u32,
    message_size: usize,
    messages: u64,
    errors: u64,
    elapsed_secs: f64,
    msgs_per_sec: f64,
    mb_per_sec: f64,
    latency_us: LatencySummary,
    /// Messages completed in each second of the run.
    per_second: Vec<u64>,
    /// p50 / p99 latency of the operations completed in each second of the run.
    latency_per_second: Vec<SecondLatency>,
}

impl BenchReport {
    fn text(&self) -> String {
        let l = &self.latency_us;
        let offered = match self.offered_rate {
            Some(rate) => {
                format!(" at an offered {rate} msgs/s (latency from the intended send time)")
            }
            None => String::new(),
        };
        format!(
            "{}{offered} {}: {} messages ({} errors) in {:.2}s\n  {:.0} msgs/s, {:.2} MB/s\n  latency ms: p50 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}  mean {:.3}\n",
            self.mode,
            self.topic,
            self.messages,
            self.errors,
            self.elapsed_secs,
            self.msgs_per_sec,
            self.mb_per_sec,
            l.p50_us as f64 / 1000.0,
            l.p99_us as f64 / 1000.0,
            l.p999_us as f64 / 1000.0,
            l.max_us as f64 / 1000.0,
            l.mean_us / 1000.0
        )
    }
}

/// The intended send times of an open-loop run: the i-th send is due at `start + i / rate`,
/// whether or not earlier sends have completed.
struct RateSchedule {
    start: Instant,
    interval_ns: f64,
    next: AtomicU64,
    count: u64,
}

impl RateSchedule {
    fn new(start: Instant, rate: u64, count: i64) -> Self {
        RateSchedule {
            start,
            interval_ns: 1e9 / rate as f64,
            next: AtomicU64::new(0),
            count: u64::try_from(count).unwrap_or(0),
        }
    }

    /// The next intended send time, or None when the run is over (count or deadline reached).
    fn next(&self, deadline: Instant) -> Option<Instant> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if i >= self.count {
            return None;
        }
        let at = self.start + Duration::from_nanos((i as f64 * self.interval_ns) as u64);
        (at < deadline).then_some(at)
    }
}

/// A bench's bar: messages out of `--count` when it is given, else seconds of `--duration`.
fn bench_bar(ctx: &Ctx, label: &str, duration: Duration, count: i64) -> (Progress, bool) {
    match u64::try_from(count) {
        Ok(c) if count < i64::MAX => (Progress::new(ctx.bars(), c, progress::STEPS, label), true),
        _ => (
            Progress::new(ctx.bars(), duration.as_secs(), progress::SECONDS, label),
            false,
        ),
    }
}

/// Shows counters every second until `stop` (a bar on a terminal, else a line on stderr);
/// returns the count of each second.
fn spawn_progress(
    label: &'static str,
    done: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    (bar, by_count): (Progress, bool),
) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut series = Vec::new();
        let start = Instant::now();
        let mut last = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let now = done.load(Ordering::Relaxed);
            let errors = errors.load(Ordering::Relaxed);
            if bar.is_shown() {
                bar.set_position(if by_count {
                    now
                } else {
                    start.elapsed().as_secs()
                });
                bar.set_message(|| format!("{label} {now} ({} /s), errors {errors}", now - last));
            } else {
                eprintln!(
                    "[{:>4}s] {label} {now} ({} /s), errors {errors}",
                    start.elapsed().as_secs(),
                    now - last,
                );
            }
            series.push(now - last);
            last = now;
        }
        bar.finish();
        series
    })
}

fn finish_series(
    report: &mut BenchReport,
    series: Vec<u64>,
    latency: Vec<SecondLatency>,
    svg: Option<&std::path::Path>,
) -> Result<()> {
    if let Some(path) = svg {
        let title = format!(
            "ferrumctl bench {} {}: throughput and latency per second",
            report.mode, report.topic
        );
        std::fs::write(path, svg_bench_chart(&title, &series, &latency))
            .with_context(|| format!("write {}", path.display()))?;
    }
    report.per_second = series;
    report.latency_per_second = latency;
    Ok(())
}

fn validate_limit(limit: &BenchLimit) -> Result<(Duration, i64)> {
    if limit.duration == 0 {
        bail!("--duration must be at least 1 second");
    }
    let count = match limit.count {
        Some(0) => bail!("--count must be positive"),
        Some(c) => i64::try_from(c).context("--count is too large")?,
        None => i64::MAX,
    };
    Ok((Duration::from_secs(limit.duration), count))
}

async fn bench_produce(ctx: &Ctx, args: BenchProduceArgs) -> Result<()> {
    validate_topic(&args.topic)?;
    if args.concurrency == 0 || args.concurrency > 10_000 {
        bail!("--concurrency must be between 1 and 10000");
    }
    if args.size == 0 || args.size > 4 * 1024 * 1024 {
        bail!("--size must be between 1 byte and 4 MiB (the broker's maxMessageSize)");
    }
    let (duration, count) = validate_limit(&args.limit)?;
    if args.rate.is_some_and(|rate| rate == 0 || rate > 1_000_000) {
        bail!("--rate must be between 1 and 1000000 messages per second");
    }
    let config = ctx.producer_config();
    let shared = Producer::with_config(&ctx.addrs, &args.group, config.clone());
    // Fails early and clearly when the NameServer or the topic is missing.
    shared
        .publish_info(&args.topic)
        .await
        .with_context(|| format!("route of {}", args.topic))?;
    let body = bytes::Bytes::from(vec![b'x'; args.size]);
    let remaining = Arc::new(AtomicI64::new(count));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = spawn_progress(
        "sent",
        done.clone(),
        errors.clone(),
        stop.clone(),
        bench_bar(ctx, "produce", duration, count),
    );
    let start = Instant::now();
    let deadline = start + duration;
    // Open loop: one schedule shared by every sender; a sender takes the next intended time,
    // sleeps until it if it is early, and charges the send from that time on.
    let schedule = args
        .rate
        .map(|rate| Arc::new(RateSchedule::new(start, rate, count)));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let producer = if args.separate_clients {
            Producer::with_config(&ctx.addrs, &args.group, config.clone())
        } else {
            shared.clone()
        };
        let (topic, body, remaining, done, errors, schedule) = (
            args.topic.clone(),
            body.clone(),
            remaining.clone(),
            done.clone(),
            errors.clone(),
            schedule.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = LatencyRecorder::default();
            let mut first_error = None;
            loop {
                let t = match &schedule {
                    Some(schedule) => match schedule.next(deadline) {
                        Some(intended) => {
                            tokio::time::sleep_until(intended.into()).await;
                            intended
                        }
                        None => break,
                    },
                    None => {
                        if Instant::now() >= deadline
                            || remaining.fetch_sub(1, Ordering::Relaxed) <= 0
                        {
                            break;
                        }
                        Instant::now()
                    }
                };
                match producer.send(&topic, Message::new(body.clone())).await {
                    Ok(_) => {
                        latencies.record_at(start.elapsed(), t.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            (latencies, first_error)
        }));
    }
    let mut latencies = LatencyRecorder::default();
    for w in workers {
        let (l, e) = w.await.context("a bench worker failed")?;
        if let Some(e) = e {
            eprintln!("send error (first of this sender): {e}");
        }
        latencies.merge(l);
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let series = progress.await.unwrap_or_default();
    let messages = done.load(Ordering::Relaxed);
    let latency = latencies.per_second();
    let (msgs_per_sec, mb_per_sec) = throughput(messages, messages * args.size as u64, elapsed);
    let mut report = BenchReport {
        mode: if args.rate.is_some() {
            "produce-rate"
        } else {
            "produce"
        },
        offered_rate: args.rate,
        topic: args.topic,
        concurrency: args.concurrency,
        message_size: args.size,
        messages,
        errors: errors.load(Ordering::Relaxed),
        elapsed_secs: elapsed.as_secs_f64(),
        msgs_per_sec,
        mb_per_sec,
        latency_us: latencies.summary(),
        per_second: Vec::new(),
        latency_per_second: Vec::new(),
    };
    finish_series(&mut report, series, latency, args.limit.svg.as_deref())?;
    ctx.print(&report, BenchReport::text)?;
    if messages == 0 {
        bail!("no message was sent");
    }
    Ok(())
}

async fn bench_consume(ctx: &Ctx, args: BenchConsumeArgs) -> Result<()> {
    if !(1..=1024).contains(&args.batch) {
        bail!("--batch must be between 1 and 1024");
    }
    let (duration, count) = validate_limit(&args.limit)?;
    let config = ctx.pull_config(Some(Duration::from_secs(1)));
    let consumer = PullConsumer::with_config(&ctx.addrs, &args.group, config);
    let queues = readable_queues(&consumer, &args.topic).await?;
    let (tx, mut rx) = mpsc::channel(256);
    let mut tasks = Vec::new();
    for mq in &queues {
        let offset = start_offset(&consumer, mq, true, true)
            .await
            .with_context(|| format!("start offset of {mq}"))?;
        tasks.push(tokio::spawn(pull_loop(
            consumer.clone(),
            mq.clone(),
            offset,
            args.batch,
            tx.clone(),
        )));
    }
    drop(tx);
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = spawn_progress(
        "received",
        done.clone(),
        errors.clone(),
        stop.clone(),
        bench_bar(ctx, "consume", duration, count),
    );
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + duration);
    let mut pull_latency = LatencyRecorder::default();
    let mut e2e = LatencyRecorder::default();
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut last_offsets = BTreeMap::new();
    let mut last_at = start;
    while (messages as i64) < count {
        let next = tokio::select! {
            next = rx.recv() => next,
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some((mq, batch, elapsed, next_offset)) = next else {
            break;
        };
        pull_latency.record_at(start.elapsed(), elapsed);
        let now = now_millis();
        for m in &batch {
            bytes += m.body.len() as u64;
            e2e.record(Duration::from_millis(
                (now - m.store_timestamp).max(0) as u64
            ));
        }
        messages += batch.len() as u64;
        last_at = Instant::now();
        done.store(messages, Ordering::Relaxed);
        last_offsets.insert(mq, next_offset);
    }
    // Time to the last message, so waiting out the duration on an empty topic does not count.
    let elapsed = if messages > 0 {
        last_at - start
    } else {
        start.elapsed()
    };
    stop.store(true, Ordering::Relaxed);
    let series = progress.await.unwrap_or_default();
    for t in tasks {
        t.abort();
    }
    // Record progress so the next run continues where this one stopped.
    for (mq, offset) in &last_offsets {
        if let Err(e) = consumer.commit_offset(mq, *offset).await {
            eprintln!("commit offset of {mq} failed: {e}");
        }
    }
    let (msgs_per_sec, mb_per_sec) = throughput(messages, bytes, elapsed);
    let latency = pull_latency.per_second();
    if !ctx.json {
        let s = e2e.summary();
        eprintln!(
            "store-to-consume latency ms: p50 {:.1}  p99 {:.1}  p999 {:.1}",
            s.p50_us as f64 / 1000.0,
            s.p99_us as f64 / 1000.0,
            s.p999_us as f64 / 1000.0
        );
    }
    let mut report = BenchReport {
        mode: "consume (pull round trip)",
        offered_rate: None,
        topic: args.topic,
        concurrency: queues.len() as u32,
        message_size: bytes.checked_div(messages).unwrap_or(0) as usize,
        messages,
        errors: errors.load(Ordering::Relaxed),
        elapsed_secs: elapsed.as_secs_f64(),
        msgs_per_sec,
        mb_per_sec,
        latency_us: pull_latency.summary(),
        per_second: Vec::new(),
        latency_per_second: Vec::new(),
    };
    finish_series(&mut report, series, latency, args.limit.svg.as_deref())?;
    ctx.print(&report, BenchReport::text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        let cli = Cli::try_parse_from([
            "ferrumctl",
            "-n",
            "a:1;b:2",
            "bench",
            "produce",
            "T",
            "-c",
            "4",
            "--count",
            "10",
            "--json",
        ])
        .expect("valid");
        assert_eq!(parse_addrs(&cli.namesrv), ["a:1", "b:2"]);
        assert!(cli.json);
        match cli.command {
            Command::Bench(BenchCmd::Produce(a)) => {
                assert_eq!((a.concurrency, a.size, a.limit.count), (4, 1024, Some(10)));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["ferrumctl", "bench", "produce", "T", "-c", "many"]).is_err());
        assert!(Cli::try_parse_from(["ferrumctl", "topic", "frobnicate"]).is_err());
        assert!(
            Cli::try_parse_from(["ferrumctl", "topic", "create", "T", "-c", "C", "-b", "x:1"])
                .is_err()
        );
    }

    #[test]
    fn rate_schedule_is_fixed_by_intended_time() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(1);
        let s = RateSchedule::new(start, 4, i64::MAX);
        let times: Vec<Duration> = std::iter::from_fn(|| s.next(deadline))
            .map(|t| t - start)
            .collect();
        assert_eq!(
            times,
            [0, 250, 500, 750].map(Duration::from_millis).to_vec(),
            "4 msgs/s over 1 s: due times do not depend on when sends complete"
        );
        let capped = RateSchedule::new(start, 1000, 3);
        assert_eq!(std::iter::from_fn(|| capped.next(deadline)).count(), 3);
        assert!(
            Cli::try_parse_from(["ferrumctl", "bench", "produce", "T", "--rate", "x"]).is_err()
        );
    }

    #[test]
    fn topic_names_are_checked() {
        assert!(validate_topic("Orders_2026-a").is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("has space").is_err());
        assert!(validate_topic(&"x".repeat(128)).is_err());
    }

    #[test]
    fn bench_limits_are_checked() {
        let limit = |duration, count| BenchLimit {
            duration,
            count,
            svg: None,
        };
        assert_eq!(
            validate_limit(&limit(5, None)).expect("ok"),
            (Duration::from_secs(5), i64::MAX)
        );
        assert!(validate_limit(&limit(0, None)).is_err());
        assert!(validate_limit(&limit(5, Some(0))).is_err());
    }
}
