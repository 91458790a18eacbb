//! Priority classes: how long a tenant's requests keep a provisioned deployment, how long they
//! may wait for one, and in which order they are shed when every pool is full.

use std::time::Duration;

/// A tenant's priority class, highest first. The order is the queue order of held requests
/// and the reverse of the order in which classes give up the PTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Class {
    Interactive = 0,
    #[default]
    Standard = 1,
    Batch = 2,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Interactive, Class::Standard, Class::Batch];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Interactive => "interactive",
            Class::Standard => "standard",
            Class::Batch => "batch",
        }
    }

    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a class may do. The default of every field is today's behaviour for everyone: spill
/// at the pool's threshold, never wait, never shed while a saturated deployment can still
/// take the request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClassPolicy {
    /// Utilization (percent) of a provisioned deployment at which this class spills,
    /// replacing the pool's threshold for it. `None`: the pool's.
    pub spill_at: Option<f64>,
    /// Longest a request may be held for its first pool when that pool is saturated.
    pub max_hold: Duration,
    /// When every pool is saturated, a request of this class is refused (429) rather than
    /// sent to the least loaded saturated deployment once that deployment's utilization
    /// reaches this. `None`: never refused for saturation alone.
    pub shed_at: Option<f64>,
}

/// The policy of every class.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Classes(pub [ClassPolicy; 3]);

impl Classes {
    pub fn get(&self, class: Class) -> &ClassPolicy {
        &self.0[class.index()]
    }

    /// Whether any class may be held, so that a config without holds skips the queue.
    pub fn any_hold(&self) -> bool {
        self.0.iter().any(|c| !c.max_hold.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_is_priority() {
        for c in Class::ALL {
            assert_eq!(Class::parse(c.as_str()), Some(c));
        }
        assert_eq!(Class::parse("gold"), None);
        assert!(Class::Interactive < Class::Standard && Class::Standard < Class::Batch);
        assert_eq!(Class::default(), Class::Standard);
    }
}
