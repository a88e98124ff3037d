//! Conditions of a BrokerGroup from what the reconciler observed. Pure, so the rules for
//! `Ready` / `Progressing` / `Degraded` / `ReconciliationPaused` are unit-tested.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const PAUSED: &str = "ReconciliationPaused";

/// What one reconcile pass saw.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub generation: Option<i64>,
    pub desired_replicas: i32,
    pub ready_replicas: i32,
    /// Spec problems found by validation (each a sentence).
    pub problems: Vec<String>,
    pub paused: bool,
    /// What could not be observed (an unreachable NameServer or broker): told in `Ready`'s
    /// message, not an error, since pods that are still starting are unreachable too.
    pub notes: Option<String>,
    /// A promotion that was asked for and refused or failed.
    pub promotion: Option<String>,
    /// A rolling restart under way, as one line (see `roll::RollOutcome::progress`).
    pub rolling: Option<String>,
    /// Volume growth the API server refused (e.g. a StorageClass without
    /// `allowVolumeExpansion`); the rest of the group is still applied.
    pub storage: Option<String>,
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    obs: &Observation,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the status flips, as Kubernetes conventions ask.
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: obs.generation,
        last_transition_time,
    }
}

/// A condition whose transition time moves only when its status flips.
pub fn condition_at(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let obs = Observation {
        generation,
        ..Default::default()
    };
    condition(type_, ok, reason, message, &obs, previous, now)
}

