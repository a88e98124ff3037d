//! Byte-exact frames worked out by hand from RocketMQ's wire layout (length | serializeType and
//! header length | header | body), in both header serializations, for typed headers.

use bytes::BytesMut;
use ferrum_protocol::headers::{
    PullMessageResponseHeader, QueryConsumerOffsetResponseHeader, SendMessageRequestHeader,
};
use ferrum_protocol::{
    CommandHeader, LanguageCode, RemotingCodec, RemotingCommand, RequestCode, SerializeType,
};
use tokio_util::codec::{Decoder, Encoder};

fn encode(command: &RemotingCommand) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RemotingCodec::default()
        .encode(command, &mut buf)
        .expect("encodes");
    buf.to_vec()
}

fn decode(bytes: &[u8]) -> RemotingCommand {
    let mut buf = BytesMut::from(bytes);
    let command = RemotingCodec::default()
        .decode(&mut buf)
        .expect("decodes")
        .expect("whole frame");
    assert!(buf.is_empty());
    command
}

/// A QUERY_CONSUMER_OFFSET answer in the ROCKETMQ binary form: 21 fixed bytes and one ext entry.
#[test]
fn binary_query_offset_response() {
    let request = RemotingCommand::bare_request(RequestCode::QUERY_CONSUMER_OFFSET)
        .with_opaque(7)
        .with_serialize_type(SerializeType::RocketMq);
    let response = request
        .success_to()
        .with_header(&QueryConsumerOffsetResponseHeader { offset: 42 });
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        0, 0, 0, 39,            // frame length = 4 + 35
        1, 0, 0, 35,            // ROCKETMQ, header length 35
        0, 0,                   // code SUCCESS
        0,                      // language JAVA
        0x01, 0xdf,             // version 479
        0, 0, 0, 7,             // opaque echoed
        0, 0, 0, 1,             // flag: response
        0, 0, 0, 0,             // no remark
        0, 0, 0, 14,            // ext map: 2 + 6 + 4 + 2 bytes
        0, 6, b'o', b'f', b'f', b's', b'e', b't',
        0, 0, 0, 2, b'4', b'2',
    ];
    assert_eq!(encode(&response), expected);
    let back = decode(&expected);
    assert!(back.is_response());
    assert_eq!(
        back.decode_header::<QueryConsumerOffsetResponseHeader>(),
        Ok(QueryConsumerOffsetResponseHeader { offset: 42 })
    );
}

/// A PULL_NOT_FOUND answer in JSON: fields in key order, every ext value a string.
#[test]
fn json_pull_response() {
    let request = RemotingCommand::bare_request(RequestCode::PULL_MESSAGE).with_opaque(9);
    let response = request
        .response_to(19, None)
        .with_header(&PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: 5,
            min_offset: 0,
            max_offset: 5,
            ..Default::default()
        });
    let header = br#"{"code":19,"extFields":{"maxOffset":"5","minOffset":"0","nextBeginOffset":"5","suggestWhichBrokerId":"0"},"flag":1,"language":"JAVA","opaque":9,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    let mut expected = Vec::new();
    expected.extend_from_slice(&(4 + header.len() as u32).to_be_bytes());
    expected.extend_from_slice(&(header.len() as u32).to_be_bytes());
    expected.extend_from_slice(header);
    assert_eq!(encode(&response), expected);
}

/// The SEND_MESSAGE_V2 request shape from the reference (§1.2), as a Java producer writes it,
/// read into the long-name header.
#[test]
fn java_send_v2_request() {
    let header = br#"{"code":310,"extFields":{"a":"pg","b":"TopicTest","c":"TBW102","d":"4","e":"1","f":"0","g":"1700000000123","h":"0","i":"UNIQ_KEY\u0001AC11\u0002WAIT\u0001true\u0002TAGS\u0001TagA\u0002","j":"0","k":"false","m":"false"},"flag":0,"language":"JAVA","opaque":42,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    let body = b"Hello RocketMQ";
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header);
    frame.extend_from_slice(body);
    let command = decode(&frame);
    assert_eq!(command.code, 310);
    assert_eq!(command.language, Some(LanguageCode::JAVA));
    assert_eq!(&command.body[..], body);
    let send = SendMessageRequestHeader::decode_any(&command).expect("V2 header");
    assert_eq!(send.producer_group, "pg");
    assert_eq!(send.topic, "TopicTest");
    assert_eq!(send.default_topic, "TBW102");
    assert_eq!(send.default_topic_queue_nums, 4);
    assert_eq!(send.queue_id, 1);
    assert_eq!(send.born_timestamp, 1_700_000_000_123);
    assert_eq!(
        send.properties.as_deref(),
        Some("UNIQ_KEY\u{1}AC11\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagA\u{2}")
    );
    assert_eq!(send.unit_mode, Some(false));
    assert_eq!(send.max_reconsume_times, None);
}

/// The same send as rocketmq-client-go writes it: code 10, long names, binary header.
#[test]
fn go_send_v1_binary_request() {
    let header = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "T".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: 0,
        born_timestamp: 1,
        flag: 0,
        ..Default::default()
    };
    let mut command = RemotingCommand::request(RequestCode::SEND_MESSAGE, &header)
        .with_serialize_type(SerializeType::RocketMq)
        .with_opaque(3);
    command.language = Some(LanguageCode::GO);
    command.version = 317;
    let bytes = encode(&command);
    // The ext map holds exactly the eight required long names, in key order.
    let ext = header.to_ext_fields();
    let ext_len: usize = ext.iter().map(|(k, v)| 2 + k.len() + 4 + v.len()).sum();
    assert_eq!(bytes.len(), 8 + 21 + ext_len);
    assert_eq!(&bytes[8..10], &[0, 10]);
    assert_eq!(bytes[10], 9);
    assert_eq!(&bytes[11..13], &[0x01, 0x3d]);
    assert_eq!(
        &bytes[25..29],
        &u32::try_from(ext_len).expect("small").to_be_bytes()
    );
    // First entry in key order is "bornTimestamp" = "1".
    assert_eq!(&bytes[29..31], &[0, 13]);
    assert_eq!(&bytes[31..44], b"bornTimestamp");
    assert_eq!(&bytes[44..49], &[0, 0, 0, 1, b'1']);
    let back = decode(&bytes);
    assert_eq!(SendMessageRequestHeader::decode_any(&back), Ok(header));
}
