//! Transactional messages as RocketMQ stores them (`TransactionalMessageServiceImpl`,
//! `EndTransactionProcessor`, `TransactionalMessageCheckService`).
//!
//! A prepared send (property TRAN_MSG=true) is stored in `RMQ_SYS_TRANS_HALF_TOPIC` queue 0 with
//! its real topic and queue in REAL_TOPIC / REAL_QID, so no consumer sees it. END_TRANSACTION
//! commits (the half message is put again to its real queue) or rolls back; either way an op
//! message in `RMQ_SYS_TRANS_OP_HALF_TOPIC` (tag `d`, body = the half message's queue offset)
//! marks it resolved. The check service, on a master only, asks a live producer of the group
//! (CHECK_TRANSACTION_STATE, oneway) about half messages older than `transactionTimeOut` that
//! no op message resolves; each check puts the half message back with TRANSACTION_CHECK_TIMES
//! incremented, and after `transactionCheckMax` checks it goes to TRANS_CHECK_MAX_TIME_TOPIC.
//! All state is in those topics plus the check group's offsets, so it survives a restart. In
//! Raft mode every put goes through the Raft log and the check service runs on the leader, so
//! the half, op and committed messages survive a leader change too.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use ferrum_protocol::headers::flags::message_sys_flag::reset_transaction_value;
use ferrum_protocol::headers::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use ferrum_protocol::message::{self, MessageExt, property, sys_flag};
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrum_store::{GetMessageStatus, MessageExtBrokerInner, MessageFilter};
use tokio::sync::watch;

use crate::message_processor::put_status_code;
use crate::processor::BrokerCore;
use crate::server::{Channel, Reply};
use crate::topic::now_millis;

pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where half messages go after `transactionCheckMax` unanswered checks.
pub const CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// The group whose offsets on the half and op topics record the check service's progress.
pub const CHECK_GROUP: &str = "CID_RMQ_SYS_TRANS";
/// Tag of op messages (`TransactionalMessageUtil.REMOVE_TAG`).
pub const REMOVE_TAG: &str = "d";
pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
const SCAN_BATCH: usize = 32;

/// Opaques of the check requests; the producer never answers a oneway request, so they only
/// need to differ from each other.
static CHECK_OPAQUE: AtomicI32 = AtomicI32::new(1);

