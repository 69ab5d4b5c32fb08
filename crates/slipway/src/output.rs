//! Human-readable output of the API's commands: aligned columns, short times and durations.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Rows printed under a header with every column as wide as its widest cell. The last column
/// is not padded, so lines carry no trailing spaces.
#[derive(Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether only the header is there.
    pub fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count();
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad + 2));
                } else {
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `label  value` lines with the values aligned, skipping absent values.
#[derive(Debug, Default)]
pub struct Fields {
    pairs: Vec<(String, String)>,
}

impl Fields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, label: &str, value: impl Into<Option<String>>) {
        if let Some(value) = value.into().filter(|v| !v.is_empty()) {
            self.pairs.push((label.to_owned(), value));
        }
    }

    pub fn render(&self) -> String {
        let width = self
            .pairs
            .iter()
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (label, value) in &self.pairs {
            let pad = width - label.chars().count();
            // A multi-line value (an error with a build step's output) stays under its label.
            let indent = " ".repeat(width + 2);
            let value = value.trim_end().replace('\n', &format!("\n{indent}"));
            out.push_str(&format!("{label}{}  {value}\n", " ".repeat(pad)));
        }
        out
    }
}

/// A JSON value as a cell: strings as they are, null as "-", anything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON string, or `None` (for [`Fields::add`]).
pub fn opt(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// A list of strings (tags) as `a, b`.
pub fn list(value: &Value) -> String {
    match value.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(text).collect::<Vec<_>>().join(", "),
        _ => "-".to_owned(),
    }
}

/// Milliseconds as a short duration: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

fn parse_time(value: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value.as_str()?, &Rfc3339).ok()
}

/// An RFC 3339 time as `2024-05-01 12:03:04Z` (the API's times are UTC); `-` when absent.
pub fn short_time(value: &Value) -> String {
    let Some(time) = parse_time(value) else {
        return text(value);
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// How long from `start` to `end` (both RFC 3339), or `-`.
pub fn duration_between(start: &Value, end: &Value) -> String {
    match (parse_time(start), parse_time(end)) {
        (Some(start), Some(end)) => {
            duration_ms(i64::try_from((end - start).whole_milliseconds()).unwrap_or(i64::MAX))
        }
        _ => "-".to_owned(),
    }
}

/// The first 12 characters of a commit id.
pub fn short_commit(value: &Value) -> String {
    let commit = text(value);
    commit.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut table = Table::new(&["ID", "STATUS", "REF"]);
        assert!(table.is_empty());
        table.row(vec![
            "1".into(),
            "succeeded".into(),
            "refs/heads/main".into(),
        ]);
        table.row(vec!["22".into(), "-".into(), "x".into()]);
        assert_eq!(
            table.render(),
            "ID  STATUS     REF\n\
             1   succeeded  refs/heads/main\n\
             22  -          x\n"
        );
    }

    #[test]
    fn wide_characters_count_once() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["\u{e9}\u{e9}".into(), "x".into()]);
        assert_eq!(table.render(), "A   B\n\u{e9}\u{e9}  x\n");
    }

    #[test]
    fn fields_skip_absent_values_and_indent_continued_lines() {
        let mut fields = Fields::new();
        fields.add("Status", Some("failed".to_owned()));
        fields.add("Digest", None);
        fields.add("Error", Some("step 2 failed:\nexit 1\n".to_owned()));
        assert_eq!(
            fields.render(),
            "Status  failed\nError   step 2 failed:\n        exit 1\n"
        );
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration_ms(-5), "0ms");
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(12_345), "12.3s");
        assert_eq!(duration_ms(245_000), "4m05s");
        assert_eq!(duration_ms(7_380_000), "2h03m");
    }

    #[test]
    fn times_and_values_read_well() {
        assert_eq!(
            short_time(&json!("2024-05-01T12:03:04.123Z")),
            "2024-05-01 12:03:04Z"
        );
        assert_eq!(short_time(&Value::Null), "-");
        assert_eq!(
            duration_between(
                &json!("2024-05-01T12:03:04Z"),
                &json!("2024-05-01T12:04:06.5Z")
            ),
            "1m02s"
        );
        assert_eq!(
            duration_between(&json!("2024-05-01T12:03:04Z"), &Value::Null),
            "-"
        );
        assert_eq!(list(&json!(["latest", "1.2"])), "latest, 1.2");
        assert_eq!(list(&json!([])), "-");
        assert_eq!(short_commit(&json!("0123456789abcdef0123")), "0123456789ab");
        assert_eq!(text(&json!(3)), "3");
    }
}
