//! The `Clock` port on the system clock (functions and `pyramid serve`; tests set their own).

use engagement::ports::Clock;
use engagement::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Timestamp(millis)
    }
}
