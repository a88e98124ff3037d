//! The route table (RocketMQ's `RouteInfoManager`) as pure logic: no sockets, no clock. Callers
//! pass the time in milliseconds and an opaque id for the connection a request came on.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ferrum_protocol::route::{
    BrokerData, ClusterInfo, DataVersion, MASTER_ID, QueueData, RegisterBrokerBody, TopicConfig,
    TopicList, TopicRouteData,
};

/// Identifies the TCP connection a broker registered on, so its close can drop the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A broker is identified by its cluster and address, as in RocketMQ 5.x (`BrokerAddrInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerAddrInfo {
    pub cluster_name: String,
    pub broker_addr: String,
}

#[derive(Debug, Clone)]
struct BrokerLiveInfo {
    last_update_ms: u64,
    /// The broker's own `heartbeatTimeoutMillis`, when it sent one.
    timeout_ms: Option<u64>,
    data_version: DataVersion,
    conn: Option<ConnId>,
    ha_server_addr: String,
    broker_name: String,
}

/// One REGISTER_BROKER request, already decoded.
#[derive(Debug, Clone)]
pub struct Registration {
    pub cluster_name: String,
    pub broker_addr: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub ha_server_addr: String,
    pub heartbeat_timeout_ms: Option<u64>,
    pub enable_acting_master: bool,
    pub zone_name: Option<String>,
    pub body: RegisterBrokerBody,
}

/// What a registering slave needs: where its master and the master's HA port are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterResult {
    pub master_addr: Option<String>,
    pub ha_server_addr: Option<String>,
}

/// The NameServer's whole view of the cluster.
#[derive(Debug, Default)]
pub struct RouteInfoManager {
    /// topic → brokerName → its queues.
    topic_queue_table: BTreeMap<String, BTreeMap<String, QueueData>>,
    broker_addr_table: BTreeMap<String, BrokerData>,
    cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
    broker_live_table: HashMap<BrokerAddrInfo, BrokerLiveInfo>,
    filter_server_table: HashMap<BrokerAddrInfo, Vec<String>>,
}

