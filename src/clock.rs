//! The wall clock, passed in: engines that decide on expiry (restore, diff,
//! mirror) ask a [`Clock`] instead of the system, so tests can fix the
//! instant instead of sleeping.

use std::fmt;
use std::sync::Arc;

/// A source of "now" in unix milliseconds.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(system_now_ms))
    }

    /// A clock that always says `at_ms`.
    pub fn fixed(at_ms: i64) -> Clock {
        Clock(Arc::new(move || at_ms))
    }

    /// A clock driven by any function (a test's settable instant).
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock(now = {})", self.now_ms())
    }
}

/// Unix milliseconds from the system clock (0 before 1970).
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_does_not_move() {
        let clock = Clock::fixed(42);
        assert_eq!((clock.now_ms(), clock.now_ms()), (42, 42));
        assert!(Clock::system().now_ms() > 1_600_000_000_000);
    }
}
