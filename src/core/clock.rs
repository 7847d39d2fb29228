//! The time, passed in. The broker and the store read it from the [`Clock`] they were
//! built with, so that tests can hold it still and move it; the server gives them
//! [`SystemClock`].

use std::sync::Mutex;
use std::time::Duration;

use super::Timestamp;
use crate::sync;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The system's clock, to the millisecond (what the store keeps).
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        super::now()
    }
}

/// A clock that stands still until the test moves it.
#[derive(Debug)]
pub struct TestClock(Mutex<Timestamp>);

impl TestClock {
    pub fn at(t: Timestamp) -> Self {
        TestClock(Mutex::new(t))
    }

    pub fn advance(&self, by: Duration) {
        *sync::lock(&self.0) += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *sync::lock(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_only_when_told() {
        let clock = TestClock::at(super::super::now());
        let start = clock.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!((clock.now() - start).whole_seconds(), 90);
    }
}
