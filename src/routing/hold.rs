//! Hold or spill: when a request's first pool is saturated, how long until one of its
//! deployments has room, and the bounded queue, per deployment, of the requests waiting for
//! it: ordered by class then arrival, and only its head may take the room when it comes.
//!
//! The wait itself (a timer, the queue's wake-up and the client's disconnect, raced on the
//! request's own task) is the proxy's (`proxy::hold`); this is the plain part.

use super::class::Class;
use super::state::{Gauge, RoutingPolicy, Skip};
use super::upstreams::{Deployment, Pool};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a request went past its first pool, when that pool was saturated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpillReason {
    /// Over the threshold, and the request could not wait (no allowance, or no estimate).
    Threshold,
    /// The estimated wait was longer than the request's allowance, or the wait ran out.
    Deadline,
    /// The deployment's queue of held requests was full.
    QueueFull,
    /// Under the pool's threshold but over the class's own, and the class may not wait: it
    /// leaves early. (A class that may wait waits for its own threshold instead.)
    Class,
}

impl SpillReason {
    pub const ALL: [SpillReason; 4] = [
        SpillReason::Threshold,
        SpillReason::Deadline,
        SpillReason::QueueFull,
        SpillReason::Class,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SpillReason::Threshold => "threshold",
            SpillReason::Deadline => "deadline",
            SpillReason::QueueFull => "queue-full",
            SpillReason::Class => "class",
        }
    }
}

/// A request refused because every pool is saturated and its class is shed at this level;
/// it rides on the proxy's error as its cause. The duration is when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed(pub Duration);

impl std::fmt::Display for Shed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("every deployment is saturated and this class is shed first")
    }
}

impl std::error::Error for Shed {}

/// What to do with a request whose first pool is saturated.
#[derive(Debug)]
pub enum Plan {
    /// Wait for `deployment`, which should have room in `wait`.
    Hold {
        deployment: Arc<Deployment>,
        wait: Duration,
    },
    Spill(SpillReason),
}

/// The first pool's deployment that should have room soonest for a request of class
/// `class` read through `gauge`, and whether that fits `allowance`. Only saturation is
/// waited for: a cool-down ends when the 429 said, the leaky-bucket model drains at the
/// deployment's capacity, an in-flight slot frees when a request ends; an unhealthy or
/// ejected deployment, or the latch of today's gauge, gives no time to wait for.
pub fn plan(
    pool: &Pool,
    class: Class,
    gauge: Gauge,
    allowance: Duration,
    policy: &RoutingPolicy,
    now: Instant,
) -> Plan {
    let spill_at = gauge.spill_at.unwrap_or(pool.spill_at_utilization);
    let mut best: Option<(Duration, &Arc<Deployment>)> = None;
    for d in &pool.deployments {
        let s = &d.state;
        let wait = match d.skip_in(pool, gauge, policy, now) {
            None => Some(Duration::ZERO),
            Some(Skip::Cooldown) => s.cooldown_left(now).map(|c| {
                // Once the cool-down ends the bucket must have drained too.
                c.max(s.level_time_to(spill_at, s.hold.ahead_of(class), now))
            }),
            Some(Skip::Inflight) => Some(Duration::ZERO),
            Some(Skip::Predicted) if gauge.bucket => {
                Some(s.level_time_to(spill_at, s.hold.ahead_of(class), now))
            }
            Some(_) => None,
        };
        if let Some(wait) = wait {
            if best.is_none_or(|(b, _)| wait < b) {
                best = Some((wait, d));
            }
        }
    }
    match best {
        None => Plan::Spill(SpillReason::Threshold),
        Some((wait, _)) if wait > allowance => Plan::Spill(SpillReason::Deadline),
        Some((wait, d)) => Plan::Hold {
            deployment: d.clone(),
            wait,
        },
    }
}

/// How loaded a deployment is, in percent, by whatever it knows: the fresh reading, the
/// minute's window against its capacity, the leaky-bucket model. For shedding, which only
/// happens when everything is saturated, the highest is the honest one.
pub fn load_percent(d: &Deployment, policy: &RoutingPolicy, now: Instant) -> f64 {
    let s = &d.state;
    let predicted = d
        .capacity_tpm
        .map_or(0.0, |cap| s.predicted_utilization(cap, now));
    s.utilization(policy, now)
        .unwrap_or(0.0)
        .max(predicted)
        .max(s.level_percent(now))
}

/// The queue of one deployment's held requests.
#[derive(Debug, Default)]
pub struct HoldQueue(Arc<Queue>);

#[derive(Debug, Default)]
struct Queue {
    waiting: Mutex<BTreeMap<(Class, u64), Waiter>>,
    /// The map's length, read without the lock by the request path's `wake`.
    len: AtomicUsize,
    arrivals: AtomicU64,
}

#[derive(Debug)]
struct Waiter {
    tokens: u64,
    notify: Arc<Notify>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Class, u64), Waiter>> {
        // A panic while holding this lock leaves a consistent map: every change is one call.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake_head(map: &BTreeMap<(Class, u64), Waiter>) {
        if let Some(w) = map.values().next() {
            w.notify.notify_one();
        }
    }
}