/// Whether a sent message is the prepared half of a transaction.
pub fn is_prepared(properties: &std::collections::BTreeMap<String, String>) -> bool {
    properties
        .get(property::TRANSACTION_PREPARED)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Rewrites a prepared message to wait in the half topic (`parseHalfMessageInner`).
pub fn divert_half(msg: &mut MessageExtBrokerInner) {
    msg.properties
        .insert(property::REAL_TOPIC.to_owned(), msg.topic.clone());
    msg.properties
        .insert(property::REAL_QUEUE_ID.to_owned(), msg.queue_id.to_string());
    msg.sys_flag = reset_transaction_value(msg.sys_flag, sys_flag::TRANSACTION_NOT_TYPE);
    msg.topic = HALF_TOPIC.to_owned();
    msg.queue_id = 0;
    msg.tags_code = None;
}

/// The message a commit puts to the real queue (`endMessageTransaction`): the prepared property
/// is cleared and the sysflag says committed.
pub fn committed(stored: MessageExt) -> Option<MessageExtBrokerInner> {
    let mut properties = stored.properties;
    let topic = properties.get(property::REAL_TOPIC)?.clone();
    let queue_id: i32 = properties.get(property::REAL_QUEUE_ID)?.parse().ok()?;
    properties.remove(property::TRANSACTION_PREPARED);
    Some(MessageExtBrokerInner {
        topic,
        queue_id,
        flag: stored.flag,
        sys_flag: reset_transaction_value(stored.sys_flag, sys_flag::TRANSACTION_COMMIT_TYPE),
        born_timestamp: stored.born_timestamp,
        born_host: Some(stored.born_host),
        reconsume_times: stored.reconsume_times,
        prepared_transaction_offset: stored.commit_log_offset,
        body: stored.body,
        properties,
        tags_code: None,
    })
}

/// The op message marking the half message at `half_queue_offset` resolved.
pub fn op_message(half_queue_offset: i64) -> MessageExtBrokerInner {
    let mut properties = std::collections::BTreeMap::new();
    properties.insert(property::TAGS.to_owned(), REMOVE_TAG.to_owned());
    MessageExtBrokerInner {
        topic: OP_HALF_TOPIC.to_owned(),
        queue_id: 0,
        born_timestamp: now_millis(),
        body: bytes::Bytes::from(half_queue_offset.to_string()),
        properties,
        tags_code: Some(message::tags_code(REMOVE_TAG)),
        ..Default::default()
    }
}

/// Half queue offsets an op message resolves. RocketMQ 4.x writes one offset, 5.x may write
/// several separated by `,`; anything else is ignored.
pub fn parse_op_body(body: &[u8]) -> Vec<i64> {
    std::str::from_utf8(body)
        .unwrap_or("")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// The half message copied back to the half queue for its next check.
fn put_back(stored: &MessageExt, check_times: u32) -> MessageExtBrokerInner {
    let mut properties = stored.properties.clone();
    properties.insert(TRANSACTION_CHECK_TIMES.to_owned(), check_times.to_string());
    MessageExtBrokerInner {
        topic: HALF_TOPIC.to_owned(),
        queue_id: 0,
        flag: stored.flag,
        sys_flag: stored.sys_flag,
        born_timestamp: stored.born_timestamp,
        born_host: Some(stored.born_host),
        reconsume_times: stored.reconsume_times,
        prepared_transaction_offset: stored.prepared_transaction_offset,
        body: stored.body.clone(),
        properties,
        tags_code: None,
    }
}

/// What the check service does with one unresolved half message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckDecision {
    /// Too young: the producer may still end it; stop scanning here.
    Wait,
    /// Checked `transactionCheckMax` times already: give up on it.
    Discard,
    /// Put it back with this check count and ask the producer.
    Check(u32),
}

pub fn decide(stored: &MessageExt, now: i64, timeout_ms: i64, check_max: u32) -> CheckDecision {
    let checks: u32 = stored
        .properties
        .get(TRANSACTION_CHECK_TIMES)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if checks >= check_max {
        return CheckDecision::Discard;
    }
    let immunity = stored
        .properties
        .get(CHECK_IMMUNITY_TIME_IN_SECONDS)
        .and_then(|v| v.parse::<i64>().ok())
        .map(|s| s.saturating_mul(1000))
        .unwrap_or(timeout_ms);
    if now - stored.born_timestamp < immunity {
        return CheckDecision::Wait;
    }
    CheckDecision::Check(checks + 1)
}

fn fail(request: &RemotingCommand, code: ResponseCode, remark: impl Into<String>) -> Reply {
    Reply::Command(request.error_to(code, remark.into()))
}

impl BrokerCore {
    /// END_TRANSACTION 37.
    pub(crate) async fn end_transaction(&self, request: &RemotingCommand) -> Reply {
        let header: EndTransactionRequestHeader = match request.decode_header() {
            Ok(header) => header,
            Err(error) => return fail(request, ResponseCode::SYSTEM_ERROR, error.to_string()),
        };
        if self.ha.is_slave() {
            return fail(
                request,
                ResponseCode::SLAVE_NOT_AVAILABLE,
                "the broker is a slave: it cannot end a transaction",
            );
        }
        let commit = match header.commit_or_rollback {
            sys_flag::TRANSACTION_COMMIT_TYPE => true,
            sys_flag::TRANSACTION_ROLLBACK_TYPE => false,
            // UNKNOW: the check service asks again later.
            sys_flag::TRANSACTION_NOT_TYPE => return Reply::None,
            other => {
                return fail(
                    request,
                    ResponseCode::SYSTEM_ERROR,
                    format!("commitOrRollback {other} is neither commit (8) nor rollback (12)"),
                );
            }
        };
        let stored = match self
            .store
            .lookup_message_by_offset(header.commit_log_offset)
            .map(|raw| MessageExt::decode(&raw))
        {
            Some(Ok((stored, _))) => stored,
            _ => {
                return fail(
                    request,
                    ResponseCode::SYSTEM_ERROR,
                    "Find prepared transaction message failed",
                );
            }
        };
        if let Err(remark) = check_prepared(&stored, &header) {
            return fail(request, ResponseCode::SYSTEM_ERROR, remark);
        }
        if commit {
            let Some(message) = committed(stored.clone()) else {
                return fail(
                    request,
                    ResponseCode::SYSTEM_ERROR,
                    "the half message has no REAL_TOPIC/REAL_QID",
                );
            };
            let (topic, queue_id) = (message.topic.clone(), message.queue_id);
            let put = self.put_through_log(vec![message]).await;
            if !put.status.is_written() {
                let (code, remark) = put_status_code(put.status);
                let remark = put
                    .remark
                    .or(remark.map(str::to_owned))
                    .unwrap_or_else(|| format!("{:?}", put.status));
                return fail(request, code, remark);
            }
            self.ha.appended.notify_waiters();
            self.pull_waiters.wake(&topic, queue_id);
        }
        let op = self
            .put_through_log(vec![op_message(stored.queue_offset)])
            .await;
        if !op.status.is_written() {
            // The transaction is ended but not marked: the check service will ask again.
            tracing::warn!(status = ?op.status, "transaction op message not stored");
        }
        Reply::Command(request.success_to())
    }
}

/// `checkPrepareMessage`: the offsets and group must name the half message.
fn check_prepared(stored: &MessageExt, header: &EndTransactionRequestHeader) -> Result<(), String> {
    if stored.topic != HALF_TOPIC {
        return Err(format!(
            "the message at commitLogOffset {} is not a half message",
            header.commit_log_offset
        ));
    }
    if stored.properties.get(property::PRODUCER_GROUP) != Some(&header.producer_group) {
        return Err("The producer group wrong".into());
    }
    if stored.queue_offset != header.tran_state_table_offset {
        return Err("The transaction state table offset wrong".into());
    }
    if stored.commit_log_offset != header.commit_log_offset {
        return Err("The commit log offset wrong".into());
    }
    Ok(())
}

/// Runs the check service every `transactionCheckInterval` until `shutdown`, only while this
/// broker is a master (a slave's half topic is the master's, replicated).
pub async fn run(core: Arc<BrokerCore>, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(core.config.transaction_check_interval.max(10));
    let role = core.ha.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if role.borrow().is_slave() {
            continue;
        }
        check_once(&core).await;
    }
}

