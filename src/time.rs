//! Times as text: the one RFC 3339 formatter that the HTTP API and the command line share.
//!
//! The library's own types keep `SystemTime` and `Duration` (the ledger stores them); only the
//! HTTP and command-line layers render them, through this module. The `revolve` binary reaches it
//! through the hidden `cli::__bin::timestamp`; it is not public API.

use std::time::{SystemTime, UNIX_EPOCH};

/// RFC 3339 in UTC, to the microsecond: `2026-12-06T11:16:19.123456Z`. A time before the epoch
/// (no revolve timestamp is one) shows as the epoch.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let in_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 as (year, month, day): Howard Hinnant's `civil_from_days`, unsigned
/// because no revolve timestamp is older than the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc_3339_utc_to_the_microsecond() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_micros(951_782_400_123_456); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.123456Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_714_564_800 + 3661); // 2024-05-01
        assert_eq!(rfc3339(later), "2024-05-01T13:01:01.000000Z");
        let new_year = UNIX_EPOCH + Duration::from_secs(1_704_067_199); // 2023-12-31 23:59:59
        assert_eq!(rfc3339(new_year), "2023-12-31T23:59:59.000000Z");
        let nanos = UNIX_EPOCH + Duration::new(1_796_556_979, 123_456_789);
        assert_eq!(rfc3339(nanos), "2026-12-06T11:36:19.123456Z");
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339(before), "1970-01-01T00:00:00.000000Z");
    }
}
