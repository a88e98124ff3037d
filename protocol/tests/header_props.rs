//! Property tests of the typed headers: every header survives `extFields` and both frame
//! serializations, the two send-header forms convert losslessly, and no `extFields` map makes a
//! header decoder panic.

use bytes::BytesMut;
use ferrum_protocol::body::{self, MessageQueue};
use ferrum_protocol::headers::{
    self, PullMessageRequestHeader, PullMessageResponseHeader, RegisterBrokerRequestHeader,
    SendMessageRequestHeader, SendMessageRequestHeaderV2,
};
use ferrum_protocol::{CommandHeader, ExtFields, RemotingCodec, RemotingCommand, SerializeType};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

prop_compose! {
    fn send_header()(
        producer_group in text(), topic in text(), default_topic in text(),
        default_topic_queue_nums in any::<i32>(), queue_id in any::<i32>(), sys_flag in any::<i32>(),
        born_timestamp in any::<i64>(), flag in any::<i32>(),
        properties in proptest::option::of(text()),
        reconsume_times in proptest::option::of(any::<i32>()),
        unit_mode in proptest::option::of(any::<bool>()),
        batch in proptest::option::of(any::<bool>()),
        max_reconsume_times in proptest::option::of(any::<i32>()),
        broker_name in proptest::option::of(text()),
    ) -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group, topic, default_topic, default_topic_queue_nums, queue_id, sys_flag,
            born_timestamp, flag, properties, reconsume_times, unit_mode, batch,
            max_reconsume_times, broker_name,
        }
    }
}

prop_compose! {
    fn pull_header()(
        consumer_group in text(), topic in text(), queue_id in any::<i32>(),
        queue_offset in any::<i64>(), max_msg_nums in any::<i32>(), sys_flag in any::<i32>(),
        commit_offset in any::<i64>(), suspend_timeout_millis in any::<i64>(),
        subscription in proptest::option::of(text()), sub_version in any::<i64>(),
        expression_type in proptest::option::of(text()),
        max_msg_bytes in proptest::option::of(any::<i32>()),
        request_source in proptest::option::of(any::<i32>()),
        proxy_forward_client_id in proptest::option::of(text()),
        logical in proptest::option::of(any::<bool>()),
        broker_name in proptest::option::of(text()),
    ) -> PullMessageRequestHeader {
        PullMessageRequestHeader {
            consumer_group, topic, queue_id, queue_offset, max_msg_nums, sys_flag, commit_offset,
            suspend_timeout_millis, subscription, sub_version, expression_type, max_msg_bytes,
            request_source, proxy_forward_client_id, logical, broker_name,
        }
    }
}

prop_compose! {
    fn register_header()(
        broker_name in text(), broker_addr in text(), cluster_name in text(),
        ha_server_addr in text(), broker_id in any::<i64>(),
        heartbeat_timeout_millis in proptest::option::of(any::<i64>()),
        enable_acting_master in proptest::option::of(any::<bool>()),
        compressed in proptest::option::of(any::<bool>()),
        body_crc32 in proptest::option::of(any::<i32>()),
    ) -> RegisterBrokerRequestHeader {
        RegisterBrokerRequestHeader {
            broker_name, broker_addr, cluster_name, ha_server_addr, broker_id,
            heartbeat_timeout_millis, enable_acting_master, compressed, body_crc32,
        }
    }
}

/// Sends `header` through a whole frame in `serialize_type` and decodes it back.
fn through_frame<H: CommandHeader>(header: &H, code: i32, serialize_type: SerializeType) -> H {
    let command = RemotingCommand::request(code, header).with_serialize_type(serialize_type);
    let mut buf = BytesMut::new();
    let mut codec = RemotingCodec::default();
    codec.encode(&command, &mut buf).expect("encodes");
    let decoded = codec
        .decode(&mut buf)
        .expect("decodes")
        .expect("whole frame");
    decoded.decode_header().expect("typed header decodes")
}