/// Half queue offsets resolved by op messages from the check group's op offset on, and how far
/// the op offset may move: past op messages that only resolve offsets below `half_offset`.
fn resolved(core: &BrokerCore, half_offset: i64) -> (BTreeSet<i64>, i64) {
    let start = core
        .offsets
        .query(CHECK_GROUP, OP_HALF_TOPIC, 0)
        .unwrap_or_else(|| core.store.get_min_offset_in_queue(OP_HALF_TOPIC, 0));
    let mut done = BTreeSet::new();
    let (mut offset, mut advance_to, mut prefix) = (start, start, true);
    loop {
        let result = core.store.get_message(
            CHECK_GROUP,
            OP_HALF_TOPIC,
            0,
            offset,
            SCAN_BATCH,
            1024 * 1024,
            &MessageFilter::All,
        );
        if result.status != GetMessageStatus::Found {
            if result.next_begin_offset > offset
                && matches!(
                    result.status,
                    GetMessageStatus::OffsetTooSmall | GetMessageStatus::OffsetReset
                )
            {
                offset = result.next_begin_offset;
                advance_to = advance_to.max(offset);
                continue;
            }
            return (done, advance_to);
        }
        for (record, queue_offset) in result.messages.iter().zip(&result.queue_offsets) {
            let offsets = match MessageExt::decode(record) {
                Ok((op, _)) => parse_op_body(&op.body),
                Err(_) => Vec::new(),
            };
            prefix &= offsets.iter().all(|&o| o < half_offset);
            if prefix {
                advance_to = queue_offset + 1;
            }
            done.extend(offsets);
            offset = queue_offset + 1;
        }
    }
}

