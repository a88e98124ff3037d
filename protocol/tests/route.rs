//! Route JSON vectors shaped like RocketMQ's own bodies.

use std::collections::BTreeMap;

use ferrum_protocol::route::{
    BrokerData, ClusterInfo, DataVersion, KVTable, QueueData, RegisterBrokerBody, TopicConfig,
    TopicList, TopicRouteData, from_json, to_json,
};

fn sample_route() -> TopicRouteData {
    TopicRouteData {
        order_topic_conf: None,
        queue_datas: vec![QueueData {
            broker_name: "broker-a".into(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            perm: 6,
            topic_sys_flag: 0,
        }],
        broker_datas: vec![BrokerData {
            cluster: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_addrs: BTreeMap::from([
                (0, "10.0.0.1:10911".to_owned()),
                (1, "10.0.0.2:10911".to_owned()),
            ]),
            enable_acting_master: false,
            zone_name: None,
        }],
        filter_server_table: BTreeMap::new(),
        topic_queue_mapping_by_broker: None,
    }
}

#[test]
fn topic_route_is_written_with_quoted_keys_and_rocketmq_names() {
    let json = String::from_utf8(to_json(&sample_route())).expect("utf-8");
    assert_eq!(
        json,
        concat!(
            r#"{"queueDatas":[{"brokerName":"broker-a","readQueueNums":8,"writeQueueNums":8,"perm":6,"topicSysFlag":0}],"#,
            r#""brokerDatas":[{"cluster":"DefaultCluster","brokerName":"broker-a","#,
            r#""brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"enableActingMaster":false}],"#,
            r#""filterServerTable":{}}"#
        )
    );
    let back: TopicRouteData = from_json(json.as_bytes(), "TopicRouteData").expect("parse");
    assert_eq!(back, sample_route());
}

#[test]
fn topic_route_from_plain_fastjson_with_bare_keys() {
    // What fastjson writes without BrowserCompatible: sorted fields, bare integer keys.
    let fastjson = br#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":8,"topicSysFlag":0,"writeQueueNums":8}]}"#;
    let route: TopicRouteData = from_json(fastjson, "TopicRouteData").expect("parse");
    assert_eq!(route, sample_route());
    assert_eq!(route.broker_datas[0].master_addr(), Some("10.0.0.1:10911"));
}

#[test]
fn register_broker_body_like_a_java_broker_sends() {
    let body = br#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"topicConfigTable":{"TopicTest":{"attributes":{},"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":4}},"topicQueueMappingDetailMap":{},"topicQueueMappingInfoMap":{}}}"#;
    let parsed = RegisterBrokerBody::decode(body, false).expect("parse");
    let wrapper = &parsed.topic_config_serialize_wrapper;
    assert_eq!(
        wrapper.data_version,
        DataVersion {
            timestamp: 1_700_000_000_000,
            counter: 3,
            state_version: 0
        }
    );
    assert_eq!(
        wrapper.topic_config_table["TopicTest"],
        TopicConfig::new("TopicTest", 4)
    );
    let again = RegisterBrokerBody::decode(&to_json(&parsed), false).expect("round trip");
    assert_eq!(again, parsed);
}

#[test]
fn four_x_data_version_without_state_version() {
    let v: DataVersion =
        from_json(br#"{"counter":1,"timestamp":5}"#, "DataVersion").expect("parse");
    assert_eq!(v.state_version, 0);
    assert_eq!(v.counter, 1);
}

#[test]
fn cluster_info_topic_list_and_kv_table_round_trip() {
    let route = sample_route();
    let info = ClusterInfo {
        broker_addr_table: BTreeMap::from([("broker-a".to_owned(), route.broker_datas[0].clone())]),
        cluster_addr_table: BTreeMap::from([(
            "DefaultCluster".to_owned(),
            ["broker-a".to_owned()].into(),
        )]),
    };
    let json = String::from_utf8(to_json(&info)).expect("utf-8");
    assert!(
        json.contains(r#""clusterAddrTable":{"DefaultCluster":["broker-a"]}"#),
        "{json}"
    );
    assert!(
        json.contains(r#""brokerAddrTable":{"broker-a":{"#),
        "{json}"
    );
    assert_eq!(
        from_json::<ClusterInfo>(json.as_bytes(), "ClusterInfo").expect("parse"),
        info
    );

    let list = TopicList {
        topic_list: ["A".to_owned(), "B".to_owned()].into(),
        broker_addr: None,
    };
    assert_eq!(to_json(&list), br#"{"topicList":["A","B"]}"#.to_vec());

    let kv = KVTable {
        table: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
    };
    assert_eq!(to_json(&kv), br#"{"table":{"k":"v"}}"#.to_vec());
    assert_eq!(
        from_json::<KVTable>(&to_json(&kv), "KVTable").expect("parse"),
        kv
    );
}

#[test]
fn bad_body_names_what_was_expected() {
    let err = RegisterBrokerBody::decode(b"not json", false).unwrap_err();
    assert!(err.to_string().contains("RegisterBrokerBody"), "{err}");
}
