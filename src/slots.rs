//! When a cache's scheduled work is due: every slot of its crontab lines fires.
//!
//! The supervisor used to compute "the next time after now" afresh on every pass of its
//! loop. A slot whose timer became ready together with another branch (an enforcement
//! slot at the same minute as a verify slot, or a watch event) was then recomputed
//! from a `now` already past it: with `schedule` and `verify_schedule` both
//! `* * * * *`, no sweep ever ran, and `@hourly` with `@weekly` lost the weekly one for
//! ever (issue #31). A [`Slot`] instead keeps the slot it planned until that slot has
//! fired: if the supervisor was busy when it came, it fires as soon as the supervisor
//! looks again — late, once (missed slots are not replayed), with the lateness for the
//! log.

use std::time::Duration;

use chrono::{DateTime, Local};
use tokio::time::Instant;

use crate::schedule::CronSchedule;

/// The pending slot of one schedule.
#[derive(Debug, Default)]
pub struct Slot {
    /// The schedule it was planned from (a reload may change it), the slot's local
    /// time, and that time on the tokio clock.
    next: Option<(String, DateTime<Local>, Instant)>,
}

impl Slot {
    /// Plans the next slot of `schedule` after `wall_now` (the local time at `now`),
    /// unless one of the same schedule is pending. `None` clears it.
    pub fn plan(
        &mut self,
        schedule: Option<&CronSchedule>,
        wall_now: DateTime<Local>,
        now: Instant,
    ) {
        let Some(schedule) = schedule else {
            self.next = None;
            return;
        };
        if self
            .next
            .as_ref()
            .is_some_and(|(text, ..)| *text == schedule.text)
        {
            return;
        }
        self.next = schedule.next_after(wall_now).map(|at| {
            let wait = (at - wall_now).to_std().unwrap_or_default();
            (schedule.text.clone(), at, now + wait)
        });
    }

    /// When the pending slot is due on the tokio clock.
    pub fn due_at(&self) -> Option<Instant> {
        self.next.as_ref().map(|(_, _, at)| *at)
    }

    /// Waits until the pending slot is due (for ever without one).
    pub async fn due(&self) {
        match self.due_at() {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// The pending slot fires at `now`: returns its local time and how late it fires.
    /// The next one is planned at the next [`Slot::plan`], from then.
    pub fn fire(&mut self, now: Instant) -> Option<(DateTime<Local>, Duration)> {
        let (_, at, due) = self.next.take()?;
        Some((at, now.saturating_duration_since(due)))
    }
}

/// How late a slot may fire before the log says so.
pub const LATE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cron(text: &str) -> CronSchedule {
        text.parse().unwrap()
    }

    /// A wall clock that follows the paused tokio clock from `start`.
    struct Clock {
        wall: DateTime<Local>,
        tokio: Instant,
    }

    impl Clock {
        fn at(wall: DateTime<Local>) -> Clock {
            Clock {
                wall,
                tokio: Instant::now(),
            }
        }
        fn now(&self) -> DateTime<Local> {
            self.wall + chrono::Duration::from_std(self.tokio.elapsed()).unwrap()
        }
    }

    /// The supervisor's loop in miniature, with its order: stop, then the slots, then
    /// watch events (`daemon::supervise`, `biased`). Each piece of work takes a second.
    /// Returns the local times of the slots each schedule fired for.
    async fn run(
        clock: &Clock,
        enforce: &CronSchedule,
        verify: &CronSchedule,
        storm: bool,
        for_how_long: Duration,
    ) -> (Vec<DateTime<Local>>, Vec<DateTime<Local>>) {
        let (mut e, mut v) = (Slot::default(), Slot::default());
        let (mut enforced, mut verified) = (Vec::new(), Vec::new());
        let end = tokio::time::sleep(for_how_long);
        tokio::pin!(end);
        loop {
            e.plan(Some(enforce), clock.now(), Instant::now());
            v.plan(Some(verify), clock.now(), Instant::now());
            tokio::select! {
                biased;
                _ = &mut end => break,
                _ = e.due() => {
                    enforced.push(e.fire(Instant::now()).unwrap().0);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ = v.due() => {
                    verified.push(v.fire(Instant::now()).unwrap().0);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                // A watch event always ready, each taking 100 ms to apply.
                _ = tokio::time::sleep(Duration::from_millis(100)), if storm => {}
            }
        }
        (enforced, verified)
    }

    fn sunday_23_30() -> DateTime<Local> {
        // 2026-12-06 is a Sunday; the week's first slot of "0 0 * * 1" is Monday 00:00.
        Local.with_ymd_and_hms(2026, 12, 6, 23, 30, 0).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn coinciding_slots_each_fire_every_time() {
        let clock = Clock::at(sunday_23_30());
        let every = cron("* * * * *");
        let (e, v) = run(&clock, &every, &every, false, Duration::from_secs(330)).await;
        assert_eq!(e.len(), 5, "{e:?}");
        assert_eq!(v, e, "the verify slot of each minute fired too");
    }

    #[tokio::test(start_paused = true)]
    async fn an_hourly_schedule_does_not_swallow_a_weekly_one() {
        let clock = Clock::at(sunday_23_30());
        let (e, v) = run(
            &clock,
            &cron("@hourly"),
            &cron("0 0 * * 1"),
            false,
            Duration::from_secs(3600),
        )
        .await;
        let midnight = Local.with_ymd_and_hms(2026, 12, 7, 0, 0, 0).unwrap();
        assert_eq!(e, vec![midnight]);
        assert_eq!(v, vec![midnight], "the weekly slot fired, a second late");
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_of_events_delays_no_slot() {
        let clock = Clock::at(sunday_23_30());
        let (e, v) = run(
            &clock,
            &cron("*/2 * * * *"),
            &cron("* * * * *"),
            true,
            Duration::from_secs(630),
        )
        .await;
        assert_eq!(e.len(), 5, "{e:?}");
        assert_eq!(v.len(), 10, "{v:?}");
    }

    #[test]
    fn a_late_slot_says_how_late_and_fires_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let clock = Clock::at(sunday_23_30());
            let mut slot = Slot::default();
            slot.plan(Some(&cron("* * * * *")), clock.now(), Instant::now());
            // Busy for five minutes past the slot.
            tokio::time::advance(Duration::from_secs(330)).await;
            let (at, late) = slot.fire(Instant::now()).unwrap();
            assert_eq!(at, Local.with_ymd_and_hms(2026, 12, 6, 23, 31, 0).unwrap());
            assert_eq!(late, Duration::from_secs(270));
            assert!(slot.fire(Instant::now()).is_none(), "once");
            slot.plan(Some(&cron("* * * * *")), clock.now(), Instant::now());
            assert_eq!(
                slot.due_at().unwrap() - Instant::now(),
                Duration::from_secs(30)
            );
        });
    }
}
