//! Sizes, durations and per-build limits as people write them ("512m", "45m", 1.5 CPUs),
//! parsed once for the configuration file and the API alike.

/// Parses "512m", "2g", "100kib" or a bare byte count into bytes; zero is refused.
pub fn parse_size_bytes(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text.as_str(), ""),
    };
    let value: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    value.checked_mul(factor).filter(|bytes| *bytes > 0)
}

/// Parses "90s", "45m", "2h" (a bare number is seconds) into seconds; zero is refused.
pub fn parse_duration_secs(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "s" | "sec" | "secs" | "seconds" => 1,
        "m" | "min" | "mins" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        _ => return None,
    };
    value.checked_mul(factor).filter(|secs| *secs > 0)
}

/// Seconds in the largest unit that divides them: 7200 → "2h", 90 → "90s".
pub fn format_duration_secs(secs: u64) -> String {
    match secs {
        0 => "0s".to_owned(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Bytes in the largest unit that divides them: 2 GiB → "2g", 1000 → "1000".
pub fn format_size_bytes(bytes: u64) -> String {
    match bytes {
        0 => "0".to_owned(),
        b if b % (1 << 30) == 0 => format!("{}g", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}m", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}k", b >> 10),
        b => b.to_string(),
    }
}

/// A per-build memory limit in bytes. The engine's build API carries it as a signed 32-bit
/// byte count, so more than 2047m cannot be expressed.
pub fn memory_limit_bytes(text: &str) -> Result<i64, String> {
    let bytes = parse_size_bytes(text)
        .ok_or_else(|| format!("memory_limit {text:?} is not a size like \"512m\" or \"2g\""))?;
    if bytes > i32::MAX as u64 {
        return Err(format!(
            "memory_limit {text:?} is above the 2047m the engine's build API accepts"
        ));
    }
    Ok(bytes as i64)
}

/// A per-build CPU limit, given in CPUs, as thousandths of a CPU.
pub fn cpu_limit_millis(cpus: f64) -> Result<i64, String> {
    if cpus > 0.0 && cpus <= 1024.0 {
        Ok((cpus * 1000.0).round() as i64)
    } else {
        Err(format!("cpu_limit {cpus} must be a number of CPUs above 0"))
    }
}

/// The largest build context, in bytes.
pub fn max_context_bytes(text: &str) -> Result<i64, String> {
    parse_size_bytes(text)
        .map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX))
        .ok_or_else(|| format!("max_context_size {text:?} is not a size like \"500m\" or \"1g\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_seconds_minutes_and_hours() {
        assert_eq!(parse_duration_secs("90s"), Some(90));
        assert_eq!(parse_duration_secs("45m"), Some(2700));
        assert_eq!(parse_duration_secs("2h"), Some(7200));
        assert_eq!(parse_duration_secs("30"), Some(30));
        assert_eq!(parse_duration_secs("0m"), None);
        assert_eq!(parse_duration_secs("5 days"), None);
        assert_eq!(parse_duration_secs("m"), None);
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_size_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_size_bytes("100kib"), Some(100 << 10));
        assert_eq!(parse_size_bytes("4096"), Some(4096));
        assert_eq!(parse_size_bytes("1t"), None);
        assert_eq!(parse_size_bytes("0m"), None);
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        for secs in [1, 59, 60, 90, 3600, 5400, 7200] {
            assert_eq!(parse_duration_secs(&format_duration_secs(secs)), Some(secs));
        }
        for bytes in [1, 1000, 1024, 512 << 20, 1 << 30, 3 << 30] {
            assert_eq!(parse_size_bytes(&format_size_bytes(bytes)), Some(bytes));
        }
    }

    #[test]
    fn limits_refuse_what_the_engine_cannot_take() {
        assert_eq!(memory_limit_bytes("2047m"), Ok(2047 << 20));
        assert!(memory_limit_bytes("2g").is_err());
        assert_eq!(cpu_limit_millis(1.5), Ok(1500));
        assert!(cpu_limit_millis(0.0).is_err());
        assert!(max_context_bytes("nope").is_err());
    }
}