impl HoldQueue {
    /// Joins the queue with `tokens` (the request's estimate), unless it holds `max`
    /// requests already: a full queue spills rather than grows.
    pub fn join(&self, class: Class, tokens: u64, max: usize) -> Option<Ticket> {
        let key = (class, self.0.arrivals.fetch_add(1, Relaxed));
        let notify = Arc::new(Notify::new());
        let mut map = self.0.lock();
        if map.len() >= max {
            return None;
        }
        map.insert(
            key,
            Waiter {
                tokens,
                notify: notify.clone(),
            },
        );
        self.0.len.store(map.len(), Relaxed);
        Some(Ticket {
            queue: self.0.clone(),
            key,
            notify,
        })
    }

    /// Requests held now.
    pub fn len(&self) -> usize {
        self.0.len.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens of the requests a new arrival of `class` would wait behind.
    pub fn ahead_of(&self, class: Class) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let map = self.0.lock();
        map.range(..(class, u64::MAX)).map(|(_, w)| w.tokens).sum()
    }

    /// Something changed (a request ended, a reading came): the head looks again. One load
    /// on the request path when nobody waits.
    pub fn wake(&self) {
        if !self.is_empty() {
            Queue::wake_head(&self.0.lock());
        }
    }
}

/// A place in a deployment's queue. Dropping it leaves the queue, however the wait ended
/// (served, spilled, the client gone), and lets the next in line look.
#[derive(Debug)]
pub struct Ticket {
    queue: Arc<Queue>,
    key: (Class, u64),
    notify: Arc<Notify>,
}

impl Ticket {
    /// Whether no one is ahead of this request.
    pub fn is_head(&self) -> bool {
        self.queue.lock().keys().next() == Some(&self.key)
    }

    /// Waits for a wake-up meant for this request (a permit given while it was not waiting
    /// is kept, so none is lost).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut map = self.queue.lock();
        let was_head = map.keys().next() == Some(&self.key);
        map.remove(&self.key);
        self.queue.len.store(map.len(), Relaxed);
        if was_head {
            Queue::wake_head(&map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::upstreams::PoolKind;

    fn ptu(capacity: u64) -> Pool {
        let mut d = Deployment::for_test("p1", 1, None);
        d.capacity_tpm = Some(capacity);
        d.state.set_capacity(Some(capacity));
        Pool {
            name: "ptu".into(),
            kind: PoolKind::Provisioned,
            spill_at_utilization: 90.0,
            hold_queue: 2,
            price: Default::default(),
            deployments: vec![Arc::new(d)],
        }
    }

    const HELD: Gauge = Gauge {
        spill_at: None,
        bucket: true,
    };

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_the_drain_and_the_allowance_decides() {
        let pool = ptu(60_000);
        let p = RoutingPolicy::default();
        let now = Instant::now();
        // 95% of a 60,000 TPM deployment: 5 points over 90% drain in 3 s.
        let _lease = pool.deployments[0].state.lease(57_000, now);
        match plan(&pool, Class::Batch, HELD, Duration::from_secs(20), &p, now) {
            Plan::Hold { wait, .. } => assert_eq!(wait, Duration::from_secs(3)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan(&pool, Class::Batch, HELD, Duration::from_secs(1), &p, now),
            Plan::Spill(SpillReason::Deadline)
        ));
        // Today's gauge has no drain to wait for.
        pool.deployments[0]
            .state
            .on_utilization(95.0, 90.0, &p, now);
        assert!(matches!(
            plan(
                &pool,
                Class::Batch,
                Gauge::default(),
                Duration::from_secs(20),
                &p,
                now
            ),
            Plan::Spill(SpillReason::Threshold)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_queued_ahead_lengthen_the_wait_by_class() {
        let pool = ptu(60_000);
        let p = RoutingPolicy::default();
        let now = Instant::now();
        let q = &pool.deployments[0].state.hold;
        let _lease = pool.deployments[0].state.lease(57_000, now);
        let _b = q.join(Class::Batch, 2_000, 8).unwrap();
        let wait = |class| match plan(&pool, class, HELD, Duration::from_secs(60), &p, now) {
            Plan::Hold { wait, .. } => wait,
            other => panic!("{other:?}"),
        };
        // Interactive goes before the batch request; a second batch request after it.
        assert_eq!(wait(Class::Interactive), Duration::from_secs(3));
        assert_eq!(wait(Class::Batch), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_queue_orders_by_class_then_arrival_and_is_bounded() {
        let q = HoldQueue::default();
        let b1 = q.join(Class::Batch, 10, 3).unwrap();
        let b2 = q.join(Class::Batch, 10, 3).unwrap();
        assert!(b1.is_head());
        let i = q.join(Class::Interactive, 10, 3).unwrap();
        assert!(i.is_head() && !b1.is_head());
        assert!(q.join(Class::Interactive, 10, 3).is_none(), "full");
        assert_eq!(q.len(), 3);
        drop(i);
        // The new head was told.
        b1.notified().await;
        assert!(b1.is_head());
        drop(b1);
        drop(b2);
        assert!(q.is_empty());
        assert_eq!(q.ahead_of(Class::Batch), 0);
    }
}
