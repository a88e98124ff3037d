//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas can run and
//! only one reconciles. Optimistic concurrency (resourceVersion) settles races between
//! candidates; the decision itself is a pure function.

use std::future::Future;
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

/// How a leader keeps its lease, after client-go's leader election: it renews every
/// `retry_period` and gives up leadership once no renewal succeeded for `renew_deadline`,
/// which is shorter than `lease_duration`, so an old leader has stopped reconciling before
/// another replica can see the lease expire and take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Timing {
    /// client-go's proportions (15 s lease, 10 s renew deadline, 2 s retry) for any lease
    /// duration.
    pub fn for_lease(lease_duration: Duration) -> Self {
        Timing {
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: lease_duration * 2 / 15,
        }
    }

    /// The order the guarantee needs: retry < renew deadline < lease duration.
    pub fn check(&self) -> Result<(), String> {
        if self.retry_period.is_zero()
            || self.retry_period >= self.renew_deadline
            || self.renew_deadline >= self.lease_duration
        {
            return Err(format!(
                "leader election needs 0 < retry period ({:?}) < renew deadline ({:?}) < lease \
                 duration ({:?})",
                self.retry_period, self.renew_deadline, self.lease_duration
            ));
        }
        Ok(())
    }
}

/// Why [`renew_until_lost`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossReason {
    /// Another replica holds the lease.
    TakenOver,
    /// No renewal succeeded within the renew deadline (API errors or hung requests).
    DeadlinePassed,
}

/// Renews through `attempt` (`Ok(true)`: renewed, `Ok(false)`: someone else holds the lease,
/// `Err`: the API failed) every `timing.retry_period`, starting from a renewal at
/// `renewed_at`; returns once leadership must be considered lost. An attempt still running
/// at the renew deadline is abandoned: a hung request must not stretch leadership.
pub async fn renew_until_lost<F, Fut>(
    timing: Timing,
    renewed_at: tokio::time::Instant,
    mut attempt: F,
) -> LossReason
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, String>>,
{
    let mut last_renewed = renewed_at;
    loop {
        tokio::time::sleep(timing.retry_period).await;
        let deadline = last_renewed + timing.renew_deadline;
        let started = tokio::time::Instant::now();
        if started >= deadline {
            return LossReason::DeadlinePassed;
        }
        match tokio::time::timeout_at(deadline, attempt()).await {
            // The lease says renewed at the time the request left, or later: count from then.
            Ok(Ok(true)) => last_renewed = started,
            Ok(Ok(false)) => return LossReason::TakenOver,
            Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
            Err(_) => return LossReason::DeadlinePassed,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, lease_duration: Duration) -> Self {
        LeaderElector {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing: Timing::for_lease(lease_duration),
        }
    }

    /// Other renew deadline and retry period than [`Timing::for_lease`]'s.
    pub fn with_timing(mut self, timing: Timing) -> Result<Self, String> {
        timing.check()?;
        self.timing = timing;
        Ok(self)
    }

    pub fn lease_duration(&self) -> Duration {
        self.timing.lease_duration
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// One attempt to acquire or renew. `Ok(true)` while we lead; losing a race is
    /// `Ok(false)`, not an error.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let secs = i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX);
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

/// Leadership ended: another replica holds the lease, or no renewal succeeded within the
/// renew deadline, so another replica may lead soon.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader lease {name}: {}", match .reason {
    LossReason::TakenOver => "another replica holds it",
    LossReason::DeadlinePassed => "not renewed within the renew deadline",
})]
pub struct LeadershipLost {
    pub name: String,
    pub reason: LossReason,
}

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

    /// Renews every retry period; returns when leadership is lost (see [`renew_until_lost`]).
    /// Call it right after [`acquire`](Self::acquire) returned.
    pub async fn keep_leading(&self) -> LeadershipLost {
        let reason = renew_until_lost(self.timing, tokio::time::Instant::now(), || async {
            self.try_lead().await.map_err(|e| e.to_string())
        })
        .await;
        LeadershipLost {
            name: self.name.clone(),
            reason,
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

    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::time::Instant;

    const CLIENT_GO: Timing = Timing {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    };

    #[test]
    fn timing_follows_client_go() {
        assert_eq!(Timing::for_lease(Duration::from_secs(15)), CLIENT_GO);
        assert!(CLIENT_GO.check().is_ok());
        let too_long = Timing {
            renew_deadline: Duration::from_secs(15),
            ..CLIENT_GO
        };
        assert!(too_long.check().is_err());
        let too_slow = Timing {
            retry_period: Duration::from_secs(10),
            ..CLIENT_GO
        };
        assert!(too_slow.check().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn failing_renewals_give_up_at_the_renew_deadline_before_the_lease_expires() {
        let start = Instant::now();
        let tries = AtomicUsize::new(0);
        let reason = renew_until_lost(CLIENT_GO, start, || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err("apiserver unreachable".to_owned())
        })
        .await;
        assert_eq!(reason, LossReason::DeadlinePassed);
        let held = start.elapsed();
        assert_eq!(held, CLIENT_GO.renew_deadline);
        assert!(held < CLIENT_GO.lease_duration);
        // Tried every retry period: at 2, 4, 6 and 8 s.
        assert_eq!(tries.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_renewal_is_abandoned_at_the_renew_deadline() {
        let start = Instant::now();
        let reason = renew_until_lost(CLIENT_GO, start, std::future::pending).await;
        assert_eq!(reason, LossReason::DeadlinePassed);
        assert_eq!(start.elapsed(), CLIENT_GO.renew_deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_counts_from_the_last_successful_renewal() {
        let start = Instant::now();
        let tries = AtomicUsize::new(0);
        // Renewals succeed at 2 and 4 s, then the API fails: the deadline is 4 + 10 s.
        let reason = renew_until_lost(CLIENT_GO, start, || async {
            if tries.fetch_add(1, Ordering::SeqCst) < 2 {
                Ok(true)
            } else {
                Err("timeout".to_owned())
            }
        })
        .await;
        assert_eq!(reason, LossReason::DeadlinePassed);
        assert_eq!(start.elapsed(), Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn another_holder_ends_leadership_at_once_and_renewals_keep_it() {
        let start = Instant::now();
        let tries = AtomicUsize::new(0);
        let reason = renew_until_lost(CLIENT_GO, start, || async {
            Ok(tries.fetch_add(1, Ordering::SeqCst) < 30)
        })
        .await;
        assert_eq!(reason, LossReason::TakenOver);
        // 30 renewals every 2 s kept it for a minute, far beyond one lease.
        assert_eq!(start.elapsed(), Duration::from_secs(62));
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
