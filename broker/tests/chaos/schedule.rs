//! Seeded fault schedules for the Raft chaos drills. Pure: a seed and the fabric's abilities
//! give the same list of faults every time, so a failing run is replayed by its seed.

use std::time::Duration;

/// SplitMix64: small, fast, and the same sequence on every platform for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// A random subset of `0..n` with exactly `k` members, sorted.
    pub fn subset(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + self.below((n - i) as u64) as usize;
            all.swap(i, j);
        }
        let mut picked: Vec<usize> = all.into_iter().take(k.min(n)).collect();
        picked.sort_unstable();
        picked
    }
}

/// Which replica a fault hits, resolved when the schedule runs (the leader is only known then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Leader,
    /// The `n`-th follower (modulo the followers there are).
    Follower(usize),
}

/// One fault, held for [`Schedule::hold`] and then healed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The leader cannot reach the other replicas nor they it (clients still reach it).
    IsolateLeader,
    /// A partition: the replicas in `minority` (by target) against the rest.
    Split { minority: Vec<Target> },
    /// Packets between replicas are dropped at random with this probability (percent).
    Loss { percent: u32 },
    /// Every replica's link is slowed (netem delay where the kernel has it, else a rate limit).
    Slow,
    /// SIGKILL the target, restart it after the hold.
    Kill(Target),
    /// SIGKILL the target `times` times in a row, restarting it each time after a short pause.
    KillLoop { target: Target, times: u32 },
    /// SIGSTOP the target, SIGCONT after the hold: a replica frozen mid-flight, as if partitioned
    /// from everyone (peers and clients), which then resumes with stale state.
    Freeze(Target),
}

/// A fault and how long it is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub fault: Fault,
    pub hold: Duration,
}

/// What a fabric can do: processes on loopback can only be killed and frozen; replicas in
/// network namespaces can also be partitioned, and lose or delay packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abilities {
    pub replicas: usize,
    pub partitions: bool,
}

/// `count` schedules drawn from `seed`.
pub fn schedules(seed: u64, count: usize, abilities: Abilities) -> Vec<Schedule> {
    let mut rng = Rng::new(seed);
    let n = abilities.replicas;
    let followers = n - 1;
    (0..count)
        .map(|_| {
            let target = |rng: &mut Rng| {
                if rng.below(2) == 0 {
                    Target::Leader
                } else {
                    Target::Follower(rng.below(followers as u64) as usize)
                }
            };
            let kinds = if abilities.partitions { 7 } else { 3 };
            let fault = match rng.below(kinds) {
                0 => Fault::Kill(target(&mut rng)),
                1 => Fault::KillLoop {
                    target: target(&mut rng),
                    times: rng.between(2, 4) as u32,
                },
                2 => Fault::Freeze(target(&mut rng)),
                3 => Fault::IsolateLeader,
                4 => {
                    // A minority (with or without the leader) against the majority; the
                    // minority side is the one that changes, so heal always restores a majority.
                    let size = rng.between(1, ((n - 1) / 2) as u64) as usize;
                    let with_leader = rng.below(2) == 0;
                    let mut minority = Vec::new();
                    if with_leader {
                        minority.push(Target::Leader);
                    }
                    for f in rng.subset(followers, size - usize::from(with_leader)) {
                        minority.push(Target::Follower(f));
                    }
                    if minority.is_empty() {
                        minority.push(Target::Follower(0));
                    }
                    Fault::Split { minority }
                }
                5 => Fault::Loss {
                    percent: rng.between(10, 40) as u32,
                },
                _ => Fault::Slow,
            };
            Schedule {
                fault,
                hold: Duration::from_millis(rng.between(1_000, 4_000)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedules_every_time() {
        let abilities = Abilities {
            replicas: 3,
            partitions: true,
        };
        assert_eq!(schedules(42, 60, abilities), schedules(42, 60, abilities));
        assert_ne!(schedules(42, 60, abilities), schedules(43, 60, abilities));
    }

    #[test]
    fn loopback_schedules_only_kill_and_freeze() {
        let s = schedules(
            1,
            200,
            Abilities {
                replicas: 3,
                partitions: false,
            },
        );
        assert!(s.iter().all(|s| matches!(
            s.fault,
            Fault::Kill(_) | Fault::KillLoop { .. } | Fault::Freeze(_)
        )));
        assert!(s.iter().any(|s| matches!(s.fault, Fault::Freeze(_))));
    }

    #[test]
    fn every_kind_appears_and_splits_stay_minorities() {
        for replicas in [3, 5] {
            let s = schedules(
                7,
                500,
                Abilities {
                    replicas,
                    partitions: true,
                },
            );
            for kind in 0..7 {
                assert!(
                    s.iter().any(|s| kind_of(&s.fault) == kind),
                    "kind {kind} drawn"
                );
            }
            for sched in &s {
                if let Fault::Split { minority } = &sched.fault {
                    assert!(!minority.is_empty());
                    assert!(minority.len() <= (replicas - 1) / 2, "{minority:?}");
                }
                assert!(sched.hold >= Duration::from_secs(1));
                assert!(sched.hold <= Duration::from_secs(4));
            }
        }
    }

    fn kind_of(f: &Fault) -> u32 {
        match f {
            Fault::Kill(_) => 0,
            Fault::KillLoop { .. } => 1,
            Fault::Freeze(_) => 2,
            Fault::IsolateLeader => 3,
            Fault::Split { .. } => 4,
            Fault::Loss { .. } => 5,
            Fault::Slow => 6,
        }
    }

    #[test]
    fn subsets_are_distinct_and_in_range() {
        let mut rng = Rng::new(5);
        for _ in 0..100 {
            let s = rng.subset(4, 2);
            assert_eq!(s.len(), 2);
            assert!(s[0] < s[1] && s[1] < 4);
        }
    }
}
