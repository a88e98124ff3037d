//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas can run and
//! only one reconciles. Optimistic concurrency (resourceVersion) settles races between
//! candidates; the decision itself is a pure function.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds a live lease: take it over.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a live lease.
    Wait(String),
}

/// What to do with a lease seen at `now`. An expired lease (renewTime + duration passed) or
/// one without holder is free.
pub fn decide(now: Timestamp, spec: Option<&LeaseSpec>, me: &str) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let expired = match &spec.renew_time {
        // A renew time too far in the future to add to is not expired.
        Some(MicroTime(t)) => t
            .saturating_add(SignedDuration::from_secs(secs))
            .is_ok_and(|deadline| now > deadline),
        None => true,
    };
    if expired {
        Decision::Acquire
    } else {
        Decision::Wait(holder.to_owned())
    }
}

#[derive(Debug, Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, lease_duration: Duration) -> Self {
        LeaderElector {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
        }
    }

    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// One attempt to acquire or renew. `Ok(true)` while we lead; losing a race is
    /// `Ok(false)`, not an error.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let secs = i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            now,
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
        );
        let result = match (decision, current) {
            (Decision::Wait(_), _) => return Ok(false),
            (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (decision, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if decision == Decision::Acquire {
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.holder_identity = Some(self.identity.clone());
                spec.lease_duration_seconds = Some(secs);
                spec.renew_time = Some(MicroTime(now));
                // replace carries metadata.resourceVersion: a concurrent writer makes it 409.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Leadership ended: renewals failed for a whole lease duration, so another replica may lead.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader lease {0}: not renewed for a whole lease duration")]
pub struct LeadershipLost(pub String);

impl LeaderElector {
    /// Waits until this replica leads, retrying every `retry`.
    pub async fn acquire(&self, retry: Duration) {
        loop {
            match self.try_lead().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews every third of the lease; returns only when leadership is lost.
    pub async fn keep_leading(&self) -> LeadershipLost {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.lease_duration / 3).await;
            match self.try_lead().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => return LeadershipLost(self.name.clone()),
                Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
            }
            if last_renewed.elapsed() >= self.lease_duration {
                return LeadershipLost(self.name.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: i64, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).expect("ts"))),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(at(100), None, "a"), Decision::Acquire);
        assert_eq!(
            decide(at(100), Some(&lease("a", 99, 15)), "a"),
            Decision::Renew
        );
        assert_eq!(
            decide(at(100), Some(&lease("b", 99, 15)), "a"),
            Decision::Wait("b".into())
        );
        assert_eq!(
            decide(at(115), Some(&lease("b", 100, 15)), "a"),
            Decision::Wait("b".into())
        );
        assert_eq!(
            decide(at(116), Some(&lease("b", 100, 15)), "a"),
            Decision::Acquire
        );
        assert_eq!(
            decide(at(100), Some(&lease("", 100, 15)), "a"),
            Decision::Acquire
        );
    }
}
