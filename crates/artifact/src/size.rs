//! Sizes on the command line: `1048576`, `500M`, `1.5GiB`.

/// Parses a byte size: a number with an optional unit. `K`, `M`, `G`, `T` (also `KB`...) are
/// powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` powers of 1024; `B` or no unit means bytes.
/// Units are case-insensitive; a space between number and unit is allowed.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000_u64.pow(2),
        "g" | "gb" => 1000_u64.pow(3),
        "t" | "tb" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("invalid size {text:?}: unknown unit {other:?}")),
    };
    let bad = || format!("invalid size {text:?}: expected a number and a unit, e.g. 500M or 10GiB");
    if number.is_empty() {
        return Err(bad());
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(scale).ok_or_else(|| format!("invalid size {text:?}: too large"));
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("invalid size {text:?}: too large"));
    }
    Ok(bytes.round() as u64)
}

/// Formats `bytes` for people: `1.5 GiB`, `512 B`.
/// Parses a positive rate, `SIZE/s` (the `/s` may be left out), e.g. `8MiB/s`.
#[cfg(feature = "http")]
pub(crate) fn parse_rate(text: &str) -> Result<u64, String> {
    match parse_size(text.strip_suffix("/s").unwrap_or(text)) {
        Ok(0) => Err(format!("invalid rate {text:?}: it must be positive")),
        result => result,
    }
}

pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Result<u64, ()>) {
        assert_eq!(parse_size(text).map_err(drop), expect, "{text:?}");
    }

    #[test]
    fn sizes() {
        check("1048576", Ok(1 << 20));
        check("500M", Ok(500_000_000));
        check("500mb", Ok(500_000_000));
        check("10GiB", Ok(10 << 30));
        check("1.5 KiB", Ok(1536));
        check("0", Ok(0));
        check("7B", Ok(7));
        check("", Err(()));
        check("GiB", Err(()));
        check("12 parsecs", Err(()));
        check("-1", Err(()));
        check("1.2.3M", Err(()));
        check("99999999999999999999", Err(()));
        check("20000000TiB", Err(()));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(10 << 30), "10.0 GiB");
    }
}
