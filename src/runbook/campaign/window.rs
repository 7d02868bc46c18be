//! The maintenance window: a window in the plan (pure) and an SSM Change Calendar, which
//! must be OPEN (GetCalendarState: "OPEN … actions are allowed to proceed, CLOSED … are
//! not"; with several calendars, OPEN only if all are). Checked before every rotation.

use chrono::{DateTime, Utc};

use crate::aws::Aws;
use crate::runbook::{aws_err, stamp, RunbookError};

/// Pure: is `now` inside the plan's window (if it has one)?
pub fn in_window(window: Option<(DateTime<Utc>, DateTime<Utc>)>, now: DateTime<Utc>) -> Result<(), String> {
    match window {
        Some((start, _)) if now < start => Err(format!("the maintenance window opens at {}", stamp(start))),
        Some((_, end)) if now >= end => Err(format!("the maintenance window closed at {}", stamp(end))),
        _ => Ok(()),
    }
}

/// The window and the calendar: `Ok(Err(why))` when closed.
pub async fn check_window(
    aws: &Aws,
    calendar: Option<&str>,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<Result<(), String>, RunbookError> {
    if let Err(why) = in_window(window, now) {
        return Ok(Err(why));
    }
    let Some(calendar) = calendar else { return Ok(Ok(())) };
    let out = aws
        .ssm()
        .get_calendar_state()
        .calendar_names(calendar)
        .send()
        .await
        .map_err(aws_err("ssm:GetCalendarState"))?;
    match out.state().map(|s| s.as_str()) {
        Some("OPEN") => Ok(Ok(())),
        state => Ok(Err(format!(
            "the change calendar {calendar} is {}{}",
            state.unwrap_or("in no known state"),
            out.next_transition_time().map(|t| format!(" until {t}")).unwrap_or_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_before_and_after() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let w = Some((t("2026-12-05T20:00:00Z"), t("2026-12-05T23:00:00Z")));
        assert!(in_window(w, t("2026-12-05T21:00:00Z")).is_ok());
        assert!(in_window(w, t("2026-12-05T19:59:59Z")).unwrap_err().contains("opens"));
        assert!(in_window(w, t("2026-12-05T23:00:00Z")).unwrap_err().contains("closed"));
        assert!(in_window(None, t("2026-12-05T23:00:00Z")).is_ok());
    }
}
