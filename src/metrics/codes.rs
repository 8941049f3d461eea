//! Counters by HTTP status code: one series per code actually seen, created on its first use
//! and then found by indexing, so counting a request is an array index and an atomic add.

use pingora_prometheus::prometheus::{IntCounter, IntCounterVec};
use std::sync::OnceLock;

/// The lowest status code with a series of its own.
const FIRST: u16 = 100;
/// The highest (`http::StatusCode` allows three digits, 100 to 999).
const LAST: u16 = 999;

/// The status a request is counted under when it never had one (`0`): fulcrum answers with a
/// status in every other case, so this is a client that left before any answer.
pub const CLIENT_CLOSED: u16 = 499;

/// The `code` label of a status: its three digits; a status outside 100..=999 (which no
/// response carries) is counted as [`CLIENT_CLOSED`].
pub fn clamp(code: u16) -> u16 {
    if (FIRST..=LAST).contains(&code) {
        code
    } else {
        CLIENT_CLOSED
    }
}

/// The counters of one hundred codes (`2xx`, say).
type Hundred = [OnceLock<IntCounter>; 100];

/// How many hundreds codes span (`1xx` to `9xx`).
const HUNDREDS: usize = ((LAST - FIRST) / 100 + 1) as usize;

/// The counters of one series set (`route="x"`, say), by the last label, `code`. Each hundred
/// of codes gets its table on its first code, so a backend that only ever answers `2xx` holds
/// one table of 100 slots, not 900.
pub struct StatusCounters {
    vec: &'static IntCounterVec,
    /// The values of the labels before `code`.
    labels: Vec<String>,
    /// `[(code - FIRST) / 100][(code - FIRST) % 100]`.
    hundreds: [OnceLock<Box<Hundred>>; HUNDREDS],
}

impl StatusCounters {
    /// Counters of `vec` (whose last label is `code`) with `labels` for the labels before it.
    pub fn new(vec: &'static IntCounterVec, labels: &[&str]) -> Self {
        StatusCounters {
            vec,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            hundreds: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The slot of `code` (see [`clamp`]), its hundred's table made if needed.
    fn slot(&self, code: u16) -> &OnceLock<IntCounter> {
        let i = usize::from(code - FIRST);
        let hundred = self.hundreds[i / 100]
            .get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        &hundred[i % 100]
    }

    /// Count one request answered with `code` (see [`clamp`]).
    pub fn inc(&self, code: u16) {
        let code = clamp(code);
        self.slot(code).get_or_init(|| self.resolve(code)).inc();
    }

    /// Create the series of `code` (at 0) now, so that it shows before its first request.
    pub fn touch(&self, code: u16) {
        let code = clamp(code);
        self.slot(code).get_or_init(|| self.resolve(code));
    }

    fn resolve(&self, code: u16) -> IntCounter {
        let code = code.to_string();
        let mut values: Vec<&str> = self.labels.iter().map(String::as_str).collect();
        values.push(&code);
        self.vec.with_label_values(&values)
    }

    /// Remove every series these counters created (their backend left).
    pub fn remove(&self) {
        let made = self
            .hundreds
            .iter()
            .enumerate()
            .filter_map(|(h, t)| Some((h, t.get()?)));
        for (h, hundred) in made {
            for (i, slot) in hundred.iter().enumerate() {
                if slot.get().is_some() {
                    let code = (FIRST as usize + h * 100 + i).to_string();
                    let mut values: Vec<&str> = self.labels.iter().map(String::as_str).collect();
                    values.push(&code);
                    let _ = self.vec.remove_label_values(&values);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_prometheus::prometheus::Opts;

    fn vec() -> &'static IntCounterVec {
        static V: OnceLock<IntCounterVec> = OnceLock::new();
        V.get_or_init(|| {
            IntCounterVec::new(Opts::new("t_requests_total", "t"), &["route", "code"]).unwrap()
        })
    }

    #[test]
    fn counts_by_code_and_creates_only_the_codes_seen() {
        let c = StatusCounters::new(vec(), &["a"]);
        c.inc(200);
        c.inc(200);
        c.inc(404);
        assert_eq!(vec().with_label_values(&["a", "200"]).get(), 2);
        assert_eq!(vec().with_label_values(&["a", "404"]).get(), 1);
        let n = |v: &IntCounterVec| {
            use pingora_prometheus::prometheus::core::Collector;
            let text = pingora_prometheus::prometheus::TextEncoder::new()
                .encode_to_string(&v.collect())
                // A family without series does not encode.
                .unwrap_or_default();
            text.lines().filter(|l| l.contains("route=\"a\"")).count()
        };
        assert_eq!(n(vec()), 2);
        // Only the hundreds seen have tables.
        let made: Vec<bool> = c.hundreds.iter().map(|h| h.get().is_some()).collect();
        assert_eq!(
            made,
            [false, true, false, true, false, false, false, false, false]
        );
        c.inc(999);
        assert_eq!(vec().with_label_values(&["a", "999"]).get(), 1);
        assert_eq!(n(vec()), 3);
        c.remove();
        assert_eq!(n(vec()), 0);
    }

    #[test]
    fn a_status_outside_the_three_digits_is_a_client_close() {
        assert_eq!(clamp(0), 499);
        assert_eq!(clamp(99), 499);
        assert_eq!(clamp(100), 100);
        assert_eq!(clamp(999), 999);
        assert_eq!(clamp(1000), 499);
    }
}
