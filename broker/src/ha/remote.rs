//! Role decisions that need other processes: promotion (FERRUM_PROMOTE_BROKER), the returning
//! old master's check at start, and the two admin requests' handlers.
//!
//! The checks ask the NameServers (GET_BROKER_CLUSTER_INFO) for the group's brokerId-0 address
//! and that broker for its epoch (FERRUM_GET_BROKER_REPLICA_STATUS), so two masters of one group
//! never run in the same epoch: a promotion is refused while a master of an equal or newer epoch
//! answers, and a master that finds a newer one at start, or before any registration round
//! while running, becomes its slave.
//!
//! The NameServer does not judge epochs: Apache brokers register without one, and it keeps the
//! latest brokerId-0 registration; the two masters settle it between themselves within one
//! registration period.

use std::collections::BTreeMap;
use std::time::Duration;

use ferrum_protocol::replica::BrokerReplicaStatus;
use ferrum_protocol::route::{ClusterInfo, MASTER_ID, from_json, to_json};
use ferrum_protocol::{RemotingCodec, RemotingCommand, RequestCode, ResponseCode};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::config::BrokerRole;
use crate::processor::BrokerCore;

const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// One request on a fresh connection; `Err` says why in words fit for a remark.
pub async fn call(addr: &str, request: RemotingCommand) -> Result<RemotingCommand, String> {
    let result = tokio::time::timeout(CALL_TIMEOUT, async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let mut conn = Framed::new(stream, RemotingCodec::default());
        let request = request.with_opaque(1);
        conn.send(request)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        loop {
            match conn.next().await {
                Some(Ok(answer)) if answer.is_response() && answer.opaque == 1 => {
                    return Ok(answer);
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("{addr}: {e}")),
                None => return Err(format!("{addr} closed the connection")),
            }
        }
    })
    .await;
    result.unwrap_or_else(|_| Err(format!("{addr} did not answer within {CALL_TIMEOUT:?}")))
}

/// The members of this broker's group as the NameServers see them (union over all of them).
pub async fn group_members(core: &BrokerCore) -> BTreeMap<i64, String> {
    let mut members = BTreeMap::new();
    for namesrv in &core.config.namesrv_addr {
        let request = RemotingCommand::bare_request(RequestCode::GET_BROKER_CLUSTER_INFO);
        match call(namesrv, request).await {
            Ok(answer) if answer.code == ResponseCode::SUCCESS.code() => {
                match from_json::<ClusterInfo>(&answer.body, "ClusterInfo") {
                    Ok(info) => {
                        if let Some(data) = info.broker_addr_table.get(&core.config.broker_name) {
                            members.extend(data.broker_addrs.clone());
                        }
                    }
                    Err(error) => tracing::warn!(%namesrv, %error, "unreadable cluster info"),
                }
            }
            Ok(answer) => tracing::warn!(%namesrv, code = answer.code, "cluster info refused"),
            Err(error) => tracing::warn!(%namesrv, %error, "cluster info unavailable"),
        }
    }
    members
}

/// Asks a broker for its replica status.
pub async fn replica_status(addr: &str) -> Result<BrokerReplicaStatus, String> {
    let answer = call(
        addr,
        RemotingCommand::bare_request(RequestCode::FERRUM_GET_BROKER_REPLICA_STATUS),
    )
    .await?;
    if answer.code != ResponseCode::SUCCESS.code() {
        return Err(format!(
            "{addr} answered code {}: {}",
            answer.code,
            answer.remark.unwrap_or_default()
        ));
    }
    serde_json::from_slice(&answer.body).map_err(|e| format!("{addr}: unreadable status: {e}"))
}

/// The live master of this group other than this broker, with its status.
async fn live_master(core: &BrokerCore) -> Option<(String, BrokerReplicaStatus)> {
    let members = group_members(core).await;
    let addr = members.get(&MASTER_ID)?;
    if *addr == core.broker_addr {
        return None;
    }
    match replica_status(addr).await {
        Ok(status) if status.role != BrokerRole::Slave.to_string() => Some((addr.clone(), status)),
        Ok(_) => None,
        Err(error) => {
            tracing::info!(master = %addr, %error, "the registered master does not answer");
            None
        }
    }
}

/// The brokerId a demoted master takes: `brokerIdWhenDemoted`, else one above every other
/// member the NameServers list.
async fn demoted_id(core: &BrokerCore) -> i64 {
    let members = group_members(core).await;
    let highest = members
        .iter()
        .filter(|(_, a)| **a != core.broker_addr)
        .map(|(id, _)| *id)
        .max()
        .unwrap_or(0);
    core.config.broker_id_when_demoted.unwrap_or(highest + 1)
}

