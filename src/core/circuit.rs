//! Circuit breaking per identity provider, so that one tenant's broken IdP cannot
//! tie up the service for the others: after `threshold` failures in a row (no
//! answer, a timeout, a 5xx) the IdP is not contacted for `cooldown`, and sign-ins
//! through it fail at once with "temporarily unavailable"; then one trial request
//! decides whether it is back. Requests in flight to one IdP are capped too.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct CircuitPolicy {
    pub threshold: u32,
    pub cooldown: Duration,
    pub max_in_flight: u32,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        CircuitPolicy { threshold: 5, cooldown: Duration::from_secs(30), max_in_flight: 128 }
    }
}

#[derive(Debug, Default)]
pub struct Circuit {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
    in_flight: u32,
}

/// Whether a request may go out.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The cooldown is over: this request is the one trial.
    Trial,
    /// Not now; `retry_in` says when to try again.
    Open {
        retry_in: Duration,
    },
    /// Too many requests to this IdP are already waiting for it.
    Saturated,
}

impl Circuit {
    /// Decides on one request; an admitted request must be [`finish`](Self::finish)ed.
    pub fn admit(&mut self, now: Instant, p: &CircuitPolicy) -> Admission {
        let admission = match self.open_until {
            Some(until) if now < until => return Admission::Open { retry_in: until - now },
            Some(_) if self.trial_in_flight => return Admission::Open { retry_in: Duration::from_secs(1) },
            Some(_) => {
                self.trial_in_flight = true;
                Admission::Trial
            }
            None if self.in_flight >= p.max_in_flight => return Admission::Saturated,
            None => Admission::Allowed,
        };
        self.in_flight += 1;
        admission
    }

    /// Records how an admitted request went (`failed`: no answer, or a 5xx).
    pub fn finish(&mut self, failed: bool, now: Instant, p: &CircuitPolicy) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if !failed {
            *self = Circuit { in_flight: self.in_flight, ..Circuit::default() };
            return;
        }
        self.consecutive_failures += 1;
        if self.trial_in_flight || self.consecutive_failures >= p.threshold {
            self.open_until = Some(now + p.cooldown);
            self.trial_in_flight = false;
        }
    }

    /// An admitted request that never finished (cancelled): frees its place, and a
    /// cancelled trial lets the next request try.
    pub fn abandon(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.trial_in_flight = false;
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: CircuitPolicy = CircuitPolicy { threshold: 3, cooldown: Duration::from_secs(30), max_in_flight: 2 };

    #[test]
    fn opens_after_consecutive_failures_then_one_trial_decides() {
        let t = Instant::now();
        let mut c = Circuit::default();
        for _ in 0..2 {
            assert_eq!(c.admit(t, &P), Admission::Allowed);
            c.finish(true, t, &P);
        }
        // A success in between resets the count.
        assert_eq!(c.admit(t, &P), Admission::Allowed);
        c.finish(false, t, &P);
        for _ in 0..3 {
            assert_eq!(c.admit(t, &P), Admission::Allowed);
            c.finish(true, t, &P);
        }
        assert_eq!(c.admit(t + Duration::from_secs(10), &P), Admission::Open { retry_in: Duration::from_secs(20) });
        // After the cooldown: one trial, the others wait for its verdict.
        let later = t + Duration::from_secs(30);
        assert_eq!(c.admit(later, &P), Admission::Trial);
        assert!(matches!(c.admit(later, &P), Admission::Open { .. }));
        // A failed trial opens it again for a full cooldown.
        c.finish(true, later, &P);
        assert!(matches!(c.admit(later + Duration::from_secs(29), &P), Admission::Open { .. }));
        let again = later + Duration::from_secs(30);
        assert_eq!(c.admit(again, &P), Admission::Trial);
        c.finish(false, again, &P);
        assert_eq!(c.admit(again, &P), Admission::Allowed, "a good trial closes it");
        assert_eq!(c.consecutive_failures(), 0);
    }

    #[test]
    fn in_flight_requests_are_capped_and_cancelled_ones_free_their_place() {
        let t = Instant::now();
        let mut c = Circuit::default();
        assert_eq!(c.admit(t, &P), Admission::Allowed);
        assert_eq!(c.admit(t, &P), Admission::Allowed);
        assert_eq!(c.admit(t, &P), Admission::Saturated);
        c.abandon();
        assert_eq!(c.admit(t, &P), Admission::Allowed);
        c.finish(false, t, &P);
        c.finish(false, t, &P);
        assert_eq!(c.admit(t, &P), Admission::Allowed);
    }
}