/// One pass over the half queue (`TransactionalMessageServiceImpl.check`).
async fn check_once(core: &BrokerCore) {
    let max = core.store.get_max_offset_in_queue(HALF_TOPIC, 0);
    let mut half_offset = core
        .offsets
        .query(CHECK_GROUP, HALF_TOPIC, 0)
        .unwrap_or_else(|| core.store.get_min_offset_in_queue(HALF_TOPIC, 0));
    if half_offset >= max {
        return;
    }
    let (done, op_offset) = resolved(core, half_offset);
    let timeout = core.config.transaction_timeout as i64;
    let check_max = core.config.transaction_check_max;
    'scan: while half_offset < max {
        let result = core.store.get_message(
            CHECK_GROUP,
            HALF_TOPIC,
            0,
            half_offset,
            SCAN_BATCH,
            1024 * 1024,
            &MessageFilter::All,
        );
        if result.status != GetMessageStatus::Found {
            if result.next_begin_offset > half_offset {
                half_offset = result.next_begin_offset;
                continue;
            }
            break;
        }
        for (record, &queue_offset) in result.messages.iter().zip(&result.queue_offsets) {
            if queue_offset >= max {
                break 'scan;
            }
            if done.contains(&queue_offset) {
                half_offset = queue_offset + 1;
                continue;
            }
            let stored = match MessageExt::decode(record) {
                Ok((stored, _)) => stored,
                Err(error) => {
                    tracing::error!(%error, queue_offset, "undecodable half message skipped");
                    half_offset = queue_offset + 1;
                    continue;
                }
            };
            match decide(&stored, now_millis(), timeout, check_max) {
                CheckDecision::Wait => break 'scan,
                CheckDecision::Discard => {
                    let mut discarded = put_back(&stored, check_max);
                    discarded.topic = CHECK_MAX_TIME_TOPIC.to_owned();
                    let put = core.put_through_log(vec![discarded]).await;
                    if !put.status.is_written() {
                        break 'scan;
                    }
                    tracing::info!(
                        queue_offset,
                        commit_log_offset = stored.commit_log_offset,
                        "half message checked transactionCheckMax times: discarded to {CHECK_MAX_TIME_TOPIC}"
                    );
                }
                CheckDecision::Check(times) => {
                    let put = core.put_through_log(vec![put_back(&stored, times)]).await;
                    let Some(append) = put.append.filter(|_| put.status.is_written()) else {
                        break 'scan;
                    };
                    send_check(core, append.wrote_offset);
                }
            }
            half_offset = queue_offset + 1;
        }
    }
    core.offsets.commit(CHECK_GROUP, HALF_TOPIC, 0, half_offset);
    core.offsets
        .commit(CHECK_GROUP, OP_HALF_TOPIC, 0, op_offset);
}

/// Sends CHECK_TRANSACTION_STATE about the half message at `commit_log_offset` to one live
/// producer of its group; with none online the next pass asks again.
fn send_check(core: &BrokerCore, commit_log_offset: i64) {
    let Some(Ok((mut copy, _))) = core
        .store
        .lookup_message_by_offset(commit_log_offset)
        .map(|raw| MessageExt::decode(&raw))
    else {
        return;
    };
    let Some(group) = copy.properties.get(property::PRODUCER_GROUP).cloned() else {
        tracing::warn!(
            commit_log_offset,
            "half message without PGROUP: nobody to check"
        );
        return;
    };
    let Some(channel) = core.clients.producer_channels(&group).into_iter().next() else {
        tracing::warn!(
            group,
            "no producer of the group is online to check a transaction"
        );
        return;
    };
    let unique = copy
        .properties
        .get(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
        .cloned();
    let header = CheckTransactionStateRequestHeader {
        topic: copy.properties.get(property::REAL_TOPIC).cloned(),
        tran_state_table_offset: copy.queue_offset,
        commit_log_offset: copy.commit_log_offset,
        msg_id: unique.clone(),
        transaction_id: unique,
        offset_msg_id: Some(copy.msg_id()),
        broker_name: Some(core.config.broker_name.clone()),
    };
    // The producer sees the message under its real topic and queue, as RocketMQ sends it.
    if let Some(topic) = header.topic.clone() {
        copy.topic = topic;
    }
    if let Some(queue_id) = copy
        .properties
        .get(property::REAL_QUEUE_ID)
        .and_then(|q| q.parse().ok())
    {
        copy.queue_id = queue_id;
    }
    let body = match copy.encode() {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "half message cannot be encoded for a check");
            return;
        }
    };
    let request = RemotingCommand::request(RequestCode::CHECK_TRANSACTION_STATE, &header)
        .with_opaque(CHECK_OPAQUE.fetch_add(1, Ordering::Relaxed))
        .with_body(body);
    if !send_to(&channel, request) {
        tracing::debug!(group, remote = %channel.remote, "transaction check dropped");
    }
}