/// Run by the registrar before each round: a running master that finds another live master of
/// its group in a newer epoch (it was partitioned or stopped while a slave was promoted) becomes
/// that master's slave at once. From then on sends are refused as on any slave, and the slave
/// task's handshake truncates the tail this broker wrote after the new epoch began. Returns
/// whether this broker was demoted.
pub async fn demote_if_superseded(core: &BrokerCore) -> bool {
    if core.ha.is_slave() {
        return false;
    }
    let Some((addr, status)) = live_master(core).await else {
        return false;
    };
    let _transition = core.ha.transition.lock().await;
    let own_epoch = core.ha.current_epoch();
    if core.ha.is_slave() || status.epoch <= own_epoch {
        return false;
    }
    let id = demoted_id(core).await;
    tracing::error!(
        master = %addr,
        master_epoch = status.epoch,
        own_epoch,
        broker_id = id,
        max_phy_offset = core.store.max_phy_offset(),
        "split brain: another master of this group is live in a newer epoch; demoting to its slave, sends are refused from now on and the tail written since its epoch began will be truncated"
    );
    core.ha.set_role(BrokerRole::Slave, id);
    core.ha.count_demotion();
    true
}

/// At start: a configured master that finds a live master of a newer (or equal) epoch becomes
/// its slave; a master staying master with no epoch opens epoch 1 at its max offset.
pub async fn startup_role(core: &BrokerCore) -> Result<(), String> {
    let configured = core.ha.role();
    if configured.is_slave() {
        return Ok(());
    }
    let own_epoch = core.ha.current_epoch();
    if let Some((addr, status)) = live_master(core).await
        && status.epoch >= own_epoch
        && status.epoch > 0
    {
        let id = demoted_id(core).await;
        tracing::warn!(
            master = %addr,
            master_epoch = status.epoch,
            own_epoch,
            broker_id = id,
            "another master of this group is live in a newer epoch: starting as its slave"
        );
        core.ha.set_role(BrokerRole::Slave, id);
        return Ok(());
    }
    if own_epoch == 0 {
        let start = core.store.max_phy_offset();
        core.ha.open_epoch(1, start)?;
        tracing::info!(epoch = 1, start_offset = start, "opened the first epoch");
    }
    Ok(())
}

/// Makes this slave the group's master in a new epoch; returns the new status.
pub async fn promote(core: &BrokerCore, role: BrokerRole) -> Result<BrokerReplicaStatus, String> {
    let _transition = core.ha.transition.lock().await;
    let current = core.ha.role();
    if !current.is_slave() {
        return Err(format!(
            "this broker is already {} (brokerId {}): only a slave can be promoted",
            current.role, current.broker_id
        ));
    }
    let own_epoch = core.ha.current_epoch();
    let mut next_epoch = own_epoch + 1;
    if let Some((addr, status)) = live_master(core).await {
        if status.epoch >= own_epoch {
            return Err(format!(
                "master {addr} of this group is live in epoch {} (this slave holds epoch {own_epoch}); stop it before promoting",
                status.epoch
            ));
        }
        next_epoch = next_epoch.max(status.epoch + 1);
    }
    // Replication stops here: no append lands after the offset the new epoch starts at.
    core.ha.set_promoting(true);
    let ha_store = core.store.clone();
    let gate = core.ha.append_gate();
    let start = tokio::task::spawn_blocking(move || {
        let _gate = gate.lock().unwrap_or_else(|e| e.into_inner());
        ha_store.max_phy_offset()
    })
    .await
    .map_err(|e| e.to_string());
    let opened = start.and_then(|start| core.ha.open_epoch(next_epoch, start).map(|()| start));
    let start = match opened {
        Ok(start) => start,
        Err(error) => {
            core.ha.set_promoting(false);
            return Err(format!("cannot open epoch {next_epoch}: {error}"));
        }
    };
    core.ha.set_role(role, MASTER_ID);
    core.ha.set_promoting(false);
    tracing::warn!(
        epoch = next_epoch,
        start_offset = start,
        old_broker_id = current.broker_id,
        %role,
        "promoted to master"
    );
    Ok(core.ha.status(&core.config, &core.store))
}

/// FERRUM_GET_BROKER_REPLICA_STATUS.
pub fn handle_status(core: &BrokerCore, request: &RemotingCommand) -> RemotingCommand {
    request
        .success_to()
        .with_body(to_json(&core.ha.status(&core.config, &core.store)))
}

/// FERRUM_PROMOTE_BROKER; ext field `brokerRole` may ask for SYNC_MASTER (default ASYNC_MASTER).
pub async fn handle_promote(core: &BrokerCore, request: &RemotingCommand) -> RemotingCommand {
    let role = match request.ext_fields.get("brokerRole").map(String::as_str) {
        None | Some("") | Some("ASYNC_MASTER") => BrokerRole::AsyncMaster,
        Some("SYNC_MASTER") => BrokerRole::SyncMaster,
        Some(other) => {
            return request.error_to(
                ResponseCode::INVALID_PARAMETER,
                format!("brokerRole {other} is not ASYNC_MASTER or SYNC_MASTER"),
            );
        }
    };
    match promote(core, role).await {
        Ok(status) => request.success_to().with_body(to_json(&status)),
        Err(remark) => request.error_to(ResponseCode::SYSTEM_ERROR, remark),
    }
}
