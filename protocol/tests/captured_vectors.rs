//! Frames captured from real RocketMQ clients and a real Apache broker (hack/compat/capture.sh),
//! decoded with Ferrum's codec, typed headers and body readers.
//!
//! Each directory under tests/vectors/ holds the frames of one client with a MANIFEST (one
//! tab-separated row per frame: file, client, client version, direction, code, request code,
//! flag, opaque, language, version, serialization, body kind, how it was captured). Nothing
//! here depends on the timestamps, ids or offsets inside the frames.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use ferrum_protocol::body::{HeartbeatData, from_json};
use ferrum_protocol::headers::{
    GetRouteInfoRequestHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, SendMessageRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
    UpdateConsumerOffsetResponseHeader,
};
use ferrum_protocol::message::{self, decode_batch, string_to_properties};
use ferrum_protocol::route::{RegisterBrokerBody, TopicRouteData};
use ferrum_protocol::{CommandHeader, RemotingCodec, RemotingCommand, SerializeType};
use tokio_util::codec::{Decoder, Encoder};

const COLUMNS: usize = 13;

/// One MANIFEST row.
#[derive(Debug)]
struct Row {
    dir: PathBuf,
    file: String,
    client: String,
    direction: String,
    code: i32,
    request_code: i32,
    flag: i32,
    opaque: i32,
    language: String,
    version: i32,
    serialization: String,
    body: String,
}

impl Row {
    fn is_response(&self) -> bool {
        self.file.ends_with("-response.bin")
    }

    /// `NN` of `NN-name-request.bin`: a request and its answer share it.
    fn pair(&self) -> &str {
        self.file.split('-').next().unwrap_or("")
    }

    fn what(&self) -> String {
        format!(
            "{}/{}",
            self.dir.file_name().unwrap_or_default().to_string_lossy(),
            self.file
        )
    }
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn read_manifests() -> Vec<Row> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(vectors_dir())
        .expect("tests/vectors/ exists (regenerate with `make vectors`)")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut rows = Vec::new();
    for dir in dirs {
        let manifest = fs::read_to_string(dir.join("MANIFEST"))
            .unwrap_or_else(|e| panic!("{}: no MANIFEST: {e}", dir.display()));
        let before = rows.len();
        for line in manifest
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(
                cols.len(),
                COLUMNS,
                "{}: bad MANIFEST row {line:?}",
                dir.display()
            );
            let int = |i: usize| -> i32 {
                cols[i]
                    .parse()
                    .unwrap_or_else(|_| panic!("MANIFEST column {i} of {line:?} is not a number"))
            };
            rows.push(Row {
                dir: dir.clone(),
                file: cols[0].into(),
                client: cols[1].into(),
                direction: cols[3].into(),
                code: int(4),
                request_code: int(5),
                flag: int(6),
                opaque: int(7),
                language: cols[8].into(),
                version: int(9),
                serialization: cols[10].into(),
                body: cols[11].into(),
            });
        }
        assert!(rows.len() > before, "{}: empty MANIFEST", dir.display());
        // Every frame in the directory is listed, so none goes unchecked.
        for entry in fs::read_dir(&dir).expect("read vector directory") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".bin") {
                assert!(
                    rows[before..].iter().any(|r| r.file == name),
                    "{}/{name} is not in the MANIFEST",
                    dir.display()
                );
            }
        }
    }
    rows
}

fn decode_whole(bytes: &[u8], what: &str) -> RemotingCommand {
    let mut buf = BytesMut::from(bytes);
    let command = RemotingCodec::default()
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: decode failed: {e}"))
        .unwrap_or_else(|| panic!("{what}: incomplete frame"));
    assert!(
        buf.is_empty(),
        "{what}: {} bytes after the frame",
        buf.len()
    );
    command
}

fn encode(command: &RemotingCommand, what: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    RemotingCodec::default()
        .encode(command, &mut out)
        .unwrap_or_else(|e| panic!("{what}: re-encode failed: {e}"));
    out.to_vec()
}

