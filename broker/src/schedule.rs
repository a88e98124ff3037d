//! Delay messages (`ScheduleMessageService`): a message with the DELAY property is stored in
//! `SCHEDULE_TOPIC_XXXX`, queue `level − 1`, with its real topic and queue in REAL_TOPIC /
//! REAL_QID; once `storeTimestamp + delay(level)` has passed it is put again to the real queue.
//! The progress per level is persisted to `config/delayOffset.json`. The re-put goes through
//! the Raft log in Raft mode, so a level's offset advances only past deliveries a majority
//! holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrum_protocol::message::{MessageExt, property};
use ferrum_store::{GetMessageStatus, MessageExtBrokerInner, MessageFilter};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::persist;
use crate::processor::BrokerCore;
use crate::topic::{SCHEDULE_TOPIC, now_millis};

/// RocketMQ's default `messageDelayLevel`, level 1 first.
pub const DELAY_LEVELS: [Duration; 18] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
    Duration::from_secs(180),
    Duration::from_secs(240),
    Duration::from_secs(300),
    Duration::from_secs(360),
    Duration::from_secs(420),
    Duration::from_secs(480),
    Duration::from_secs(540),
    Duration::from_secs(600),
    Duration::from_secs(1200),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(7200),
];

/// Longest the service sleeps between scans when nothing is due sooner.
const IDLE_SCAN: Duration = Duration::from_millis(500);

/// The delay level a message asks for, clamped to the highest level; `None` for no delay.
pub fn delay_level(properties: &BTreeMap<String, String>) -> Option<i32> {
    let level: i32 = properties
        .get(property::DELAY_TIME_LEVEL)?
        .trim()
        .parse()
        .ok()?;
    (level > 0).then(|| level.min(DELAY_LEVELS.len() as i32))
}

/// Rewrites `msg` to wait in SCHEDULE_TOPIC_XXXX if it carries a delay level.
pub fn divert_if_delayed(msg: &mut MessageExtBrokerInner) {
    let Some(level) = delay_level(&msg.properties) else {
        return;
    };
    msg.properties
        .insert(property::REAL_TOPIC.to_owned(), msg.topic.clone());
    msg.properties
        .insert(property::REAL_QUEUE_ID.to_owned(), msg.queue_id.to_string());
    msg.properties
        .insert(property::DELAY_TIME_LEVEL.to_owned(), level.to_string());
    msg.topic = SCHEDULE_TOPIC.to_owned();
    msg.queue_id = level - 1;
    // RocketMQ puts the deliver time in the consume-queue tag code of delayed messages.
    msg.tags_code = Some(now_millis() + DELAY_LEVELS[(level - 1) as usize].as_millis() as i64);
}