fn serialize_type() -> impl Strategy<Value = SerializeType> {
    prop_oneof![Just(SerializeType::Json), Just(SerializeType::RocketMq)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn send_header_round_trips(header in send_header(), st in serialize_type()) {
        prop_assert_eq!(SendMessageRequestHeader::decode(&header.to_ext_fields()).unwrap(), header.clone());
        prop_assert_eq!(through_frame(&header, 10, st), header);
    }

    #[test]
    fn send_header_forms_convert_losslessly(header in send_header(), st in serialize_type()) {
        let v2 = SendMessageRequestHeaderV2::from(header.clone());
        prop_assert_eq!(SendMessageRequestHeader::from(v2.clone()), header.clone());
        // Each form decodes through the by-code helper into the same header.
        let short = RemotingCommand::request(310, &v2).with_serialize_type(st);
        prop_assert_eq!(SendMessageRequestHeader::decode_any(&short).unwrap(), header.clone());
        let long = RemotingCommand::request(10, &header).with_serialize_type(st);
        prop_assert_eq!(SendMessageRequestHeader::decode_any(&long).unwrap(), header.clone());
        // The short form uses exactly the letters a..n and never a long name.
        prop_assert!(v2.to_ext_fields().keys().all(|k| k.len() == 1 && ("a"..="n").contains(&k.as_str())));
        prop_assert_eq!(through_frame(&v2, 310, st), v2);
    }

    #[test]
    fn pull_header_round_trips(header in pull_header(), st in serialize_type()) {
        prop_assert_eq!(through_frame(&header, 11, st), header);
    }

    #[test]
    fn pull_response_round_trips(
        a in any::<i64>(), b in any::<i64>(), c in any::<i64>(), d in any::<i64>(),
        e in proptest::option::of(any::<i64>()), f in proptest::option::of(any::<i32>()),
        st in serialize_type(),
    ) {
        let header = PullMessageResponseHeader {
            suggest_which_broker_id: a, next_begin_offset: b, min_offset: c, max_offset: d,
            offset_delta: e, topic_sys_flag: f, group_sys_flag: None, forbidden_type: f,
        };
        prop_assert_eq!(through_frame(&header, 0, st), header);
    }

    #[test]
    fn register_header_round_trips(header in register_header(), st in serialize_type()) {
        prop_assert_eq!(through_frame(&header, 103, st), header);
    }

    #[test]
    fn any_ext_fields_never_panic(
        code in any::<i32>(),
        fields in btree_map(
            prop_oneof![
                Just("a".to_owned()), Just("b".to_owned()), Just("topic".to_owned()),
                Just("queueId".to_owned()), Just("offset".to_owned()), Just("boundaryType".to_owned()),
                Just("brokerId".to_owned()), Just("g".to_owned()), ".{0,8}",
            ],
            prop_oneof![Just("1".to_owned()), Just("-1".to_owned()), Just("true".to_owned()), ".{0,16}"],
            0..24,
        ),
    ) {
        let _ = headers::decode_all(code, &fields);
    }

    #[test]
    fn numbers_accept_what_java_writes(value in any::<i64>()) {
        let mut fields = ExtFields::new();
        fields.insert("offset".into(), value.to_string());
        let header = headers::QueryConsumerOffsetResponseHeader::decode(&fields).unwrap();
        prop_assert_eq!(header.offset, value);
    }

    #[test]
    fn body_reader_never_panics(bytes in vec(any::<u8>(), 0..256)) {
        let _ = body::from_json::<body::HeartbeatData>(&bytes, "HeartbeatData");
        let _ = body::ConsumeStats::decode(&bytes);
        let _ = body::TopicStatsTable::decode(&bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = body::normalize_fastjson(text);
        }
    }

    #[test]
    fn json_like_text_never_panics(text in "[{}\\[\\]:,\"\\\\a0 -]{0,64}") {
        let _ = body::normalize_fastjson(&text);
        let _ = body::ConsumeStats::decode(text.as_bytes());
    }

    #[test]
    fn consume_stats_round_trip(
        entries in btree_map(
            (text(), text(), any::<i32>()),
            (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
            0..6,
        ),
        tps in -1.0e9f64..1.0e9,
    ) {
        let stats = body::ConsumeStats {
            offset_table: entries
                .into_iter()
                .map(|((topic, broker, queue), (b, c, p, t))| {
                    (
                        MessageQueue::new(topic, broker, queue),
                        body::OffsetWrapper { broker_offset: b, consumer_offset: c, pull_offset: p, last_timestamp: t },
                    )
                })
                .collect(),
            consume_tps: tps,
        };
        let decoded = body::ConsumeStats::decode(&stats.encode()).unwrap();
        prop_assert_eq!(decoded.offset_table, stats.offset_table);
        prop_assert!((decoded.consume_tps - stats.consume_tps).abs() <= stats.consume_tps.abs() * 1e-12);
    }
}
