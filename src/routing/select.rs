//! Chooses the deployment for an attempt: pools in the model's order, and inside a pool the
//! usable deployment with the least in-flight work per unit of weight.

use crate::config::{Config, Deployment, Model};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// The deployment picked for one attempt, and the pool it came from.
#[derive(Debug, Clone)]
pub struct Choice {
    pub pool: usize,
    pub deployment: Arc<Deployment>,
}

/// Why no deployment could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoChoice {
    /// Every deployment of the model was tried already in this request.
    AllTried,
    /// Deployments remain, but all are unhealthy or at their limits.
    NoneUsable,
}

fn usable(d: &Deployment) -> bool {
    d.state.is_healthy()
        && d.max_inflight
            .is_none_or(|max| d.state.inflight.load(Relaxed) < max)
}

/// Picks a deployment for `model`, skipping those in `tried` (by name). `spin` breaks ties
/// between equally loaded deployments so that traffic rotates instead of piling on the first.
pub fn choose(
    config: &Config,
    model: &Model,
    tried: &[Arc<Deployment>],
    spin: u32,
) -> Result<Choice, NoChoice> {
    let mut untried = false;
    for &pool_idx in &model.pools {
        let pool = &config.pools[pool_idx];
        let n = pool.deployments.len();
        let mut best: Option<(u64, &Arc<Deployment>)> = None;
        for k in 0..n {
            let d = &pool.deployments[(k + spin as usize) % n];
            if tried.iter().any(|t| Arc::ptr_eq(t, d)) {
                continue;
            }
            untried = true;
            if !usable(d) {
                continue;
            }
            // In-flight per weight, scaled to stay integral.
            let load = (d.state.inflight.load(Relaxed) as u64 * 1000) / d.weight as u64;
            if best.is_none_or(|(b, _)| load < b) {
                best = Some((load, d));
            }
        }
        if let Some((_, d)) = best {
            return Ok(Choice {
                pool: pool_idx,
                deployment: d.clone(),
            });
        }
    }
    Err(if untried {
        NoChoice::NoneUsable
    } else {
        NoChoice::AllTried
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    const CONF: &str = r#"
listen: 127.0.0.1:1
tenants: [{name: t, api_keys: [k]}]
pools:
  - name: ptu
    kind: provisioned
    max_inflight: 1
    deployments:
      - {name: p1, endpoint: "http://127.0.0.1:2", deployment: m, api_key: k}
  - name: std
    kind: standard
    deployments:
      - {name: s1, endpoint: "http://127.0.0.1:3", deployment: m, api_key: k}
      - {name: s2, endpoint: "http://127.0.0.1:4", deployment: m, api_key: k, weight: 3}
models:
  m: [ptu, std]
"#;

    fn conf() -> Config {
        config::parse(CONF, Path::new("t"), &|_| None, None)
            .unwrap()
            .config
    }

    #[test]
    fn prefers_the_first_pool_until_it_is_full() {
        let c = conf();
        let m = c.model("m").unwrap();
        let first = choose(&c, m, &[], 0).unwrap();
        assert_eq!(first.deployment.name, "p1");
        let _busy = first.deployment.state.enter();
        let next = choose(&c, m, &[], 0).unwrap();
        assert_eq!(next.pool, 1);
    }

    #[test]
    fn skips_tried_and_unhealthy_and_reports_why() {
        let c = conf();
        let m = c.model("m").unwrap();
        let p1 = c.pools[0].deployments[0].clone();
        let s1 = c.pools[1].deployments[0].clone();
        let s2 = c.pools[1].deployments[1].clone();
        s1.state.healthy.store(false, Relaxed);
        let pick = choose(&c, m, std::slice::from_ref(&p1), 0).unwrap();
        assert_eq!(pick.deployment.name, "s2");
        assert_eq!(
            choose(&c, m, &[p1.clone(), s2.clone()], 0).unwrap_err(),
            NoChoice::NoneUsable
        );
        assert_eq!(
            choose(&c, m, &[p1, s1, s2], 0).unwrap_err(),
            NoChoice::AllTried
        );
    }

    #[test]
    fn weight_and_load_spread_traffic() {
        let c = conf();
        let m = c.model("m").unwrap();
        let p1 = c.pools[0].deployments[0].clone();
        let s1 = &c.pools[1].deployments[0];
        let s2 = &c.pools[1].deployments[1];
        let _a = s2.state.enter();
        let _b = s2.state.enter();
        // s2 carries 2 at weight 3 (667) against s1's 0: s1 wins.
        assert_eq!(
            choose(&c, m, std::slice::from_ref(&p1), 0)
                .unwrap()
                .deployment
                .name,
            "s1"
        );
        let _c = s1.state.enter();
        // s1 now 1000 per unit against s2's 667: s2 wins.
        assert_eq!(choose(&c, m, &[p1], 0).unwrap().deployment.name, "s2");
    }
}