impl RouteInfoManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a registration (or a re-registration, which is also the 4.x heartbeat).
    pub fn register_broker(
        &mut self,
        reg: Registration,
        conn: Option<ConnId>,
        now_ms: u64,
    ) -> RegisterResult {
        let Registration {
            cluster_name,
            broker_addr,
            broker_name,
            broker_id,
            ha_server_addr,
            heartbeat_timeout_ms,
            enable_acting_master,
            zone_name,
            body,
        } = reg;
        self.cluster_addr_table
            .entry(cluster_name.clone())
            .or_default()
            .insert(broker_name.clone());

        let mut register_first = !self.broker_addr_table.contains_key(&broker_name);
        let broker_data = self
            .broker_addr_table
            .entry(broker_name.clone())
            .or_insert_with(|| BrokerData {
                cluster: cluster_name.clone(),
                broker_name: broker_name.clone(),
                ..Default::default()
            });
        broker_data.enable_acting_master = enable_acting_master;
        if zone_name.is_some() {
            broker_data.zone_name = zone_name;
        }
        // A slave promoted to master re-registers the same address under a new id: the old
        // entry must go or the address would appear twice.
        broker_data
            .broker_addrs
            .retain(|id, addr| *addr != broker_addr || *id == broker_id);
        let old = broker_data
            .broker_addrs
            .insert(broker_id, broker_addr.clone());
        register_first |= old.is_none();

        let key = BrokerAddrInfo {
            cluster_name,
            broker_addr: broker_addr.clone(),
        };
        let wrapper = body.topic_config_serialize_wrapper;
        let changed = self
            .broker_live_table
            .get(&key)
            .is_none_or(|live| live.data_version != wrapper.data_version);
        if broker_id == MASTER_ID && (changed || register_first) {
            for config in wrapper.topic_config_table.values() {
                self.create_and_update_queue_data(&broker_name, config);
            }
        }

        self.broker_live_table.insert(
            key.clone(),
            BrokerLiveInfo {
                last_update_ms: now_ms,
                timeout_ms: heartbeat_timeout_ms,
                data_version: wrapper.data_version,
                conn,
                ha_server_addr,
                broker_name: broker_name.clone(),
            },
        );
        if body.filter_server_list.is_empty() {
            self.filter_server_table.remove(&key);
        } else {
            self.filter_server_table
                .insert(key.clone(), body.filter_server_list);
        }

        let mut result = RegisterResult::default();
        if broker_id != MASTER_ID
            && let Some(master) = self
                .broker_addr_table
                .get(&broker_name)
                .and_then(|b| b.master_addr())
        {
            let master_key = BrokerAddrInfo {
                cluster_name: key.cluster_name.clone(),
                broker_addr: master.to_owned(),
            };
            result.ha_server_addr = self
                .broker_live_table
                .get(&master_key)
                .map(|live| live.ha_server_addr.clone());
            result.master_addr = Some(master.to_owned());
        }
        result
    }

    fn create_and_update_queue_data(&mut self, broker_name: &str, config: &TopicConfig) {
        let queue = QueueData {
            broker_name: broker_name.to_owned(),
            read_queue_nums: config.read_queue_nums,
            write_queue_nums: config.write_queue_nums,
            perm: config.perm,
            topic_sys_flag: config.topic_sys_flag,
        };
        self.topic_queue_table
            .entry(config.topic_name.clone())
            .or_default()
            .insert(broker_name.to_owned(), queue);
    }

    /// UNREGISTER_BROKER: a broker shutting down cleanly.
    pub fn unregister_broker(
        &mut self,
        cluster_name: &str,
        broker_addr: &str,
        broker_name: &str,
        broker_id: i64,
    ) -> bool {
        let key = BrokerAddrInfo {
            cluster_name: cluster_name.to_owned(),
            broker_addr: broker_addr.to_owned(),
        };
        let known = self.broker_live_table.remove(&key).is_some();
        self.filter_server_table.remove(&key);
        let mut removed_name = false;
        if let Some(data) = self.broker_addr_table.get_mut(broker_name) {
            let matches =
                data.broker_addrs.get(&broker_id).map(String::as_str) == Some(broker_addr);
            if matches {
                data.broker_addrs.remove(&broker_id);
            }
            if data.broker_addrs.is_empty() {
                self.broker_addr_table.remove(broker_name);
                removed_name = true;
            }
        }
        if removed_name {
            self.forget_broker_name(cluster_name, broker_name);
        }
        known || removed_name
    }

    /// Drops a broker group's name from its cluster and its queues from every topic.
    fn forget_broker_name(&mut self, cluster_name: &str, broker_name: &str) {
        if let Some(names) = self.cluster_addr_table.get_mut(cluster_name) {
            names.remove(broker_name);
            if names.is_empty() {
                self.cluster_addr_table.remove(cluster_name);
            }
        }
        self.topic_queue_table.retain(|_, queues| {
            queues.remove(broker_name);
            !queues.is_empty()
        });
    }

    /// Removes one live broker (expired or its connection closed).
    fn remove_live(&mut self, key: &BrokerAddrInfo) {
        let Some(live) = self.broker_live_table.remove(key) else {
            return;
        };
        self.filter_server_table.remove(key);
        let mut removed_name = false;
        if let Some(data) = self.broker_addr_table.get_mut(&live.broker_name) {
            data.broker_addrs.retain(|_, addr| *addr != key.broker_addr);
            if data.broker_addrs.is_empty() {
                self.broker_addr_table.remove(&live.broker_name);
                removed_name = true;
            }
        }
        if removed_name {
            self.forget_broker_name(&key.cluster_name, &live.broker_name);
        }
    }

    /// Drops every broker silent for longer than its timeout (or `default_expiry_ms`).
    pub fn scan_not_active_brokers(
        &mut self,
        now_ms: u64,
        default_expiry_ms: u64,
    ) -> Vec<BrokerAddrInfo> {
        let expired: Vec<BrokerAddrInfo> = self
            .broker_live_table
            .iter()
            .filter(|(_, live)| {
                let timeout = live.timeout_ms.unwrap_or(default_expiry_ms);
                now_ms.saturating_sub(live.last_update_ms) > timeout
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            self.remove_live(key);
        }
        expired
    }

    /// Drops every broker that registered on `conn`, which has just closed.
    pub fn connection_closed(&mut self, conn: ConnId) -> Vec<BrokerAddrInfo> {
        let gone: Vec<BrokerAddrInfo> = self
            .broker_live_table
            .iter()
            .filter(|(_, live)| live.conn == Some(conn))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &gone {
            self.remove_live(key);
        }
        gone
    }

    /// Refreshes a broker's liveness; false when it is not registered.
    pub fn heartbeat(&mut self, cluster_name: &str, broker_addr: &str, now_ms: u64) -> bool {
        let key = BrokerAddrInfo {
            cluster_name: cluster_name.to_owned(),
            broker_addr: broker_addr.to_owned(),
        };
        match self.broker_live_table.get_mut(&key) {
            Some(live) => {
                live.last_update_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// QUERY_DATA_VERSION: whether the broker's topic config differs from what was registered,
    /// and the registered version. An unchanged broker counts as alive.
    pub fn query_data_version(
        &mut self,
        cluster_name: &str,
        broker_addr: &str,
        version: &DataVersion,
        now_ms: u64,
    ) -> (bool, Option<DataVersion>) {
        let key = BrokerAddrInfo {
            cluster_name: cluster_name.to_owned(),
            broker_addr: broker_addr.to_owned(),
        };
        match self.broker_live_table.get_mut(&key) {
            Some(live) => {
                let changed = live.data_version != *version;
                if !changed {
                    live.last_update_ms = now_ms;
                }
                (changed, Some(live.data_version))
            }
            None => (true, None),
        }
    }

    /// GET_ROUTEINFO_BY_TOPIC; `None` when no broker holds the topic.
    pub fn topic_route(&self, topic: &str) -> Option<TopicRouteData> {
        let queues = self.topic_queue_table.get(topic)?;
        let mut route = TopicRouteData::default();
        for (broker_name, queue) in queues {
            route.queue_datas.push(queue.clone());
            if let Some(data) = self.broker_addr_table.get(broker_name) {
                for addr in data.broker_addrs.values() {
                    let key = BrokerAddrInfo {
                        cluster_name: data.cluster.clone(),
                        broker_addr: addr.clone(),
                    };
                    if let Some(filters) = self.filter_server_table.get(&key) {
                        route
                            .filter_server_table
                            .insert(addr.clone(), filters.clone());
                    }
                }
                route.broker_datas.push(data.clone());
            }
        }
        if route.broker_datas.is_empty() {
            return None;
        }
        Some(route)
    }

    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.broker_addr_table.clone(),
            cluster_addr_table: self.cluster_addr_table.clone(),
        }
    }

    pub fn all_topics(&self) -> TopicList {
        TopicList {
            topic_list: self.topic_queue_table.keys().cloned().collect(),
            broker_addr: None,
        }
    }

    /// Topics with at least one queue on a broker group of `cluster`.
    pub fn topics_by_cluster(&self, cluster: &str) -> TopicList {
        let names = self.cluster_addr_table.get(cluster);
        let topic_list = self
            .topic_queue_table
            .iter()
            .filter(|(_, queues)| {
                names.is_some_and(|names| queues.keys().any(|b| names.contains(b)))
            })
            .map(|(topic, _)| topic.clone())
            .collect();
        TopicList {
            topic_list,
            broker_addr: None,
        }
    }

    /// GET_SYSTEM_TOPIC_LIST_FROM_NS: RocketMQ lists cluster and broker names (each is a system
    /// topic) and one broker address to ask for the rest.
    pub fn system_topics(&self) -> TopicList {
        let mut list = TopicList::default();
        for (cluster, names) in &self.cluster_addr_table {
            list.topic_list.insert(cluster.clone());
            list.topic_list.extend(names.iter().cloned());
        }
        list.broker_addr = self
            .broker_addr_table
            .values()
            .find_map(|b| b.broker_addrs.values().next().cloned());
        list
    }

    /// DELETE_TOPIC_IN_NAMESRV: everywhere, or only on the broker groups of `cluster`.
    pub fn delete_topic(&mut self, topic: &str, cluster: Option<&str>) {
        match cluster.filter(|c| !c.is_empty()) {
            None => {
                self.topic_queue_table.remove(topic);
            }
            Some(cluster) => {
                let Some(names) = self.cluster_addr_table.get(cluster) else {
                    return;
                };
                if let Some(queues) = self.topic_queue_table.get_mut(topic) {
                    queues.retain(|broker, _| !names.contains(broker));
                    if queues.is_empty() {
                        self.topic_queue_table.remove(topic);
                    }
                }
            }
        }
    }

    /// How many brokers are alive; for logs and tests.
    pub fn live_broker_count(&self) -> usize {
        self.broker_live_table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_protocol::route::TopicConfigSerializeWrapper;

    fn reg(name: &str, addr: &str, id: i64, topics: &[(&str, i32)], counter: i64) -> Registration {
        Registration {
            cluster_name: "DefaultCluster".into(),
            broker_addr: addr.into(),
            broker_name: name.into(),
            broker_id: id,
            ha_server_addr: format!("{addr}-ha"),
            heartbeat_timeout_ms: None,
            enable_acting_master: false,
            zone_name: None,
            body: RegisterBrokerBody {
                topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                    topic_config_table: topics
                        .iter()
                        .map(|(t, q)| ((*t).to_owned(), TopicConfig::new(*t, *q)))
                        .collect(),
                    data_version: DataVersion {
                        timestamp: 1,
                        counter,
                        state_version: 0,
                    },
                },
                filter_server_list: vec![],
            },
        }
    }

    #[test]
    fn register_then_route() {
        let mut rim = RouteInfoManager::new();
        let result = rim.register_broker(reg("a", "1:1", 0, &[("T", 4)], 1), None, 0);
        assert_eq!(result, RegisterResult::default());
        let route = rim.topic_route("T").expect("route");
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.queue_datas[0].write_queue_nums, 4);
        assert_eq!(route.broker_datas[0].master_addr(), Some("1:1"));
        assert!(rim.topic_route("U").is_none());
        let info = rim.cluster_info();
        assert!(info.cluster_addr_table["DefaultCluster"].contains("a"));
    }

    #[test]
    fn slave_learns_master_and_ha_address_and_adds_no_queues() {
        let mut rim = RouteInfoManager::new();
        rim.register_broker(reg("a", "m:1", 0, &[("T", 4)], 1), None, 0);
        let result = rim.register_broker(reg("a", "s:1", 1, &[("T", 8), ("X", 1)], 1), None, 0);
        assert_eq!(result.master_addr.as_deref(), Some("m:1"));
        assert_eq!(result.ha_server_addr.as_deref(), Some("m:1-ha"));
        assert_eq!(
            rim.topic_route("T").expect("route").queue_datas[0].write_queue_nums,
            4
        );
        assert!(rim.topic_route("X").is_none());
        assert_eq!(
            rim.topic_route("T").expect("route").broker_datas[0]
                .broker_addrs
                .len(),
            2
        );
    }

    #[test]
    fn queues_follow_data_version_changes_only() {
        let mut rim = RouteInfoManager::new();
        rim.register_broker(reg("a", "m:1", 0, &[("T", 4)], 1), None, 0);
        // Same version, different table: RocketMQ trusts the version and keeps the old queues.
        rim.register_broker(reg("a", "m:1", 0, &[("T", 2)], 1), None, 1);
        assert_eq!(
            rim.topic_route("T").expect("route").queue_datas[0].write_queue_nums,
            4
        );
        rim.register_broker(reg("a", "m:1", 0, &[("T", 2)], 2), None, 2);
        assert_eq!(
            rim.topic_route("T").expect("route").queue_datas[0].write_queue_nums,
            2
        );
    }

    #[test]
    fn expiry_and_connection_close() {
        let mut rim = RouteInfoManager::new();
        rim.register_broker(reg("a", "m:1", 0, &[("T", 4)], 1), Some(ConnId(1)), 0);
        rim.register_broker(reg("b", "n:1", 0, &[("T", 4)], 1), Some(ConnId(2)), 500);
        assert!(rim.scan_not_active_brokers(1000, 1000).is_empty());
        let expired = rim.scan_not_active_brokers(1001, 1000);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].broker_addr, "m:1");
        let route = rim.topic_route("T").expect("b still serves T");
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.queue_datas[0].broker_name, "b");
        assert!(rim.heartbeat("DefaultCluster", "n:1", 1400));
        assert!(rim.scan_not_active_brokers(2000, 1000).is_empty());
        assert_eq!(rim.connection_closed(ConnId(2)).len(), 1);
        assert!(rim.topic_route("T").is_none());
        assert!(rim.cluster_info().cluster_addr_table.is_empty());
        assert_eq!(rim.live_broker_count(), 0);
    }

    #[test]
    fn unregister_keeps_other_members() {
        let mut rim = RouteInfoManager::new();
        rim.register_broker(reg("a", "m:1", 0, &[("T", 4)], 1), None, 0);
        rim.register_broker(reg("a", "s:1", 1, &[], 1), None, 0);
        assert!(rim.unregister_broker("DefaultCluster", "s:1", "a", 1));
        let route = rim.topic_route("T").expect("route");
        assert_eq!(route.broker_datas[0].broker_addrs.len(), 1);
        assert!(rim.unregister_broker("DefaultCluster", "m:1", "a", 0));
        assert!(rim.topic_route("T").is_none());
    }

    #[test]
    fn promoted_slave_replaces_its_old_id() {
        let mut rim = RouteInfoManager::new();
        rim.register_broker(reg("a", "s:1", 1, &[], 1), None, 0);
        rim.register_broker(reg("a", "s:1", 0, &[("T", 4)], 2), None, 1);
        let addrs = &rim.cluster_info().broker_addr_table["a"].broker_addrs;
        assert_eq!(addrs.len(), 1);
        assert_eq!(addrs.get(&0).map(String::as_str), Some("s:1"));
    }

    #[test]
    fn data_version_query_and_topic_lists() {
        let mut rim = RouteInfoManager::new();
        rim.register_broker(reg("a", "m:1", 0, &[("T", 4), ("U", 1)], 7), None, 0);
        let same = DataVersion {
            timestamp: 1,
            counter: 7,
            state_version: 0,
        };
        assert_eq!(
            rim.query_data_version("DefaultCluster", "m:1", &same, 5),
            (false, Some(same))
        );
        let newer = DataVersion { counter: 8, ..same };
        assert!(rim.query_data_version("DefaultCluster", "m:1", &newer, 5).0);
        assert_eq!(
            rim.query_data_version("Other", "m:1", &same, 5),
            (true, None)
        );
        assert_eq!(rim.all_topics().topic_list.len(), 2);
        assert_eq!(rim.topics_by_cluster("DefaultCluster").topic_list.len(), 2);
        assert!(rim.topics_by_cluster("Nope").topic_list.is_empty());
        let system = rim.system_topics();
        assert!(system.topic_list.contains("DefaultCluster"));
        assert!(system.topic_list.contains("a"));
        assert_eq!(system.broker_addr.as_deref(), Some("m:1"));
        rim.delete_topic("U", Some("DefaultCluster"));
        rim.delete_topic("T", None);
        assert!(rim.all_topics().topic_list.is_empty());
    }
}
