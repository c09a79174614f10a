//! Retries with exponential backoff and jitter, bounded in count and in time. What is worth
//! retrying is decided by the caller (408, 429, 5xx, resets and timeouts, per the distribution
//! spec's transient failures and what crane and oras retry); this module only waits, honouring a
//! registry's `Retry-After` (RFC 9110 §10.2.3), logs each retry on stderr with the operation, and
//! gives up when either budget is spent.

use std::time::{Duration, Instant, SystemTime};

use super::error::{ErrorKind, Exhausted};

/// How hard to try before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// No retry starts once this much time has passed since the first attempt.
    pub max_time: Duration,
    /// Delay before the first retry; doubled for each further one.
    pub initial_delay: Duration,
    /// Upper bound of one computed delay (`Retry-After` may ask for more, within `max_time`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            max_time: Duration::from_secs(300),
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Whether a failed attempt may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    No,
    Yes,
    /// At most one retry, for failures that rarely heal by waiting (a refused connection).
    Once,
    /// The registry said when (`Retry-After`).
    After(Duration),
}

/// One failed attempt.
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    pub retry: Retry,
}

impl Failure {
    pub fn fatal(kind: ErrorKind) -> Self {
        Failure {
            kind,
            retry: Retry::No,
        }
    }
}

impl RetryPolicy {
    /// Run `attempt` until it succeeds, fails for good, or the budget is spent. `what` names the
    /// operation and `place` the registry and repository, for the log lines.
    pub fn run<T>(
        &self,
        what: &str,
        place: &str,
        mut attempt: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T, (ErrorKind, Option<Exhausted>)> {
        let start = Instant::now();
        let mut jitter = Jitter::new();
        let mut tries: u32 = 0;
        loop {
            tries += 1;
            let failure = match attempt() {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let elapsed = start.elapsed();
            let spent = Some(Exhausted {
                attempts: tries,
                elapsed,
            });
            let delay = match failure.retry {
                Retry::No => return Err((failure.kind, None)),
                _ if tries > self.max_retries => return Err((failure.kind, spent)),
                Retry::Once if tries > 1 => return Err((failure.kind, spent)),
                Retry::Yes | Retry::Once => jitter.spread(self.backoff(tries)),
                Retry::After(wait) => wait,
            };
            if elapsed + delay > self.max_time {
                return Err((failure.kind, spent));
            }
            tracing::warn!(
                "retrying `{what}` at `{place}` in {:.1}s (retry {tries} of {}): {}",
                delay.as_secs_f64(),
                self.max_retries,
                short(&failure.kind),
            );
            std::thread::sleep(delay);
        }
    }

    /// The delay before retry number `n` (1-based), before jitter.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

pub(super) fn short(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::Status { status, code, .. } => match code {
            Some(code) => format!("registry answered {status} ({code})"),
            None => format!("registry answered {status}"),
        },
        ErrorKind::Network(m) => format!("network: {m}"),
        ErrorKind::Unreachable { message, .. } => message.clone(),
        ErrorKind::DigestMismatch { .. } => "content digest mismatch".to_string(),
        ErrorKind::Protocol(m) | ErrorKind::Timeout(m) => m.clone(),
        other => format!("{other:?}"),
    }
}

/// A small xorshift generator seeded from the process's random hasher keys: jitter only has to
/// keep clients from retrying in lockstep, not be unpredictable.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        Jitter(h.finish() | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A delay drawn uniformly from 80 % to 120 % of `d`.
    fn spread(&mut self, d: Duration) -> Duration {
        let unit = (self.next() % 10_001) as f64 / 10_000.0;
        d.mul_f64(0.8 + 0.4 * unit)
    }
}

/// Parse `Retry-After`: delta-seconds or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn parse_imf_fixdate(s: &str) -> Option<SystemTime> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    if parts.len() != 5 || parts[4] != "GMT" {
        return None;
    }
    let day: i64 = parts[0].parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[1])? as i64 + 1;
    let year: i64 = parts[2].parse().ok()?;
    let hms: Vec<i64> = parts[3]
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            max_time: Duration::from_secs(5),
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    fn transient() -> Failure {
        Failure {
            kind: ErrorKind::Status {
                status: 503,
                code: None,
                message: None,
            },
            retry: Retry::Yes,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(500));
        assert_eq!(p.backoff(2), Duration::from_secs(1));
        assert_eq!(p.backoff(4), Duration::from_secs(4));
        assert_eq!(p.backoff(10), Duration::from_secs(30));
        assert_eq!(p.backoff(200), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let mut j = Jitter::new();
        for _ in 0..1000 {
            let d = j.spread(Duration::from_secs(10)).as_secs_f64();
            assert!((8.0..=12.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn succeeds_after_transient_failures() {
        let mut n = 0;
        let out = quick(3).run("op", "place", || {
            n += 1;
            if n < 3 {
                Err(transient())
            } else {
                Ok(n)
            }
        });
        assert_eq!(out.unwrap(), 3);
    }

    #[test]
    fn gives_up_after_the_count_and_reports_attempts() {
        let mut n = 0;
        let (kind, spent) = quick(2)
            .run("op", "place", || -> Result<(), _> {
                n += 1;
                Err(transient())
            })
            .unwrap_err();
        assert_eq!(n, 3);
        assert!(matches!(kind, ErrorKind::Status { status: 503, .. }));
        assert_eq!(spent.unwrap().attempts, 3);
    }

    #[test]
    fn fatal_failures_are_not_retried() {
        let mut n = 0;
        let (_, spent) = quick(5)
            .run("op", "place", || -> Result<(), _> {
                n += 1;
                Err(Failure::fatal(ErrorKind::Protocol("no".into())))
            })
            .unwrap_err();
        assert_eq!((n, spent.is_none()), (1, true));
    }

    #[test]
    fn retry_after_beyond_the_time_budget_gives_up_at_once() {
        let mut n = 0;
        let (_, spent) = quick(5)
            .run("op", "place", || -> Result<(), _> {
                n += 1;
                Err(Failure {
                    kind: ErrorKind::Status {
                        status: 429,
                        code: None,
                        message: None,
                    },
                    retry: Retry::After(Duration::from_secs(3600)),
                })
            })
            .unwrap_err();
        assert_eq!(n, 1);
        assert!(spent.is_some());
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example date).
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                now + Duration::from_secs(60)
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