/// The message to put to its real queue once its delay has passed.
pub fn restore(stored: MessageExt) -> Option<MessageExtBrokerInner> {
    let mut properties = stored.properties;
    let topic = properties.get(property::REAL_TOPIC)?.clone();
    let queue_id: i32 = properties.get(property::REAL_QUEUE_ID)?.parse().ok()?;
    properties.remove(property::DELAY_TIME_LEVEL);
    Some(MessageExtBrokerInner {
        topic,
        queue_id,
        flag: stored.flag,
        sys_flag: stored.sys_flag,
        born_timestamp: stored.born_timestamp,
        born_host: Some(stored.born_host),
        reconsume_times: stored.reconsume_times,
        prepared_transaction_offset: stored.prepared_transaction_offset,
        body: stored.body,
        properties,
        tags_code: None,
    })
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DelayOffsets {
    #[serde(default)]
    offset_table: BTreeMap<i32, i64>,
}

/// Delivers due delayed messages until `shutdown`, only while this broker is a master (the
/// Raft leader in Raft mode): a slave
/// holds the master's delayed messages through replication and must not append deliveries of
/// its own, or its CommitLog would diverge from the master's. On promotion the offsets are read
/// again, as the slave sync keeps the master's `delayOffset.json`.
pub async fn run(core: Arc<BrokerCore>, mut shutdown: watch::Receiver<bool>) {
    let mut role = core.ha.subscribe();
    loop {
        while role.borrow_and_update().is_slave() {
            tokio::select! {
                changed = role.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
        if !deliver_while_master(&core, &mut role, &mut shutdown).await {
            return;
        }
    }
}

/// Returns `false` on shutdown (or when delivery cannot start), `true` when the broker became
/// a slave.
async fn deliver_while_master(
    core: &BrokerCore,
    role: &mut watch::Receiver<crate::ha::RoleState>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let path = core.config.config_dir().join("delayOffset.json");
    let mut offsets: DelayOffsets = match persist::read_json(&path) {
        Ok(found) => found.unwrap_or_default(),
        Err(error) => {
            tracing::error!(%error, "delay offsets unreadable; delayed messages are not delivered");
            return false;
        }
    };
    loop {
        if role.borrow().is_slave() {
            return true;
        }
        let mut wait = IDLE_SCAN;
        let mut dirty = false;
        for (index, delay) in DELAY_LEVELS.iter().enumerate() {
            let level = index as i32 + 1;
            let offset = offsets.offset_table.entry(level).or_insert(0);
            let (advanced, due_in) = deliver_level(core, index as i32, offset, *delay).await;
            dirty |= advanced;
            if let Some(due_in) = due_in {
                wait = wait.min(due_in);
            }
        }
        let saved = if dirty {
            persist::write_json(&path, &offsets)
        } else {
            Ok(())
        };
        if let Err(error) = saved {
            tracing::error!(%error, "delay offsets not persisted");
        }
        tokio::select! {
            _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            _ = core.schedule_wakeup.notified() => {}
            changed = role.changed() => if changed.is_err() { return false },
            _ = shutdown.changed() => return false,
        }
    }
}

/// Delivers what is due in one level's queue; returns whether the offset moved and how long
/// until the next message there is due.
async fn deliver_level(
    core: &BrokerCore,
    queue_id: i32,
    offset: &mut i64,
    delay: Duration,
) -> (bool, Option<Duration>) {
    let mut advanced = false;
    loop {
        let result = core.store.get_message(
            "SCHEDULE_SERVICE",
            SCHEDULE_TOPIC,
            queue_id,
            *offset,
            32,
            1024 * 1024,
            &MessageFilter::All,
        );
        match result.status {
            GetMessageStatus::Found => {}
            GetMessageStatus::OffsetTooSmall
            | GetMessageStatus::OffsetOverflowBadly
            | GetMessageStatus::OffsetReset
                if result.next_begin_offset != *offset =>
            {
                *offset = result.next_begin_offset;
                advanced = true;
                continue;
            }
            _ => return (advanced, None),
        }
        for (record, queue_offset) in result.messages.iter().zip(&result.queue_offsets) {
            let stored = match MessageExt::decode(record) {
                Ok((stored, _)) => stored,
                Err(error) => {
                    tracing::error!(%error, queue_offset, "undecodable delayed message skipped");
                    *offset = queue_offset + 1;
                    advanced = true;
                    continue;
                }
            };
            let due = stored.store_timestamp + delay.as_millis() as i64;
            let now = now_millis();
            if due > now {
                return (advanced, Some(Duration::from_millis((due - now) as u64)));
            }
            let Some(message) = restore(stored) else {
                tracing::error!(queue_offset, "delayed message without REAL_TOPIC skipped");
                *offset = queue_offset + 1;
                advanced = true;
                continue;
            };
            let (topic, queue_id) = (message.topic.clone(), message.queue_id);
            // Through the Raft log in Raft mode: the offset below advances only once a majority
            // holds the delivered message.
            let put = core.put_through_log(vec![message]).await;
            if !put.status.is_written() {
                tracing::warn!(status = ?put.status, "delayed message not delivered yet; retrying");
                return (advanced, Some(Duration::from_secs(1)));
            }
            core.pull_waiters.wake(&topic, queue_id);
            *offset = queue_offset + 1;
            advanced = true;
        }
        if result.messages.is_empty() {
            return (advanced, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divert_and_restore() {
        let mut msg = MessageExtBrokerInner {
            topic: "T".into(),
            queue_id: 2,
            ..Default::default()
        };
        msg.properties
            .insert(property::DELAY_TIME_LEVEL.into(), "99".into());
        divert_if_delayed(&mut msg);
        assert_eq!((msg.topic.as_str(), msg.queue_id), (SCHEDULE_TOPIC, 17));
        let stored = MessageExt {
            topic: msg.topic.clone(),
            properties: msg.properties.clone(),
            ..Default::default()
        };
        let back = restore(stored).expect("real topic");
        assert_eq!((back.topic.as_str(), back.queue_id), ("T", 2));
        assert!(!back.properties.contains_key(property::DELAY_TIME_LEVEL));

        let mut plain = MessageExtBrokerInner::default();
        plain
            .properties
            .insert(property::DELAY_TIME_LEVEL.into(), "0".into());
        divert_if_delayed(&mut plain);
        assert_eq!(plain.topic, "");
    }
}
