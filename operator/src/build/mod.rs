//! Pure builders: from a custom resource to the Kubernetes objects it should become.
//!
//! Nothing here talks to the apiserver, so every object can be checked in unit tests. The
//! reconciler applies what these return with server-side apply, in [`BrokerGroupObjects`]'s
//! order (StatefulSet last, so its pods never start before their config and Services exist).

mod broker;
mod config;
mod names;
mod namesrv;

pub use broker::*;
pub use config::*;
pub use names::*;
pub use namesrv::*;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::crd::BrokerGroup;

/// Why desired objects could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("object has no {0}; it was not read from the apiserver")]
    MissingMetadata(&'static str),
}

/// Identity of the BrokerGroup being built, read once from its metadata.
#[derive(Debug, Clone)]
pub struct GroupIdentity {
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
}

impl GroupIdentity {
    pub fn of(bg: &BrokerGroup) -> Result<Self, BuildError> {
        use kube::Resource;
        let name = bg
            .metadata
            .name
            .clone()
            .ok_or(BuildError::MissingMetadata("metadata.name"))?;
        let namespace = bg
            .metadata
            .namespace
            .clone()
            .ok_or(BuildError::MissingMetadata("metadata.namespace"))?;
        let owner = bg
            .controller_owner_ref(&())
            .ok_or(BuildError::MissingMetadata("metadata.uid"))?;
        Ok(GroupIdentity {
            name,
            namespace,
            owner,
        })
    }
}

/// 64-bit FNV-1a: a stable, dependency-free content hash for the pod template annotation.
/// It only has to change when the config changes; it is not a security boundary.
pub fn fnv1a64(chunks: impl IntoIterator<Item = impl AsRef<[u8]>>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in chunks {
        for b in chunk.as_ref() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::crd::{BrokerGroup, BrokerGroupSpec};

    pub fn group(yaml_spec: &str) -> BrokerGroup {
        let spec: BrokerGroupSpec = serde_yaml::from_str(yaml_spec).expect("fixture spec parses");
        let mut bg = BrokerGroup::new("orders", spec);
        bg.metadata.namespace = Some("mq".into());
        bg.metadata.uid = Some("0b6c9d3e-uid".into());
        bg
    }

    pub const MASTER_SLAVE: &str = r#"
clusterName: prod
mode: MasterSlave
replicas: 3
image: ferrum/broker:1.0
storage: { size: 20Gi, storageClassName: fast }
nameServer: { replicas: 2, image: ferrum/namesrv:1.0 }
brokerConfig: { deleteWhen: "04" }
"#;

    pub const RAFT: &str = r#"
clusterName: prod
mode: Raft
replicas: 3
image: ferrum/broker:1.0
storage: { size: 20Gi }
nameServer: { image: ferrum/namesrv:1.0 }
"#;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_requires_namespace_and_uid() {
        let mut bg = fixtures::group(fixtures::RAFT);
        let id = GroupIdentity::of(&bg).expect("identity");
        assert_eq!(id.owner.kind, "BrokerGroup");
        assert_eq!(id.owner.controller, Some(true));
        bg.metadata.uid = None;
        assert_eq!(
            GroupIdentity::of(&bg).err(),
            Some(BuildError::MissingMetadata("metadata.uid"))
        );
    }

    #[test]
    fn hash_is_stable_and_separates_chunks() {
        assert_eq!(fnv1a64(["a", "bc"]), fnv1a64(["a", "bc"]));
        assert_ne!(fnv1a64(["ab", "c"]), fnv1a64(["a", "bc"]));
    }
}
