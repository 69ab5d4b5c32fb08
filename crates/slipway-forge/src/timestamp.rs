//! Commit timestamps as forges send them: RFC 3339 / ISO 8601 strings (with `Z`, `+01:00` or
//! `+0100` offsets) or epoch milliseconds (Bitbucket Data Center).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses a JSON timestamp value into Unix milliseconds; `None` for anything unrecognisable.
pub fn parse_timestamp_millis(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(number) => number.as_i64(),
        serde_json::Value::String(text) => parse_iso8601(text),
        _ => None,
    }
}

fn parse_iso8601(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.len() > 64 {
        return None;
    }
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok().or_else(|| {
        // Some forges write the offset without a colon (`+1000`); RFC 3339 wants `+10:00`.
        // Arbitrary text need not have character boundaries where an offset's would be: split
        // only where they are.
        let (head, offset) = text.split_at_checked(text.len().checked_sub(5)?)?;
        let (sign, digits) = offset.split_at_checked(1)?;
        if matches!(sign, "+" | "-") && digits.bytes().all(|b| b.is_ascii_digit()) {
            let fixed = format!("{head}{sign}{}:{}", &digits[..2], &digits[2..]);
            OffsetDateTime::parse(&fixed, &Rfc3339).ok()
        } else {
            None
        }
    })?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_form_forges_send() {
        let expected = 1_505_779_091_000;
        assert_eq!(parse_timestamp_millis(&json!(expected)), Some(expected));
        assert_eq!(
            parse_timestamp_millis(&json!("2017-09-19T09:58:11+10:00")),
            Some(expected)
        );
        assert_eq!(
            parse_timestamp_millis(&json!("2017-09-19T09:58:11+1000")),
            parse_timestamp_millis(&json!("2017-09-19T09:58:11+10:00"))
        );
        assert_eq!(
            parse_timestamp_millis(&json!("2017-09-18T23:58:11Z")),
            parse_timestamp_millis(&json!("2017-09-19T09:58:11+10:00"))
        );
        assert_eq!(parse_timestamp_millis(&json!("yesterday")), None);
        // Multi-byte characters where the offset would be: no panic, just no timestamp.
        assert_eq!(parse_timestamp_millis(&json!("𬤅ab")), None);
        assert_eq!(
            parse_timestamp_millis(&json!("2017-09-19T09:58:11é+100")),
            None
        );
        assert_eq!(
            parse_timestamp_millis(&json!("2017-09-19T09:58:11é123")),
            None
        );
        assert_eq!(parse_timestamp_millis(&json!(null)), None);
    }
}
