//! A backend's last active health check, for `/status`: when it ran, how long it took and
//! why it failed. Written once per check (rare), so a small lock is enough.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One finished health check.
#[derive(Debug, Clone, PartialEq)]
pub struct LastCheck {
    /// When it started, in seconds since the Unix epoch.
    pub at_unix: f64,
    /// How long it took.
    pub duration: Duration,
    /// Why it failed; `None` when it passed.
    pub error: Option<String>,
}

impl LastCheck {
    /// A check that started at `started` and took `duration`.
    pub fn new(started: SystemTime, duration: Duration, error: Option<String>) -> Self {
        LastCheck {
            at_unix: started
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            duration,
            error,
        }
    }
}

/// The last check of one backend, if any ran since it took its slot.
#[derive(Debug, Default)]
pub struct CheckRecord(Mutex<Option<LastCheck>>);

impl CheckRecord {
    /// Remember `check` as the last one.
    pub fn set(&self, check: LastCheck) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(check);
    }

    /// The last check.
    pub fn get(&self) -> Option<LastCheck> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forget it (the slot goes to another backend).
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_check_until_cleared() {
        let r = CheckRecord::default();
        assert_eq!(r.get(), None);
        let at = UNIX_EPOCH + Duration::from_millis(1_500);
        r.set(LastCheck::new(at, Duration::from_millis(3), None));
        r.set(LastCheck::new(
            at,
            Duration::from_millis(4),
            Some("refused".into()),
        ));
        let last = r.get().expect("a check");
        assert_eq!(last.at_unix, 1.5);
        assert_eq!(last.duration, Duration::from_millis(4));
        assert_eq!(last.error.as_deref(), Some("refused"));
        r.clear();
        assert_eq!(r.get(), None);
    }
}
