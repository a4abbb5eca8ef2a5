//! What keeps the anonymous device endpoints (`/v1/auth/*`) from being a
//! lever on the backend: token-bucket rate limits per source address and
//! per serial, and refused verifications counted in memory and written to
//! the audit log as one summary entry per interval, instead of one chained
//! entry per refusal.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate: `per_second` on average, up to `burst` at once. Zero disables.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once.
    pub burst: f64,
}

impl Rate {
    /// No limit.
    pub const OFF: Self = Self {
        per_second: 0.0,
        burst: 0.0,
    };

    /// `n` per second, bursts of `2n`.
    pub fn per_second(n: f64) -> Self {
        Self {
            per_second: n,
            burst: 2.0 * n,
        }
    }

    fn off(&self) -> bool {
        self.per_second <= 0.0
    }
}

/// The limits of a [`DeviceGuard`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Per client address (a factory line or a field relay may speak for
    /// many devices).
    pub per_source: Rate,
    /// Per device serial (a device authenticates now and then).
    pub per_serial: Rate,
    /// How often the refusal counts go to the audit log.
    pub summary_every: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_source: Rate::per_second(50.0),
            per_serial: Rate::per_second(2.0),
            summary_every: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    Serial(u32),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Most buckets kept; beyond it, full (idle) buckets are dropped first.
const MAX_BUCKETS: usize = 100_000;

/// Rate limits and refusal counts for the device endpoints, shared by all
/// requests of one server (or one Lambda instance).
#[derive(Debug)]
pub struct DeviceGuard {
    limits: Limits,
    buckets: Mutex<HashMap<Key, Bucket>>,
    refusals: Mutex<(BTreeMap<&'static str, u64>, Instant)>,
}

impl Default for DeviceGuard {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl DeviceGuard {
    /// A guard with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
            refusals: Mutex::new((BTreeMap::new(), Instant::now())),
        }
    }

    /// Whether a request from `source` about `serial` may go ahead at `now`;
    /// `Err` is how long until it may.
    pub fn admit(&self, source: Option<IpAddr>, serial: u32, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            let limits = self.limits;
            buckets.retain(|k, b| {
                let rate = match k {
                    Key::Source(_) => limits.per_source,
                    Key::Serial(_) => limits.per_serial,
                };
                refilled(b, rate, now) < rate.burst
            });
        }
        let mut wanted = vec![(Key::Serial(serial), self.limits.per_serial)];
        if let Some(ip) = source {
            wanted.push((Key::Source(ip), self.limits.per_source));
        }
        // Both buckets must have a token; only then is either spent.
        let mut wait = Duration::ZERO;
        for (key, rate) in &wanted {
            if rate.off() {
                continue;
            }
            let b = buckets.entry(*key).or_insert(Bucket {
                tokens: rate.burst,
                at: now,
            });
            let tokens = refilled(b, *rate, now);
            if tokens < 1.0 {
                wait = wait.max(Duration::from_secs_f64((1.0 - tokens) / rate.per_second));
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        for (key, rate) in &wanted {
            if let (false, Some(b)) = (rate.off(), buckets.get_mut(key)) {
                b.tokens = refilled(b, *rate, now) - 1.0;
                b.at = now;
            }
        }
        Ok(())
    }

    /// Count a refused verification (`code`). When the interval since the
    /// last summary has passed, returns the counts to write to the audit log
    /// (as `code:n …`) and starts counting anew.
    pub fn count_refusal(&self, code: &'static str, now: Instant) -> Option<String> {
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        *r.0.entry(code).or_default() += 1;
        if now.duration_since(r.1) < self.limits.summary_every {
            return None;
        }
        let summary = summary_of(&r.0);
        r.0.clear();
        r.1 = now;
        Some(summary)
    }

    /// The refusals counted since the last summary, if any (to write them
    /// when the server stops).
    pub fn take_refusals(&self) -> Option<String> {
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        if r.0.is_empty() {
            return None;
        }
        let summary = summary_of(&r.0);
        r.0.clear();
        Some(summary)
    }
}

fn summary_of(counts: &BTreeMap<&'static str, u64>) -> String {
    counts
        .iter()
        .map(|(code, n)| format!("{code}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn refilled(b: &Bucket, rate: Rate, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + elapsed * rate.per_second).min(rate.burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_gets_its_burst_then_its_rate() {
        let g = DeviceGuard::new(Limits {
            per_source: Rate::OFF,
            per_serial: Rate {
                per_second: 2.0,
                burst: 3.0,
            },
            summary_every: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(g.admit(None, 7, t0).is_ok());
        }
        let wait = g.admit(None, 7, t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(g.admit(None, 8, t0).is_ok(), "another serial has its own");
        assert!(g.admit(None, 7, t0 + Duration::from_millis(500)).is_ok());
        assert!(g.admit(None, 7, t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn a_source_is_limited_across_serials_and_a_refusal_spends_nothing() {
        let g = DeviceGuard::new(Limits {
            per_source: Rate {
                per_second: 1.0,
                burst: 2.0,
            },
            per_serial: Rate {
                per_second: 1.0,
                burst: 1.0,
            },
            summary_every: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(g.admit(Some(ip), 1, t0).is_ok());
        // Serial 1 is spent: refused, and the source keeps its token.
        assert!(g.admit(Some(ip), 1, t0).is_err());
        assert!(g.admit(Some(ip), 2, t0).is_ok());
        assert!(g.admit(Some(ip), 3, t0).is_err(), "the source is spent");
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(g.admit(Some(other), 3, t0).is_ok());
    }

    #[test]
    fn refusals_are_summed_once_per_interval() {
        let g = DeviceGuard::new(Limits {
            summary_every: Duration::from_secs(60),
            ..Limits::default()
        });
        let t0 = Instant::now();
        assert_eq!(g.count_refusal("bad_signature", t0), None);
        assert_eq!(g.count_refusal("unknown_challenge", t0), None);
        assert_eq!(g.count_refusal("bad_signature", t0), None);
        let s = g.count_refusal("replayed", t0 + Duration::from_secs(61));
        assert_eq!(
            s.as_deref(),
            Some("bad_signature:2 replayed:1 unknown_challenge:1")
        );
        assert_eq!(g.take_refusals(), None);
        g.count_refusal("expired", t0 + Duration::from_secs(62));
        assert_eq!(g.take_refusals().as_deref(), Some("expired:1"));
    }
}
