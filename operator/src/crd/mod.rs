//! Custom resource definitions served under `ferrum.dev/v1alpha1`.
//!
//! Admission-time checks live in the schema (OpenAPI + CEL `x-kubernetes-validations`) so that
//! impossible specs never reach the reconciler; what the apiserver cannot see (other objects,
//! quantities it has no rule for) is re-checked by [`crate::validate`] and reported as `Degraded`.

mod broker_group;
mod topic;

pub use broker_group::*;
pub use topic::*;

use kube::CustomResourceExt;

/// API group of every Ferrum custom resource.
pub const GROUP: &str = "ferrum.dev";
/// The only served version for now.
pub const VERSION: &str = "v1alpha1";

/// All CRDs as one multi-document YAML stream, in a stable order.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in [BrokerGroup::crd(), Topic::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `crds/` is checked in for `kubectl apply` and the Helm chart; it must match the types.
    #[test]
    fn checked_in_crds_are_current() {
        let generated = crds_yaml().expect("CRDs serialize");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/ferrum.dev.yaml");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            generated == on_disk,
            "crds/ferrum.dev.yaml is stale: run `make crds` and commit the result"
        );
    }

    /// Helm installs CRDs only from inside the chart, so the chart carries a copy of `crds/`.
    #[test]
    fn chart_crds_are_the_same_bytes() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let read = |p: &str| std::fs::read(format!("{dir}/../{p}")).expect(p);
        assert!(
            read("crds/ferrum.dev.yaml") == read("charts/ferrum/crds/ferrum.dev.yaml"),
            "charts/ferrum/crds/ferrum.dev.yaml differs from crds/ferrum.dev.yaml: run `make crds`"
        );
    }

    fn rules(schema: &serde_json::Value, out: &mut Vec<String>) {
        match schema {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(list)) = map.get("x-kubernetes-validations") {
                    for r in list {
                        if let Some(rule) = r.get("rule").and_then(|v| v.as_str()) {
                            out.push(rule.to_owned());
                        }
                    }
                }
                for v in map.values() {
                    rules(v, out);
                }
            }
            serde_json::Value::Array(list) => list.iter().for_each(|v| rules(v, out)),
            _ => {}
        }
    }

    #[test]
    fn broker_group_schema_carries_admission_rules() {
        let crd = serde_json::to_value(BrokerGroup::crd()).expect("json");
        let mut found = Vec::new();
        rules(&crd, &mut found);
        let want = [
            "self.mode != 'Raft' || (self.replicas >= 3 && self.replicas % 2 == 1)",
            "quantity(self).compareTo(quantity(oldSelf)) >= 0",
            "self == oldSelf",
        ];
        for w in want {
            assert!(
                found.iter().any(|r| r.contains(w)),
                "missing rule {w}: {found:?}"
            );
        }
        assert_eq!(crd["spec"]["group"], GROUP);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["versions"][0]["name"], VERSION);
        assert!(
            !serde_json::to_string(&crd)
                .expect("json")
                .contains("x-kubernetes-preserve-unknown-fields"),
            "schema must stay structural so unknown fields are refused"
        );
        let columns: Vec<_> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        for c in ["Mode", "Master", "Ready", "Age"] {
            assert!(columns.iter().any(|x| x == c), "missing column {c}");
        }
    }

    #[test]
    fn topic_schema_has_defaults_and_perm_rule() {
        let crd = serde_json::to_value(Topic::crd()).expect("json");
        let mut found = Vec::new();
        rules(&crd, &mut found);
        assert!(found.iter().any(|r| r.contains("self == 2 || self == 4")));
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["readQueueNums"]["default"], 8);
        assert_eq!(spec["properties"]["perm"]["default"], 6);
    }

    #[test]
    fn spec_round_trips_with_defaults() {
        let yaml = r#"
clusterName: c1
mode: Raft
replicas: 3
image: ferrum/broker:dev
storage: { size: 10Gi }
nameServer: { image: ferrum/namesrv:dev }
"#;
        let spec: BrokerGroupSpec = serde_yaml::from_str(yaml).expect("parses");
        assert_eq!(spec.mode, BrokerMode::Raft);
        assert_eq!(spec.name_server.replicas, 2);
        assert_eq!(spec.flush_disk_type, FlushDiskType::ASYNC_FLUSH);
        assert_eq!(spec.replication.broker_role, MasterRole::ASYNC_MASTER);
    }
}
