//! How a task gets its capacity: a launch type, or a capacity-provider strategy (from
//! `--capacity-provider`, or copied from a service), and why a job that writes leaves
//! Fargate Spot out of it.

/// The launch type used when no capacity provider is named.
pub(crate) const DEFAULT_LAUNCH_TYPE: &str = "FARGATE";

/// Fargate's Spot capacity provider.
const SPOT: &str = "FARGATE_SPOT";

/// How the task gets its capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capacity {
    /// A launch type (`FARGATE`).
    LaunchType(String),
    /// A capacity-provider strategy: one provider with weight 1 from
    /// `--capacity-provider`, or a service's whole strategy.
    Strategy(Vec<CapacityShare>),
}

/// One item of a capacity-provider strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityShare {
    /// The capacity provider (`FARGATE_SPOT`).
    pub provider: String,
    /// Its relative share.
    pub weight: i32,
    /// How many tasks it takes first.
    pub base: i32,
}

impl Capacity {
    /// One provider with weight 1, as `--capacity-provider` asks.
    pub(crate) fn provider(name: &str) -> Self {
        Capacity::Strategy(vec![CapacityShare {
            provider: name.to_string(),
            weight: 1,
            base: 0,
        }])
    }

    /// The capacity a job runs on. A job that writes leaves FARGATE_SPOT out unless
    /// Spot is allowed: a Spot interruption would stop it midway. The strategy keeps its
    /// other providers, or becomes FARGATE alone when Spot was all it named.
    pub(crate) fn for_job(&self, writes: bool, allow_spot: bool) -> Capacity {
        match self {
            Capacity::Strategy(shares)
                if writes && !allow_spot && shares.iter().any(|s| s.provider == SPOT) =>
            {
                let on_demand: Vec<CapacityShare> = shares
                    .iter()
                    .filter(|s| s.provider != SPOT)
                    .cloned()
                    .collect();
                if on_demand.is_empty() {
                    Capacity::provider(DEFAULT_LAUNCH_TYPE)
                } else {
                    Capacity::Strategy(on_demand)
                }
            }
            other => other.clone(),
        }
    }

    /// For a person: `FARGATE`, or `FARGATE_SPOT (weight 1), FARGATE (weight 3, base 1)`.
    pub fn describe(&self) -> String {
        match self {
            Capacity::LaunchType(t) => format!("launch type {t}"),
            Capacity::Strategy(shares) => shares
                .iter()
                .map(|s| match s.base {
                    0 => format!("{} (weight {})", s.provider, s.weight),
                    base => format!("{} (weight {}, base {base})", s.provider, s.weight),
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_that_writes_leaves_spot_out_unless_allowed() {
        let share = |provider: &str, weight, base| CapacityShare {
            provider: provider.into(),
            weight,
            base,
        };
        let mixed = Capacity::Strategy(vec![share(SPOT, 3, 0), share("FARGATE", 1, 1)]);
        assert_eq!(
            mixed.for_job(true, false),
            Capacity::Strategy(vec![share("FARGATE", 1, 1)])
        );
        assert_eq!(mixed.for_job(true, true), mixed);
        assert_eq!(mixed.for_job(false, false), mixed);
        let spot = Capacity::Strategy(vec![share(SPOT, 1, 0)]);
        assert_eq!(
            spot.for_job(true, false),
            Capacity::Strategy(vec![share("FARGATE", 1, 0)])
        );
        let plain = Capacity::LaunchType("FARGATE".into());
        assert_eq!(plain.for_job(true, false), plain);
    }
}
