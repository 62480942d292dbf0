//! authctl's clock against AWS's. authctl stamps revocation entries, account cut-offs and
//! the key lifecycle's gates with this machine's clock; a clock behind AWS's puts a
//! revocation behind every warm authorizer's cursor (never seen), one ahead opens a key
//! gate early. Before a command writes any of them, authctl reads the `Date` of a DynamoDB
//! response to a read the command makes anyway and refuses when the clocks may be more
//! than [`MAX_SKEW`] apart (docs/operations.md, "authctl's clock").

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::date_time::{DateTime, Format};

/// How far this machine's clock may be from AWS's. The revocation feed re-reads 15 s
/// before its cursor; authctl stops retrying a denylist write 8 s after its stamp, and the
/// feed's budget leaves 5 s for the writer's clock against the authorizer's. 2 s keeps
/// authctl well inside those 5 s (the rest is the Lambda clocks' own error), and a
/// clock kept by NTP, off by milliseconds, passes with a round trip of up to 1 s.
pub const MAX_SKEW: Duration = Duration::from_secs(2);

/// One response's `Date` (whole seconds, as HTTP dates are) with the local times at which
/// its request was sent and its response received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// AWS's time, truncated to the second, when it wrote the response (ms since the epoch).
    pub date_ms: i64,
    /// This machine's time when the request left (ms since the epoch).
    pub sent_ms: i64,
    /// This machine's time when the response arrived (ms since the epoch).
    pub received_ms: i64,
}

impl Reading {
    /// The bounds of this clock's offset from AWS's (local minus AWS, ms): AWS wrote the
    /// response at some moment of [`date`, `date` + 1 s) that this machine saw between
    /// sending and receiving.
    fn offset_bounds_ms(&self) -> (i64, i64) {
        (self.sent_ms - self.date_ms - 1_000, self.received_ms - self.date_ms)
    }
}

/// Why a command may not write a security time, with what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The clock is off by more than the bound whatever the round trip hid; otherwise the
    /// reading could not tell (a slow round trip), and another reading may.
    pub certain: bool,
    /// What to tell the operator.
    pub message: String,
}

/// Whether a command may write a security time: refused, with what to do, unless the
/// reading shows the clock within `max` of AWS's whatever the round trip hid.
pub fn judge(reading: &Reading, max: Duration) -> Result<(), Refusal> {
    let max_ms = i64::try_from(max.as_millis()).unwrap_or(i64::MAX);
    let (low, high) = reading.offset_bounds_ms();
    if -max_ms <= low && high <= max_ms {
        return Ok(());
    }
    let estimate = (low + high) / 2;
    let spread = (high - low) / 2;
    let certain = low > max_ms || high < -max_ms;
    let how = if certain {
        let direction = if estimate > 0 { "ahead of" } else { "behind" };
        format!(
            "this machine's clock is {:.1} s {direction} AWS's (± {:.1} s, from the Date of a DynamoDB response)",
            estimate.unsigned_abs() as f64 / 1_000.0,
            spread as f64 / 1_000.0
        )
    } else {
        format!(
            "this machine's clock may be more than {} s off AWS's: {:.1} s ± {:.1} s by the Date of a DynamoDB \
             response (a round trip of {} ms)",
            max.as_secs(),
            estimate as f64 / 1_000.0,
            spread as f64 / 1_000.0,
            reading.received_ms - reading.sent_ms
        )
    };
    let message = format!(
        "{how}. authctl stamps revocations, cut-offs and key gates with this clock and refuses to while it may be \
         more than {} s off; nothing was written. Synchronise the clock (e.g. `timedatectl set-ntp true` or \
         `chronyc makestep`) and run the command again.",
        max.as_secs()
    );
    Err(Refusal { certain, message })
}

/// Keeps the [`Reading`] of the last response an SDK client received (an interceptor).
#[derive(Debug, Clone, Default)]
pub struct DateCapture(Arc<Mutex<Capture>>);

#[derive(Debug, Default)]
struct Capture {
    sent_ms: Option<i64>,
    last: Option<Result<Reading, String>>,
}

impl DateCapture {
    /// The reading of the last response, or why there is none.
    pub fn last(&self) -> Result<Reading, String> {
        let capture = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        capture.last.clone().unwrap_or_else(|| Err("no AWS response was read to check this machine's clock".to_owned()))
    }
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

impl Intercept for DateCapture {
    fn name(&self) -> &'static str {
        "DateCapture"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).sent_ms = Some(now_ms());
        Ok(())
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let received_ms = now_ms();
        let date = context.response().headers().get("date").map(|raw| DateTime::from_str(raw, Format::HttpDate));
        let mut capture = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let sent_ms = capture.sent_ms.unwrap_or(received_ms);
        capture.last = Some(match date {
            Some(Ok(date)) => date
                .to_millis()
                .map(|date_ms| Reading { date_ms, sent_ms, received_ms })
                .map_err(|_| "the AWS response's Date is out of range".to_owned()),
            Some(Err(_)) => Err("the AWS response's Date is not an HTTP date".to_owned()),
            None => Err("the AWS response carried no Date header to check this machine's clock against".to_owned()),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reading of a clock `offset_ms` off AWS's, the response written `into_second_ms`
    /// into AWS's second, with `round_trip_ms`, the response written halfway.
    fn reading(offset_ms: i64, into_second_ms: i64, round_trip_ms: i64) -> Reading {
        let written = 1_700_000_000_000 + into_second_ms;
        let local = written + offset_ms;
        Reading {
            date_ms: written - into_second_ms,
            sent_ms: local - round_trip_ms / 2,
            received_ms: local + round_trip_ms / 2,
        }
    }

    #[test]
    fn a_clock_in_step_passes_wherever_in_the_second_the_date_was_written() {
        for into_second in [0, 1, 500, 999] {
            for round_trip in [0, 20, 300, 1_000] {
                assert_eq!(judge(&reading(0, into_second, round_trip), MAX_SKEW), Ok(()), "{into_second} {round_trip}");
            }
        }
    }

    #[test]
    fn a_clock_off_by_more_than_the_bound_is_refused_and_told_by_how_much() {
        for into_second in [0, 500, 999] {
            let behind = judge(&reading(-40_000, into_second, 30), MAX_SKEW).expect_err("refused");
            assert!(behind.certain);
            let behind = behind.message;
            assert!(behind.contains("behind AWS's"), "{behind}");
            assert!(behind.contains("40.") || behind.contains("39."), "{behind}");
            assert!(behind.contains("nothing was written") && behind.contains("Synchronise"), "{behind}");
            let ahead = judge(&reading(3 * 86_400_000, into_second, 30), MAX_SKEW).expect_err("refused").message;
            assert!(ahead.contains("259200.") || ahead.contains("259199."), "{ahead}");
            assert!(ahead.contains("ahead of AWS's"), "{ahead}");
            assert!(judge(&reading(-2_600, into_second, 10), MAX_SKEW).is_err(), "2.6 s behind");
            assert!(judge(&reading(3_100, into_second, 10), MAX_SKEW).is_err(), "3.1 s ahead");
        }
    }

    #[test]
    fn a_round_trip_too_slow_to_tell_is_refused_rather_than_trusted() {
        let slow = judge(&reading(0, 500, 5_000), MAX_SKEW).expect_err("refused");
        assert!(!slow.certain, "another reading may tell");
        let slow = slow.message;
        assert!(slow.contains("may be more than 2 s off") && slow.contains("round trip of 5000 ms"), "{slow}");
    }
}