/// A ROCKETMQ binary frame split around its extFields: everything before them, the entries as
/// (key, raw bytes), and everything after (the body).
struct BinaryParts {
    head: Vec<u8>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    tail: Vec<u8>,
}

fn be_i32(b: &[u8], at: usize) -> usize {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

fn split_binary(frame: &[u8]) -> BinaryParts {
    // length(4) mark(4) code(2) language(1) version(2) opaque(4) flag(4) remarkLength(4) remark
    let remark_length = be_i32(frame, 8 + 13);
    let ext_length_at = 8 + 17 + remark_length;
    let ext_length = be_i32(frame, ext_length_at);
    let mut pos = ext_length_at + 4;
    let end = pos + ext_length;
    let mut entries = Vec::new();
    while pos < end {
        let key_length = usize::from(u16::from_be_bytes([frame[pos], frame[pos + 1]]));
        let key = frame[pos + 2..pos + 2 + key_length].to_vec();
        let value_length = be_i32(frame, pos + 2 + key_length);
        let next = pos + 2 + key_length + 4 + value_length;
        entries.push((key, frame[pos..next].to_vec()));
        pos = next;
    }
    BinaryParts {
        head: frame[..ext_length_at + 4].to_vec(),
        entries,
        tail: frame[end..].to_vec(),
    }
}

/// Outcome of re-encoding a ROCKETMQ frame.
#[derive(Debug, PartialEq)]
enum BinaryReencoding {
    Identical,
    /// Identical once the sender's extFields are put in key order (Ferrum writes them sorted,
    /// Java writes its HashMap's iteration order).
    IdenticalUpToFieldOrder,
}

fn check_binary_reencoding(original: &[u8], reencoded: &[u8], what: &str) -> BinaryReencoding {
    if original == reencoded {
        return BinaryReencoding::Identical;
    }
    let mut parts = split_binary(original);
    parts.entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut sorted = parts.head;
    for (_, raw) in &parts.entries {
        sorted.extend_from_slice(raw);
    }
    sorted.extend_from_slice(&parts.tail);
    assert_eq!(
        sorted, reencoded,
        "{what}: the re-encoded ROCKETMQ frame differs beyond the order of its extFields"
    );
    BinaryReencoding::IdenticalUpToFieldOrder
}

/// Decodes `H` and checks that what it writes back is what the peer sent for those fields.
fn typed<H: CommandHeader>(command: &RemotingCommand, what: &str) -> H {
    let header = H::decode(&command.ext_fields)
        .unwrap_or_else(|e| panic!("{what}: typed header refused: {e}"));
    for (key, value) in header.to_ext_fields() {
        assert_eq!(
            command.ext_fields.get(&key),
            Some(&value),
            "{what}: field {key} does not survive decode + encode"
        );
    }
    header
}

/// Checks the custom header and body of one frame by what it is.
fn check_content(row: &Row, command: &RemotingCommand, request: Option<&RemotingCommand>) {
    let what = row.what();
    match (row.request_code, row.is_response()) {
        (105, false) => {
            let h: GetRouteInfoRequestHeader = typed(command, &what);
            assert!(!h.topic.is_empty(), "{what}: route query without a topic");
        }
        (105, true) => {
            let route: TopicRouteData = from_json(&command.body, "TopicRouteData")
                .unwrap_or_else(|e| panic!("{what}: route body: {e}"));
            assert!(
                !route.queue_datas.is_empty(),
                "{what}: route without queues"
            );
            assert!(
                route.broker_datas.iter().all(|b| b.master_addr().is_some()),
                "{what}: a broker of the route has no master address"
            );
        }
        (34, false) => {
            let heartbeat: HeartbeatData = from_json(&command.body, "HeartbeatData")
                .unwrap_or_else(|e| panic!("{what}: heartbeat body: {e}"));
            assert!(
                !heartbeat.client_id.is_empty(),
                "{what}: heartbeat without clientID"
            );
            assert!(
                heartbeat
                    .consumer_data_set
                    .iter()
                    .any(|c| !c.subscription_data_set.is_empty()),
                "{what}: the captured heartbeat has no subscription"
            );
        }
        (34, true) => {
            assert_eq!(
                command.code, 0,
                "{what}: heartbeat refused: {:?}",
                command.remark
            );
        }
        (10 | 310 | 320, false) => {
            let header = SendMessageRequestHeader::decode_any(command)
                .unwrap_or_else(|e| panic!("{what}: send header: {e}"));
            if row.request_code != 10 {
                // The one-letter form maps field by field onto the long names.
                let v2: SendMessageRequestHeaderV2 = typed(command, &what);
                assert_eq!(SendMessageRequestHeader::from(v2), header, "{what}");
            } else {
                let _: SendMessageRequestHeader = typed(command, &what);
            }
            assert!(
                !header.topic.is_empty() && !header.producer_group.is_empty(),
                "{what}"
            );
            assert!(!command.body.is_empty(), "{what}: send without a body");
            if row.request_code == 320 {
                assert!(header.is_batch(row.request_code), "{what}");
                let batch = decode_batch(&command.body)
                    .unwrap_or_else(|e| panic!("{what}: batch body: {e}"));
                assert!(batch.len() > 1, "{what}: a batch of {}", batch.len());
                assert!(
                    batch.iter().all(|m| !m.body.is_empty()),
                    "{what}: empty message"
                );
            } else {
                let properties = string_to_properties(header.properties.as_deref().unwrap_or(""));
                assert!(!properties.is_empty(), "{what}: send without properties");
            }
        }
        (10 | 310 | 320, true) => {
            assert_eq!(command.code, 0, "{what}: the send was not SEND_OK");
            let h: SendMessageResponseHeader = typed(command, &what);
            assert!(!h.msg_id.is_empty(), "{what}: no msgId");
        }
        (11, false) => {
            let h: PullMessageRequestHeader = typed(command, &what);
            assert!(h.max_msg_nums > 0, "{what}: maxMsgNums {}", h.max_msg_nums);
        }
        (11, true) => {
            let _: PullMessageResponseHeader = typed(command, &what);
            let messages = message::decode_all(&command.body, true)
                .unwrap_or_else(|e| panic!("{what}: pulled records: {e}"));
            assert!(!messages.is_empty(), "{what}: FOUND without messages");
            if let Some(request) = request {
                let pull: PullMessageRequestHeader =
                    PullMessageRequestHeader::decode(&request.ext_fields).expect("pull request");
                for m in &messages {
                    assert_eq!(m.topic, pull.topic, "{what}");
                    assert_eq!(m.queue_id, pull.queue_id, "{what}");
                    assert!(m.queue_offset >= pull.queue_offset, "{what}");
                }
            }
        }
        (14, false) => {
            let _: QueryConsumerOffsetRequestHeader = typed(command, &what);
        }
        (14, true) => {
            if command.code == 0 {
                let _: QueryConsumerOffsetResponseHeader = typed(command, &what);
            }
        }
        (15, false) => {
            let h: UpdateConsumerOffsetRequestHeader = typed(command, &what);
            assert!(h.commit_offset >= 0, "{what}");
        }
        (15, true) => {
            let _: UpdateConsumerOffsetResponseHeader = typed(command, &what);
        }
        (103, false) => {
            let h: RegisterBrokerRequestHeader = typed(command, &what);
            // Apache 5.x writes compressed=false whatever compressedRegister says and deflates
            // the body when it is set, so the MANIFEST's body kind (from the bytes) decides.
            let compressed = row.body == "register-compressed";
            if let Some(crc) = h.body_crc32 {
                // UtilAll.crc32: the CRC32 of the body as sent, with the sign bit cleared.
                let expected = (crc32fast::hash(&command.body) & 0x7FFF_FFFF) as i32;
                assert_eq!(crc, expected, "{what}: bodyCrc32");
            }
            let body = RegisterBrokerBody::decode(&command.body, compressed)
                .unwrap_or_else(|e| panic!("{what}: RegisterBrokerBody: {e}"));
            let topics = &body.topic_config_serialize_wrapper.topic_config_table;
            assert!(
                topics.contains_key("TBW102"),
                "{what}: no TBW102 among {topics:?}"
            );
        }
        (103, true) => {
            if command.code == 0 {
                let _: RegisterBrokerResponseHeader = typed(command, &what);
            } else {
                // A refusal must say why.
                assert!(
                    command.remark.as_deref().is_some_and(|r| !r.is_empty()),
                    "{what}: refused without a remark"
                );
            }
        }
        (code, response) => panic!("{what}: no check for code {code} (response {response})"),
    }
}

#[test]
fn captured_frames_decode_and_reencode() {
    let rows = read_manifests();
    let mut checked = 0;
    let mut requests: BTreeMap<(PathBuf, String), RemotingCommand> = BTreeMap::new();
    let mut binary = BTreeMap::new();
    for row in &rows {
        let what = row.what();
        let bytes = fs::read(row.dir.join(&row.file)).unwrap_or_else(|e| panic!("{what}: {e}"));
        let command = decode_whole(&bytes, &what);
        assert_eq!(command.code, row.code, "{what}: code");
        assert_eq!(command.flag, row.flag, "{what}: flag");
        assert_eq!(command.opaque, row.opaque, "{what}: opaque");
        assert_eq!(command.version, row.version, "{what}: version");
        assert_eq!(
            command.language.map(|l| l.name()).unwrap_or(""),
            row.language,
            "{what}: language"
        );
        let serialization = match command.serialize_type {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        };
        assert_eq!(serialization, row.serialization, "{what}: serialization");
        assert_eq!(
            command.is_response(),
            row.is_response(),
            "{what}: response flag"
        );
        let from_client = row.direction == "client-to-server";
        assert_eq!(from_client, !row.is_response(), "{what}: direction");

        let key = (row.dir.clone(), row.pair().to_string());
        let request = if row.is_response() {
            let request = requests.get(&key);
            if let Some(request) = request {
                assert_eq!(
                    command.opaque, request.opaque,
                    "{what}: answers another opaque"
                );
            }
            request
        } else {
            None
        };
        check_content(row, &command, request);

        // Same serialization, decoded again: the same command.
        let reencoded = encode(&command, &what);
        let again = decode_whole(&reencoded, &what);
        assert_eq!(again, command, "{what}: decode(encode(decoded)) differs");
        if command.serialize_type == SerializeType::RocketMq {
            let outcome = check_binary_reencoding(&bytes, &reencoded, &what);
            binary.insert(what.clone(), outcome);
        }
        if !row.is_response() {
            requests.insert(key, command);
        }
        checked += 1;
    }
    assert!(!rows.is_empty(), "no captured vectors under tests/vectors/");
    assert_eq!(checked, rows.len(), "every MANIFEST row is checked");
    for (what, outcome) in &binary {
        println!("ROCKETMQ re-encoding of {what}: {outcome:?}");
    }
}

#[test]
fn every_client_contributed_its_exchanges() {
    let rows = read_manifests();
    let clients: BTreeMap<&str, Vec<&Row>> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        m.entry(r.client.as_str()).or_default().push(r);
        m
    });
    for client in ["java-client", "go-client", "rust-client", "apache-broker"] {
        assert!(clients.contains_key(client), "no vectors from {client}");
    }
    // Both header serializations were captured from a real client.
    assert!(
        rows.iter()
            .any(|r| r.serialization == "ROCKETMQ" && !r.is_response())
    );
    assert!(
        rows.iter()
            .any(|r| r.serialization == "JSON" && !r.is_response())
    );
    for (client, rows) in &clients {
        if *client == "apache-broker" {
            assert!(
                rows.iter().any(|r| r.body == "register-compressed"),
                "{client}"
            );
            assert!(rows.iter().any(|r| r.body == "register"), "{client}");
        } else {
            for code in [105, 34, 11] {
                assert!(
                    rows.iter()
                        .any(|r| r.request_code == code && !r.is_response()),
                    "{client}: no request {code}"
                );
            }
        }
    }
}
