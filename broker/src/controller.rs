//! `BrokerController`: binds the ports, loads the metadata and runs the server, registration and
//! housekeeping tasks; [`RunningBroker::shutdown`] stops them in order.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use ferrum_store::{MessageStore, MessageStoreConfig, StoreError};

use crate::client_manager::CHANNEL_EXPIRED_TIMEOUT;
use crate::config::BrokerConfig;
use crate::config::FlushDiskType;
use crate::persist::PersistError;
use crate::processor::BrokerCore;
use crate::register::{RegisterResult, Registrar};
use crate::server::{RemotingServer, ServerLimits};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find a free port pair (port and port - 2) for listenPort=0")]
    NoFreePortPair,
    #[error(transparent)]
    Metadata(#[from] PersistError),
    #[error("message store: {0}")]
    Store(#[from] StoreError),
    #[error("replication: {0}")]
    Ha(String),
}

/// A started broker.
#[derive(Debug)]
pub struct RunningBroker {
    pub listen_addr: SocketAddr,
    pub vip_addr: SocketAddr,
    pub core: Arc<BrokerCore>,
    pub register_result: Arc<std::sync::Mutex<RegisterResult>>,
    shutdown: watch::Sender<bool>,
    registrar: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(ip: IpAddr, port: u16) -> Result<TcpListener, StartError> {
    let addr = SocketAddr::new(ip, port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Binds listenPort and the VIP port listenPort − 2. With listenPort 0, tries ephemeral ports
/// until the one two below is free too.
async fn bind_pair(ip: IpAddr, port: u16) -> Result<(TcpListener, TcpListener), StartError> {
    if port != 0 {
        let main = bind(ip, port).await?;
        let vip = bind(ip, port - 2).await?;
        return Ok((main, vip));
    }
    for _ in 0..64 {
        let main = bind(ip, 0).await?;
        let Ok(addr) = main.local_addr() else {
            continue;
        };
        if addr.port() < 3 {
            continue;
        }
        if let Ok(vip) = bind(ip, addr.port() - 2).await {
            return Ok((main, vip));
        }
    }
    Err(StartError::NoFreePortPair)
}

/// Starts a broker with `config`.
pub async fn start(mut config: BrokerConfig) -> Result<RunningBroker, StartError> {
    let (main, vip) = bind_pair(config.bind_address, config.listen_port).await?;
    let listen_addr = main.local_addr().map_err(|source| StartError::Bind {
        addr: SocketAddr::new(config.bind_address, config.listen_port),
        source,
    })?;
    let vip_addr = vip.local_addr().map_err(|source| StartError::Bind {
        addr: SocketAddr::new(config.bind_address, config.listen_port.saturating_sub(2)),
        source,
    })?;
    config.listen_port = listen_addr.port();
    // Raft mode replaces master–slave replication: no HA listener, no slave task.
    let raft_config = crate::raft::RaftConfig::from_broker_config(&config)
        .map_err(|e| StartError::Ha(e.to_string()))?;
    let ha_listener = match raft_config {
        Some(_) => None,
        None => {
            let listener = bind(config.bind_address, config.ha_listen_port).await?;
            if let Ok(addr) = listener.local_addr() {
                config.ha_listen_port = addr.port();
            }
            Some(listener)
        }
    };
    let broker_addr = config.broker_addr();
    let store_config = store_config(&config).await;
    let opening = Instant::now();
    let store = tokio::task::spawn_blocking(move || MessageStore::open(store_config))
        .await
        .map_err(|e| StartError::Store(StoreError::Config(e.to_string())))??;
    let core = match BrokerCore::load(config, broker_addr, store.clone()) {
        Ok(core) => Arc::new(core),
        Err(error) => {
            let _ = store.shutdown();
            return Err(error.into());
        }
    };
    // Before serving: a returning old master must learn of a newer one before it takes writes.
    let startup = match raft_config {
        Some(raft_config) => crate::raft::broker::RaftBroker::start(&core, raft_config)
            .await
            .map(|raft| {
                crate::raft::metrics::spawn(&core, &raft);
                let _ = core.raft.set(raft);
            }),
        None => crate::ha::remote::startup_role(&core).await,
    };
    if let Err(error) = startup {
        let _ = core.store.shutdown();
        return Err(StartError::Ha(error));
    }
    core.metrics
        .store_recovery_seconds
        .set(opening.elapsed().as_secs_f64());
    let (shutdown, shutdown_rx) = watch::channel(false);

    let limits = ServerLimits {
        max_in_flight_per_connection: core.config.server_max_in_flight_per_connection,
        global_capacity: core.config.server_request_queue_capacity,
        wait_for_slot: Duration::from_millis(core.config.wait_time_mills_in_send_queue),
    };
    // Both ports share one server so the global limit spans them.
    let server = RemotingServer::new(core.clone(), limits);
    let mut tasks = vec![
        tokio::spawn(server.clone().serve(main, shutdown_rx.clone())),
        tokio::spawn(server.serve(vip, shutdown_rx.clone())),
    ];
    tasks.push(tokio::spawn(housekeeping(
        core.clone(),
        shutdown_rx.clone(),
    )));

    if let Some(ha_listener) = ha_listener {
        tasks.push(tokio::spawn(crate::ha::master::serve(
            core.clone(),
            ha_listener,
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::ha::slave::run(
            core.clone(),
            shutdown_rx.clone(),
        )));
    }
    // Both run only while the broker is master (the Raft leader in Raft mode) and write through
    // the Raft log there.
    tasks.push(tokio::spawn(crate::schedule::run(
        core.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::transaction::run(
        core.clone(),
        shutdown_rx.clone(),
    )));

    let registrar = Registrar::new(core.clone());
    let register_result = registrar.last_result.clone();
    {
        // Runs on every broker: the role changes on promotion and when an old master returns.
        let answer = register_result.clone();
        let sync_core = core.clone();
        let master_addr = move || {
            let role = sync_core.ha.role();
            if !role.is_slave() {
                return None;
            }
            role.master_addr.or_else(|| {
                answer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .master_addr
                    .clone()
            })
        };
        tasks.push(tokio::spawn(crate::slave_sync::run(
            core.clone(),
            master_addr,
            shutdown_rx.clone(),
        )));
    }
    let registrar = tokio::spawn(registrar.run(shutdown_rx));
    Ok(RunningBroker {
        listen_addr,
        vip_addr,
        core,
        register_result,
        shutdown,
        registrar,
        tasks,
    })
}

/// The store's settings from broker.conf. STOREHOST in every record is brokerIP1 resolved now
/// (it may be a DNS name); an unresolvable name falls back to loopback with a warning.
async fn store_config(config: &BrokerConfig) -> MessageStoreConfig {
    let mut store = MessageStoreConfig::new(&config.store_path_root_dir);
    if config.store_path_commit_log() != config.store_path_root_dir.join("commitlog") {
        tracing::warn!(
            key = "storePathCommitLog",
            "the commit log always lives in storePathRootDir/commitlog; storePathCommitLog is ignored"
        );
    }
    store.mapped_file_size_commit_log = config.mapped_file_size_commit_log as usize;
    store.consume_queue_units_per_file = (config.mapped_file_size_consume_queue / 20) as usize;
    store.flush_disk_type = match config.flush_disk_type {
        FlushDiskType::AsyncFlush => ferrum_store::FlushDiskType::AsyncFlush,
        FlushDiskType::SyncFlush => ferrum_store::FlushDiskType::SyncFlush,
    };
    store.max_message_size = config.max_message_size;
    store.max_hash_slot_num = config.max_hash_slot_num;
    store.max_index_num = config.max_index_num;
    store.message_index_enable = config.message_index_enable;
    store.message_index_safe = config.message_index_safe;
    store.total_physical_memory =
        crate::slave_sync::total_physical_memory(config.total_physical_memory_bytes);
    store.access_message_in_memory_max_ratio = config.access_message_in_memory_max_ratio;
    store.sync_flush_timeout = Duration::from_millis(config.sync_flush_timeout);
    store.file_reserved_time = Duration::from_secs(u64::from(config.file_reserved_time) * 3600);
    store.delete_when = config.delete_when.clone();
    store.disk_max_used_space_ratio = config.disk_max_used_space_ratio.min(100) as u8;
    store.disk_space_warning_level_ratio = config.disk_space_warning_level_ratio;
    store.disk_space_clean_forcibly_ratio = config.disk_space_clean_forcibly_ratio;
    store.clean_file_forcibly_enable = config.clean_file_forcibly_enable;
    let host = format!("{}:{}", config.broker_ip1, config.listen_port);
    store.store_host = match tokio::net::lookup_host(&host).await {
        Ok(mut addrs) => addrs
            .find(SocketAddr::is_ipv4)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], config.listen_port))),
        Err(error) => {
            tracing::warn!(%host, %error, "brokerIP1 does not resolve; STOREHOST will be 127.0.0.1");
            SocketAddr::from(([127, 0, 0, 1], config.listen_port))
        }
    };
    store
}

/// Persists consumer offsets on their interval and drops clients that stopped heartbeating.
async fn housekeeping(core: Arc<BrokerCore>, mut shutdown: watch::Receiver<bool>) {
    let mut flush = tokio::time::interval(Duration::from_millis(
        core.config.flush_consumer_offset_interval,
    ));
    let mut scan = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = flush.tick() => {
                if let Err(error) = core.offsets.persist() {
                    tracing::error!(%error, "consumer offsets not persisted");
                }
            }
            _ = scan.tick() => {
                for group in core.clients.scan_expired(Instant::now(), CHANNEL_EXPIRED_TIMEOUT) {
                    core.notify_consumer_ids_changed(&group);
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

impl RunningBroker {
    /// Stops accepting, unregisters from the NameServers and persists the offsets.
    pub async fn shutdown(self) {
        if let Some(raft) = self.core.raft.get() {
            raft.hand_over_leadership(&self.core).await;
        }
        let _ = self.shutdown.send(true);
        let _ = self.registrar.await;
        for task in self.tasks {
            let _ = task.await;
        }
        if let Err(error) = self.core.offsets.persist() {
            tracing::error!(%error, "consumer offsets not persisted at shutdown");
        }
        if let Some(raft) = self.core.raft.get() {
            raft.shutdown().await;
        }
        let store = self.core.store.clone();
        match tokio::task::spawn_blocking(move || store.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "message store did not shut down cleanly"),
            Err(error) => tracing::error!(%error, "message store shutdown task failed"),
        }
    }
}
