//! ferrum-operator owns the Kubernetes side of Ferrum: the `BrokerGroup` and `Topic` custom
//! resources, the reconcilers that turn them into NameServer Deployments, broker StatefulSets,
//! Services, ConfigMaps and PodDisruptionBudgets, manual promotion and the rolling-upgrade driver.
//!
//! It keeps no state outside the custom resources' status and the cluster, and it never links
//! the broker: it reaches brokers over the wire through ferrum-client, like any client.

pub mod build;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod prune;
pub mod replicas;
pub mod roll;
pub mod status;
pub mod topic_controller;
pub mod validate;
