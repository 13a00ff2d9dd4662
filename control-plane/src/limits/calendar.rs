//! UTC days and months for spend caps: their names, when they began and how long they last.

/// Seconds until the next UTC day and month begin, and their names (`20261126`, `202611`).
pub(super) fn calendar(now: i64) -> (String, i64, String, i64) {
    let days = now.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let next_day = (days + 1) * 86_400 - now;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next_month = days_from_civil(ny, nm, 1) * 86_400 - now;
    (
        format!("{y:04}{m:02}{d:02}"),
        next_day,
        format!("{y:04}{m:02}"),
        next_month,
    )
}

/// A day count since 1970-01-01 as `YYYY-MM-DD`.
pub fn date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// When the current UTC day and month began (Unix seconds).
pub fn period_starts(now: i64) -> (i64, i64) {
    let days = now.div_euclid(86_400);
    let (y, m, _) = civil_from_days(days);
    (days * 86_400, days_from_civil(y, m, 1) * 86_400)
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_boundaries() {
        // 2026-11-26T15:00:00Z
        let now = 1_795_705_200;
        let (day, day_left, month, month_left) = calendar(now);
        assert_eq!((day.as_str(), month.as_str()), ("20261126", "202611"));
        assert_eq!(day_left, 9 * 3_600);
        assert_eq!(month_left, 4 * 86_400 + 9 * 3_600);
        let (day, _, month, left) = calendar(days_from_civil(2026, 12, 31) * 86_400);
        assert_eq!(
            (day.as_str(), month.as_str(), left),
            ("20261231", "202612", 86_400)
        );
        assert_eq!(period_starts(now), (1_795_651_200, 1_793_491_200));
        assert_eq!(date(20_000), "2024-10-04");
    }
}
