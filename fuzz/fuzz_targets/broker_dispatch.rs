#![no_main]
//! Request dispatch under arbitrary input: every two-way request gets an answer, every error
//! answer says why, nothing panics, and the store's offsets never go backward.

use std::sync::{Mutex, OnceLock};

use ferrum_broker::config::BrokerConfig;
use ferrum_broker::processor::BrokerCore;
use ferrum_broker::server::{Channel, Reply, WorkPermit};
use ferrum_protocol::{RemotingCommand, RequestCode, ResponseCode, SerializeType};
use ferrum_store::{MessageStore, MessageStoreConfig};
use libfuzzer_sys::fuzz_target;

/// Codes that reach real processors; an arbitrary i32 would almost always miss them all.
const CODES: &[RequestCode] = &[
    RequestCode::SEND_MESSAGE,
    RequestCode::SEND_MESSAGE_V2,
    RequestCode::SEND_BATCH_MESSAGE,
    RequestCode::PULL_MESSAGE,
    RequestCode::LITE_PULL_MESSAGE,
    RequestCode::CONSUMER_SEND_MSG_BACK,
    RequestCode::GET_MAX_OFFSET,
    RequestCode::GET_MIN_OFFSET,
    RequestCode::SEARCH_OFFSET_BY_TIMESTAMP,
    RequestCode::GET_EARLIEST_MSG_STORETIME,
    RequestCode::QUERY_CONSUMER_OFFSET,
    RequestCode::UPDATE_CONSUMER_OFFSET,
    RequestCode::HEART_BEAT,
    RequestCode::UNREGISTER_CLIENT,
    RequestCode::GET_CONSUMER_LIST_BY_GROUP,
    RequestCode::UPDATE_AND_CREATE_TOPIC,
    RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    RequestCode::LOCK_BATCH_MQ,
    RequestCode::UNLOCK_BATCH_MQ,
    RequestCode::VIEW_MESSAGE_BY_ID,
];

const FIELDS: &[&str] = &[
    "topic",
    "queueId",
    "consumerGroup",
    "commitOffset",
    "queueOffset",
    "maxMsgNums",
    "sysFlag",
    "subVersion",
    "offset",
    "group",
    "delayLevel",
    "readQueueNums",
    "writeQueueNums",
    "perm",
    "producerGroup",
    "defaultTopic",
    "defaultTopicQueueNums",
    "bornTimestamp",
    "flag",
    "key",
    "maxNum",
    "beginTimestamp",
    "endTimestamp",
    "timestamp",
    "clientID",
    "properties",
    "a",
    "b",
    "e",
    "i",
    "j",
    "l",
    "reconsumeTimes",
    "maxReconsumeTimes",
    "originMsgId",
];

const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "3",
    "2147483647",
    "-2147483648",
    "9223372036854775807",
    "TBW102",
    "T",
    "%RETRY%g",
    "g",
    "true",
    "DELAY\u{1}3\u{2}",
    "\u{0}",
    "999999999999999999999",
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    core: BrokerCore,
    store: MessageStore,
    _dir: tempfile::TempDir,
    /// Highest max physical offset seen so far; the store must never report less.
    max_phy: Mutex<i64>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let config = BrokerConfig {
            store_path_root_dir: dir.path().to_owned(),
            mapped_file_size_commit_log: 1 << 20,
            ..BrokerConfig::default()
        };
        let store = MessageStore::open(MessageStoreConfig {
            mapped_file_size_commit_log: 1 << 20,
            ..MessageStoreConfig::new(dir.path())
        })
        .expect("store");
        let core = {
            let _guard = runtime.enter();
            BrokerCore::load(config, "127.0.0.1:10911".into(), store.clone()).expect("core")
        };
        Fixture {
            runtime,
            core,
            store,
            _dir: dir,
            max_phy: Mutex::new(0),
        }
    })
}

/// Reads the input as a sequence of requests: code index, serialize type, ext fields, body.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn value(&mut self) -> Option<String> {
        let b = self.byte()?;
        if b & 0x80 == 0 {
            return Some(VALUES[usize::from(b) % VALUES.len()].to_owned());
        }
        let len = usize::from(b & 0x1f);
        Some(String::from_utf8_lossy(self.take(len)).into_owned())
    }
    fn request(&mut self, opaque: i32) -> Option<RemotingCommand> {
        let code = CODES[usize::from(self.byte()?) % CODES.len()];
        let flags = self.byte()?;
        let mut request = RemotingCommand::bare_request(code.code()).with_opaque(opaque);
        if flags & 1 == 1 {
            request = request.with_serialize_type(SerializeType::RocketMq);
        }
        for _ in 0..(flags >> 4) {
            let field = FIELDS[usize::from(self.byte()?) % FIELDS.len()];
            let value = self.value()?;
            request.ext_fields.insert(field.to_owned(), value);
        }
        // A suspended pull would hold the fuzzer for its timeout; the answers are what matter.
        request.ext_fields.remove("suspendTimeoutMillis");
        let body_len = usize::from(self.byte().unwrap_or(0));
        request.body = self.take(body_len).to_vec().into();
        Some(request)
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let channel = Channel::detached(1);
    let mut input = Input(data);
    let mut opaque = 0;
    while let Some(request) = input.request(opaque) {
        opaque += 1;
        let reply =
            fx.runtime
                .block_on(fx.core.process(&channel, &request, WorkPermit::unlimited()));
        let answer = match reply {
            Reply::Command(answer) | Reply::HeaderAndBody(answer, _) => answer,
            Reply::None => panic!("code {} gave no answer", request.code),
        };
        assert_eq!(answer.opaque, request.opaque);
        let remark_free = [
            ResponseCode::PULL_NOT_FOUND.code(),
            ResponseCode::PULL_OFFSET_MOVED.code(),
            ResponseCode::PULL_RETRY_IMMEDIATELY.code(),
        ];
        assert!(
            answer.code == 0
                || answer.remark.as_deref().is_some_and(|r| !r.is_empty())
                || remark_free.contains(&answer.code),
            "code {} answered {} without a remark",
            request.code,
            answer.code
        );
    }
    let now = fx.store.max_phy_offset();
    let mut seen = fx.max_phy.lock().expect("max_phy lock");
    assert!(
        now >= *seen,
        "max physical offset went back from {} to {now}",
        *seen
    );
    *seen = now;
});