pub fn conditions(obs: &Observation, previous: &[Condition], now: &Time) -> Vec<Condition> {
    let invalid = !obs.problems.is_empty();
    let all_ready = obs.ready_replicas >= obs.desired_replicas && obs.desired_replicas > 0;
    let counts = format!(
        "{}/{} replicas ready",
        obs.ready_replicas, obs.desired_replicas
    );
    let ready_message = match &obs.notes {
        Some(n) => format!("{counts}; {n}"),
        None => counts.clone(),
    };
    vec![
        condition(
            READY,
            !invalid && all_ready,
            if invalid {
                "InvalidSpec"
            } else if all_ready {
                "AllReplicasReady"
            } else {
                "ReplicasNotReady"
            },
            ready_message,
            obs,
            previous,
            now,
        ),
        condition(
            PROGRESSING,
            !invalid && !obs.paused && (!all_ready || obs.rolling.is_some()),
            if obs.paused {
                "Paused"
            } else if obs.rolling.is_some() && !invalid {
                "RollingRestart"
            } else if all_ready {
                "Stable"
            } else {
                "WaitingForReplicas"
            },
            match &obs.rolling {
                Some(r) if !invalid && !obs.paused => format!("{counts}; {r}"),
                _ => counts,
            },
            obs,
            previous,
            now,
        ),
        condition(
            DEGRADED,
            invalid || obs.promotion.is_some() || obs.storage.is_some(),
            if invalid {
                "InvalidSpec"
            } else if obs.promotion.is_some() {
                "PromotionRefused"
            } else if obs.storage.is_some() {
                "VolumeExpansionFailed"
            } else {
                "SpecValid"
            },
            if invalid {
                obs.problems.join("; ")
            } else {
                [obs.promotion.as_deref(), obs.storage.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; ")
            },
            obs,
            previous,
            now,
        ),
        condition(
            PAUSED,
            obs.paused,
            if obs.paused {
                "PauseAnnotation"
            } else {
                "NotPaused"
            },
            if obs.paused {
                format!("annotation {} is set", crate::controller::PAUSE_ANNOTATION)
            } else {
                String::new()
            },
            obs,
            previous,
            now,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("timestamp"))
    }

    fn get<'a>(c: &'a [Condition], t: &str) -> &'a Condition {
        c.iter().find(|x| x.type_ == t).expect("condition present")
    }

    #[test]
    fn ready_when_all_replicas_ready() {
        let obs = Observation {
            generation: Some(3),
            desired_replicas: 3,
            ready_replicas: 3,
            ..Default::default()
        };
        let c = conditions(&obs, &[], &at(10));
        assert_eq!(get(&c, READY).status, "True");
        assert_eq!(get(&c, PROGRESSING).status, "False");
        assert_eq!(get(&c, DEGRADED).status, "False");
        assert_eq!(get(&c, PAUSED).status, "False");
        assert!(c.iter().all(|x| x.observed_generation == Some(3)));
    }

    #[test]
    fn progressing_then_ready_keeps_transition_times() {
        let mut obs = Observation {
            generation: Some(1),
            desired_replicas: 3,
            ready_replicas: 1,
            ..Default::default()
        };
        let first = conditions(&obs, &[], &at(10));
        assert_eq!(get(&first, PROGRESSING).status, "True");
        assert_eq!(get(&first, READY).message, "1/3 replicas ready");
        let again = conditions(&obs, &first, &at(20));
        assert_eq!(get(&again, READY).last_transition_time, at(10));
        obs.ready_replicas = 3;
        let done = conditions(&obs, &again, &at(30));
        assert_eq!(get(&done, READY).status, "True");
        assert_eq!(get(&done, READY).last_transition_time, at(30));
        assert_eq!(get(&done, DEGRADED).last_transition_time, at(10));
    }

    #[test]
    fn invalid_spec_is_degraded_and_not_ready() {
        let obs = Observation {
            desired_replicas: 2,
            ready_replicas: 2,
            problems: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let c = conditions(&obs, &[], &at(1));
        assert_eq!(get(&c, DEGRADED).status, "True");
        assert_eq!(get(&c, DEGRADED).message, "a; b");
        assert_eq!(get(&c, READY).status, "False");
        assert_eq!(get(&c, PROGRESSING).status, "False");
    }

    #[test]
    fn a_refused_promotion_is_degraded_but_still_ready() {
        let obs = Observation {
            desired_replicas: 2,
            ready_replicas: 2,
            promotion: Some("promotion of g-1 refused: g-1 is SLAVE".into()),
            ..Default::default()
        };
        let c = conditions(&obs, &[], &at(1));
        assert_eq!(get(&c, DEGRADED).status, "True");
        assert_eq!(get(&c, DEGRADED).reason, "PromotionRefused");
        assert_eq!(get(&c, READY).status, "True");
    }

    #[test]
    fn refused_volume_growth_is_degraded_but_still_ready() {
        let obs = Observation {
            desired_replicas: 2,
            ready_replicas: 2,
            storage: Some("volume expansion of data-g-0 to 2Gi refused: forbidden".into()),
            ..Default::default()
        };
        let c = conditions(&obs, &[], &at(1));
        let d = get(&c, DEGRADED);
        assert_eq!(d.status, "True");
        assert_eq!(d.reason, "VolumeExpansionFailed");
        assert_eq!(
            d.message,
            "volume expansion of data-g-0 to 2Gi refused: forbidden"
        );
        assert_eq!(get(&c, READY).status, "True");
    }

    #[test]
    fn a_roll_is_progressing_even_with_every_replica_ready() {
        let obs = Observation {
            desired_replicas: 3,
            ready_replicas: 3,
            rolling: Some("rolling restart 1/3 pods current: restarted g-1".into()),
            ..Default::default()
        };
        let c = conditions(&obs, &[], &at(1));
        let p = get(&c, PROGRESSING);
        assert_eq!(p.status, "True");
        assert_eq!(p.reason, "RollingRestart");
        assert_eq!(
            p.message,
            "3/3 replicas ready; rolling restart 1/3 pods current: restarted g-1"
        );
        assert_eq!(get(&c, READY).status, "True");
    }

    #[test]
    fn paused_is_reported() {
        let obs = Observation {
            desired_replicas: 3,
            ready_replicas: 0,
            paused: true,
            ..Default::default()
        };
        let c = conditions(&obs, &[], &at(1));
        assert_eq!(get(&c, PAUSED).status, "True");
        assert_eq!(get(&c, PROGRESSING).reason, "Paused");
    }
}
