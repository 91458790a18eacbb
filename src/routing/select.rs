//! Chooses the deployment for an attempt: pools in the model's order; inside a pool the
//! deployment with the least in-flight work per unit of weight among those that are healthy,
//! not cooling down and not saturated. Saturation is soft: when every deployment is
//! saturated, the least loaded one still beats refusing the request.

use super::class::ClassPolicy;
use super::state::{Gauge, RoutingPolicy, Skip};
use super::upstreams::{Deployment, Pool, PoolKind};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The deployment picked for one attempt.
#[derive(Debug, Clone)]
pub struct Choice {
    pub pool: usize,
    pub deployment: Arc<Deployment>,
    /// Why the model's first pool was passed over, when it was (a spillover).
    pub spilled: Option<Skip>,
    /// Every candidate was saturated: this is the least loaded of them.
    pub saturated: bool,
}

/// How a request of `class` reads a deployment of `pool`: its class's threshold and model
/// apply to provisioned pools, the only ones with a utilization to keep.
pub fn gauge(pool: &Pool, class: &ClassPolicy) -> Gauge {
    match pool.kind {
        PoolKind::Provisioned => Gauge {
            spill_at: class.spill_at,
            bucket: !class.max_hold.is_zero(),
        },
        PoolKind::Standard => Gauge::default(),
    }
}

/// When a deployment out for a reason with no known end may be back.
const UNKNOWN_RETURN: Duration = Duration::from_secs(1);

/// Why no deployment could be chosen. It rides on the proxy's error as its cause, so the
/// answer to the client is decided from the error itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoChoice {
    /// Every deployment of the model was tried already in this request.
    AllTried,
    /// Every remaining deployment is cooling down after 429s: the soonest frees up then.
    AllThrottled(Duration),
    /// Every remaining deployment is unhealthy, ejected or at its in-flight limit: the
    /// soonest known to come back does then (an ejection or cool-down ending; one second
    /// for an in-flight limit or a failed health check, which have no known end).
    NoneUsable(Duration),
}

impl std::fmt::Display for NoChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoChoice::AllTried => "every deployment of the model was tried",
            NoChoice::AllThrottled(_) => "every deployment of the model is throttled",
            NoChoice::NoneUsable(_) => "no deployment of the model is usable",
        })
    }
}

impl std::error::Error for NoChoice {}

