//! Checks the apiserver cannot make at admission: across objects, or beyond CEL's reach.
//! A failure becomes the `Degraded` condition's message; the reconciler then leaves the
//! group's objects as they are and goes on with the others.

use crate::build::MANAGED_KEYS;
use crate::crd::{BrokerGroup, BrokerGroupSpec, BrokerMode};

/// Every problem found, each a sentence for the `Degraded` message.
pub fn validate_spec(spec: &BrokerGroupSpec) -> Vec<String> {
    let mut problems = Vec::new();
    // Repeated from the CEL rules: a CRD applied without them (or an old one) must not let
    // an even Raft group through.
    match spec.mode {
        BrokerMode::Raft if spec.replicas < 3 || spec.replicas % 2 == 0 => problems.push(format!(
            "Raft mode needs an odd number of replicas, at least 3; got {}",
            spec.replicas
        )),
        BrokerMode::MasterSlave if spec.replicas < 1 => {
            problems.push("replicas must be at least 1".to_owned())
        }
        _ => {}
    }
    if let Some(p) = spec.promote {
        if spec.mode == BrokerMode::Raft {
            problems.push("promote is only for MasterSlave mode".to_owned());
        } else if !(0..spec.replicas).contains(&p) {
            problems.push(format!(
                "promote {p} names no replica (0..{})",
                spec.replicas - 1
            ));
        }
    }
    if parse_quantity(&spec.storage.size).is_none() {
        problems.push(format!(
            "storage.size {:?} is not a quantity such as 20Gi",
            spec.storage.size
        ));
    }
    for (k, v) in &spec.broker_config {
        if MANAGED_KEYS.contains(&k.as_str()) {
            problems.push(format!(
                "brokerConfig.{k} is set by the operator and cannot be overridden"
            ));
        } else if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            problems.push(format!("brokerConfig key {k:?} is not a broker.conf key"));
        }
        if v.contains(['\n', '\r']) {
            problems.push(format!("brokerConfig.{k} must be a single line"));
        }
    }
    problems
}

/// BrokerGroups of one cluster share its NameServers, so they must describe them the same
/// way. The oldest group (first in `groups`, sorted by the caller) wins; the others are told.
pub fn nameserver_conflict(group: &BrokerGroup, groups: &[BrokerGroup]) -> Option<String> {
    let first = groups.iter().find(|g| {
        g.spec.cluster_name == group.spec.cluster_name
            && g.metadata.namespace == group.metadata.namespace
    })?;
    if first.metadata.name == group.metadata.name
        || first.spec.name_server == group.spec.name_server
    {
        return None;
    }
    Some(format!(
        "nameServer differs from BrokerGroup {} of cluster {}, which defines the cluster's NameServers",
        first.metadata.name.as_deref().unwrap_or("?"),
        group.spec.cluster_name
    ))
}

/// Bytes of a Kubernetes quantity (binary and decimal suffixes, plain or decimal numbers).
/// Used to tell growth from shrinkage when the CEL quantity library is unavailable.
pub fn parse_quantity(s: &str) -> Option<u128> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let mult: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int.checked_mul(mult)?;
    if !frac.is_empty() {
        let digits: u32 = u32::try_from(frac.len()).ok()?;
        let scale = 10u128.checked_pow(digits)?;
        value = value.checked_add(frac.parse::<u128>().ok()?.checked_mul(mult)? / scale)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    #[test]
    fn valid_fixtures_pass() {
        assert!(validate_spec(&fixtures::group(fixtures::MASTER_SLAVE).spec).is_empty());
        assert!(validate_spec(&fixtures::group(fixtures::RAFT).spec).is_empty());
    }

    #[test]
    fn even_or_small_raft_groups_are_refused() {
        for n in [1, 2, 4] {
            let mut spec = fixtures::group(fixtures::RAFT).spec;
            spec.replicas = n;
            let p = validate_spec(&spec);
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].contains("odd number"));
        }
    }

    #[test]
    fn promote_rules() {
        let mut spec = fixtures::group(fixtures::MASTER_SLAVE).spec;
        spec.promote = Some(3);
        assert!(validate_spec(&spec)[0].contains("names no replica"));
        spec.promote = Some(2);
        assert!(validate_spec(&spec).is_empty());
        let mut raft = fixtures::group(fixtures::RAFT).spec;
        raft.promote = Some(0);
        assert!(validate_spec(&raft)[0].contains("only for MasterSlave"));
    }

    #[test]
    fn managed_and_malformed_broker_config_keys() {
        let mut spec = fixtures::group(fixtures::MASTER_SLAVE).spec;
        spec.broker_config.insert("brokerId".into(), "7".into());
        spec.broker_config.insert("bad key".into(), "x".into());
        spec.broker_config.insert("ok".into(), "a\nb".into());
        let p = validate_spec(&spec);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.contains("brokerConfig.brokerId is set by the operator"))
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("20Gi"), Some(20 << 30));
        assert_eq!(parse_quantity("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_quantity("500M"), Some(500_000_000));
        assert_eq!(parse_quantity("1024"), Some(1024));
        assert_eq!(parse_quantity("20GB"), None);
        assert_eq!(parse_quantity(""), None);
        assert_eq!(parse_quantity("Gi"), None);
        let mut spec = fixtures::group(fixtures::RAFT).spec;
        spec.storage.size = "lots".into();
        assert!(validate_spec(&spec)[0].contains("not a quantity"));
    }

    #[test]
    fn nameserver_disagreement_is_reported_on_the_younger_group() {
        let a = fixtures::group(fixtures::RAFT);
        let mut b = fixtures::group(fixtures::RAFT);
        b.metadata.name = Some("payments".into());
        b.spec.name_server.replicas = 3;
        let all = vec![a.clone(), b.clone()];
        assert_eq!(nameserver_conflict(&a, &all), None);
        let msg = nameserver_conflict(&b, &all).expect("conflict");
        assert!(msg.contains("BrokerGroup orders"), "{msg}");
        b.spec.cluster_name = "other".into();
        assert_eq!(nameserver_conflict(&b, &[a, b.clone()]), None);
    }
}
