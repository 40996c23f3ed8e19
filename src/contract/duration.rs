//! Durations as operators type them: `90` (seconds), `90s`, `10m`, `2h`, `1h30m`.

use std::time::Duration;

/// Parses a duration flag value; a bare number is seconds. The error says what is
/// accepted, for clap to show next to the flag's name.
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(everruns_admin::contract::duration::parse("90"), Ok(Duration::from_secs(90)));
/// assert_eq!(everruns_admin::contract::duration::parse("10m"), Ok(Duration::from_secs(600)));
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is not a duration: use seconds (90) or a unit (90s, 10m, 2h, 1h30m)")
    })
}

/// Like [`parse`], for limits where zero makes no sense (`--timeout`).
pub fn parse_nonzero(text: &str) -> Result<Duration, String> {
    match parse(text)? {
        d if d.is_zero() => Err("must be longer than zero".to_owned()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_seconds_and_units() {
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn rejects_garbage_with_the_accepted_forms() {
        let err = parse("soon").unwrap_err();
        assert!(err.contains("90s, 10m, 2h"), "{err}");
        assert!(parse("-5").is_err());
        assert!(parse_nonzero("0").is_err());
        assert_eq!(parse_nonzero("2m"), Ok(Duration::from_secs(120)));
    }
}