fn send_to(channel: &Channel, request: RemotingCommand) -> bool {
    channel.send_oneway(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_message_round_trip() {
        let mut msg = MessageExtBrokerInner {
            topic: "T".into(),
            queue_id: 3,
            sys_flag: sys_flag::TRANSACTION_PREPARED_TYPE,
            ..Default::default()
        };
        msg.properties
            .insert(property::TRANSACTION_PREPARED.into(), "true".into());
        assert!(is_prepared(&msg.properties));
        divert_half(&mut msg);
        assert_eq!((msg.topic.as_str(), msg.queue_id), (HALF_TOPIC, 0));
        assert_eq!(
            sys_flag::transaction_value(msg.sys_flag),
            sys_flag::TRANSACTION_NOT_TYPE
        );
        let stored = MessageExt {
            topic: msg.topic.clone(),
            sys_flag: msg.sys_flag,
            commit_log_offset: 4096,
            properties: msg.properties.clone(),
            ..Default::default()
        };
        let real = committed(stored).expect("real topic");
        assert_eq!((real.topic.as_str(), real.queue_id), ("T", 3));
        assert!(!is_prepared(&real.properties));
        assert_eq!(
            sys_flag::transaction_value(real.sys_flag),
            sys_flag::TRANSACTION_COMMIT_TYPE
        );
        assert_eq!(real.prepared_transaction_offset, 4096);
        assert!(committed(MessageExt::default()).is_none());
    }

    #[test]
    fn op_bodies_of_4x_and_5x() {
        assert_eq!(parse_op_body(&op_message(17).body), vec![17]);
        assert_eq!(parse_op_body(b"3,4,5"), vec![3, 4, 5]);
        assert_eq!(parse_op_body(b"\xff junk"), Vec::<i64>::new());
    }

    #[test]
    fn check_decisions() {
        let mut m = MessageExt {
            born_timestamp: 10_000,
            ..Default::default()
        };
        assert_eq!(decide(&m, 15_000, 6_000, 15), CheckDecision::Wait);
        assert_eq!(decide(&m, 16_000, 6_000, 15), CheckDecision::Check(1));
        m.properties
            .insert(CHECK_IMMUNITY_TIME_IN_SECONDS.into(), "60".into());
        assert_eq!(decide(&m, 16_000, 6_000, 15), CheckDecision::Wait);
        m.properties
            .insert(TRANSACTION_CHECK_TIMES.into(), "15".into());
        assert_eq!(decide(&m, 16_000, 6_000, 15), CheckDecision::Discard);
        m.properties
            .insert(TRANSACTION_CHECK_TIMES.into(), "2".into());
        assert_eq!(decide(&m, 80_000, 6_000, 15), CheckDecision::Check(3));
    }

    #[test]
    fn end_transaction_must_name_the_half_message() {
        let mut stored = MessageExt {
            topic: HALF_TOPIC.into(),
            queue_offset: 5,
            commit_log_offset: 900,
            ..Default::default()
        };
        stored
            .properties
            .insert(property::PRODUCER_GROUP.into(), "PG".into());
        let header = EndTransactionRequestHeader {
            topic: None,
            producer_group: "PG".into(),
            tran_state_table_offset: 5,
            commit_log_offset: 900,
            commit_or_rollback: sys_flag::TRANSACTION_COMMIT_TYPE,
            from_transaction_check: None,
            msg_id: "m".into(),
            transaction_id: None,
            broker_name: None,
        };
        assert_eq!(check_prepared(&stored, &header), Ok(()));
        let wrong_group = EndTransactionRequestHeader {
            producer_group: "X".into(),
            ..header.clone()
        };
        assert_eq!(
            check_prepared(&stored, &wrong_group).unwrap_err(),
            "The producer group wrong"
        );
        let wrong_offset = EndTransactionRequestHeader {
            tran_state_table_offset: 6,
            ..header.clone()
        };
        assert!(check_prepared(&stored, &wrong_offset).is_err());
        stored.topic = "T".into();
        assert!(check_prepared(&stored, &header).is_err());
    }
}