/// Picks a deployment from the pools `order` names (indices into `pools`, preferred first),
/// skipping those for which `tried` is true. `spin` breaks ties between equally loaded
/// deployments so that traffic rotates instead of piling on the first.
pub fn choose(
    pools: &[Pool],
    order: &[usize],
    tried: impl Fn(&Arc<Deployment>) -> bool,
    spin: u32,
    class: &ClassPolicy,
    policy: &RoutingPolicy,
    now: Instant,
) -> Result<Choice, NoChoice> {
    let mut untried = false;
    let mut first_skip: Option<Skip> = None;
    let mut soonest_cooldown: Option<Duration> = None;
    let mut only_cooldowns = true;
    let mut soonest_back: Option<Duration> = None;
    // The best soft-saturated candidate, used only if nothing better exists anywhere.
    let mut fallback: Option<(u64, usize, &Arc<Deployment>, Skip)> = None;
    for (rank, &pool_idx) in order.iter().enumerate() {
        let pool = &pools[pool_idx];
        let gauge = gauge(pool, class);
        let n = pool.deployments.len();
        let mut best: Option<(u64, &Arc<Deployment>)> = None;
        let mut pool_skip = None;
        for k in 0..n {
            let d = &pool.deployments[(k + spin as usize) % n];
            if tried(d) {
                continue;
            }
            untried = true;
            // In-flight per weight, scaled to stay integral.
            let load = u64::from(d.state.inflight()) * 1000 / u64::from(d.weight);
            match d.skip_in(pool, gauge, policy, now) {
                None => {
                    if best.is_none_or(|(b, _)| load < b) {
                        best = Some((load, d));
                    }
                }
                Some(skip) => {
                    pool_skip.get_or_insert(skip);
                    if skip == Skip::Cooldown {
                        let left = d.state.cooldown_left(now).unwrap_or_default();
                        soonest_cooldown = Some(soonest_cooldown.map_or(left, |s| s.min(left)));
                    } else {
                        only_cooldowns = false;
                    }
                    if skip.is_hard() {
                        let back = d.state.back_in(now).unwrap_or(UNKNOWN_RETURN);
                        soonest_back = Some(soonest_back.map_or(back, |s| s.min(back)));
                    } else if fallback.is_none_or(|(b, _, _, _)| load < b) {
                        fallback = Some((load, pool_idx, d, skip));
                    }
                }
            }
        }
        if let Some((_, d)) = best {
            return Ok(Choice {
                pool: pool_idx,
                deployment: d.clone(),
                spilled: if rank == 0 { None } else { first_skip },
                saturated: false,
            });
        }
        if rank == 0 {
            first_skip = pool_skip;
        }
    }
    if let Some((_, pool, d, skip)) = fallback {
        let first = order.first().copied();
        return Ok(Choice {
            pool,
            deployment: d.clone(),
            spilled: (first != Some(pool)).then_some(first_skip.unwrap_or(skip)),
            saturated: true,
        });
    }
    Err(match (untried, soonest_cooldown) {
        (false, _) => NoChoice::AllTried,
        (true, Some(wait)) if only_cooldowns => NoChoice::AllThrottled(wait),
        _ => NoChoice::NoneUsable(soonest_back.unwrap_or(UNKNOWN_RETURN)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::upstreams::PoolKind;

    /// A PTU pool (`p1`, at most one in flight) before a Standard pool (`s1`, and `s2` at
    /// weight 3).
    fn conf() -> Vec<Pool> {
        let pool = |name: &str, kind, deployments: Vec<Deployment>| Pool {
            name: name.into(),
            kind,
            spill_at_utilization: 90.0,
            hold_queue: 0,
            price: Default::default(),
            deployments: deployments.into_iter().map(Arc::new).collect(),
        };
        vec![
            pool(
                "ptu",
                PoolKind::Provisioned,
                vec![Deployment::for_test("p1", 1, Some(1))],
            ),
            pool(
                "std",
                PoolKind::Standard,
                vec![
                    Deployment::for_test("s1", 1, None),
                    Deployment::for_test("s2", 3, None),
                ],
            ),
        ]
    }

    fn pick(c: &[Pool], tried: &[Arc<Deployment>]) -> Result<Choice, NoChoice> {
        let tried = |d: &Arc<Deployment>| tried.iter().any(|t| Arc::ptr_eq(t, d));
        choose(
            c,
            &[0, 1],
            tried,
            0,
            &ClassPolicy::default(),
            &RoutingPolicy::default(),
            Instant::now(),
        )
    }

    #[test]
    fn prefers_the_first_pool_until_it_is_full() {
        let c = conf();
        let first = pick(&c, &[]).unwrap();
        assert_eq!(
            (first.deployment.name.as_str(), first.spilled),
            ("p1", None)
        );
        let _busy = first.deployment.state.enter();
        let next = pick(&c, &[]).unwrap();
        assert_eq!((next.pool, next.spilled), (1, Some(Skip::Inflight)));
    }

    #[test]
    fn skips_tried_and_unhealthy_and_reports_why() {
        let c = conf();
        let p1 = c[0].deployments[0].clone();
        let s1 = c[1].deployments[0].clone();
        let s2 = c[1].deployments[1].clone();
        s1.state.set_active_health(false);
        assert_eq!(
            pick(&c, std::slice::from_ref(&p1)).unwrap().deployment.name,
            "s2"
        );
        assert_eq!(
            pick(&c, &[p1.clone(), s2.clone()]).unwrap_err(),
            NoChoice::NoneUsable(UNKNOWN_RETURN),
            "a failed health check has no known end"
        );
        assert_eq!(pick(&c, &[p1, s1, s2]).unwrap_err(), NoChoice::AllTried);
    }

    #[test]
    fn weight_and_load_spread_traffic() {
        let c = conf();
        let p1 = c[0].deployments[0].clone();
        let s1 = &c[1].deployments[0];
        let s2 = &c[1].deployments[1];
        let _a = s2.state.enter();
        let _b = s2.state.enter();
        // s2 carries 2 at weight 3 (667) against s1's 0: s1 wins.
        assert_eq!(
            pick(&c, std::slice::from_ref(&p1)).unwrap().deployment.name,
            "s1"
        );
        let _c = s1.state.enter();
        // s1 now 1000 per unit against s2's 667: s2 wins.
        assert_eq!(pick(&c, &[p1]).unwrap().deployment.name, "s2");
    }

    #[test]
    fn cooldowns_everywhere_say_when_to_come_back() {
        let c = conf();
        let p = RoutingPolicy::default();
        let now = Instant::now();
        for d in c.iter().flat_map(|p| &p.deployments) {
            d.state.on_throttled(Duration::from_secs(5), &p, now);
        }
        c[1].deployments[1]
            .state
            .on_throttled(Duration::from_secs(2), &p, now);
        match pick(&c, &[]) {
            Err(NoChoice::AllThrottled(wait)) => assert!(wait <= Duration::from_secs(5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn saturation_spills_but_a_saturated_pool_beats_none() {
        let c = conf();
        let p = RoutingPolicy::default();
        let now = Instant::now();
        c[0].deployments[0]
            .state
            .on_utilization(95.0, 90.0, &p, now);
        let spill = pick(&c, &[]).unwrap();
        assert_eq!((spill.pool, spill.spilled), (1, Some(Skip::Utilization)));
        for d in &c[1].deployments {
            d.state.on_utilization(100.0, 100.0, &p, now);
        }
        let fallback = pick(&c, &[]).unwrap();
        assert_eq!(
            fallback.deployment.name, "p1",
            "least loaded saturated deployment"
        );
    }
}
