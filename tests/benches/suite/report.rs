//! The figures of one run: printed as they are measured, and written at the end as one
//! Markdown document with a table per benchmark.

use std::fmt::Write as _;
use std::path::Path;

/// One measured figure next to its baseline from the same run.
#[derive(Debug, Clone)]
pub struct Row {
    pub measurement: String,
    pub value: String,
    pub baseline: String,
    /// `value / baseline` in the direction where higher is better for throughput and lower is
    /// better for time; the section says which.
    pub ratio: Option<f64>,
    pub goal: String,
    /// Whether the goal was met; `None` where the row has no goal.
    pub met: Option<bool>,
}

impl Row {
    pub fn new(measurement: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            measurement: measurement.into(),
            value: value.into(),
            baseline: String::new(),
            ratio: None,
            goal: String::new(),
            met: None,
        }
    }

    pub fn baseline(mut self, baseline: impl Into<String>, ratio: f64) -> Self {
        self.baseline = baseline.into();
        self.ratio = ratio.is_finite().then_some(ratio);
        self
    }

    pub fn goal(mut self, goal: impl Into<String>, met: bool) -> Self {
        self.goal = goal.into();
        self.met = Some(met);
        self
    }
}

/// One benchmark's table and what a reader needs to read it.
#[derive(Debug)]
pub struct Section {
    pub title: String,
    /// What is measured, what the baseline is, and which way the ratio points.
    pub about: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    sections: Vec<Section>,
}

impl Report {
    /// Starts a section and prints its heading.
    pub fn section(&mut self, title: &str, about: &str) {
        println!("\n## {title}\n\n{about}\n");
        self.sections.push(Section {
            title: title.to_owned(),
            about: about.to_owned(),
            rows: Vec::new(),
            notes: Vec::new(),
        });
    }

    /// Adds a row to the current section and prints it.
    pub fn row(&mut self, row: Row) {
        println!("  {}", render_row(&row));
        self.current().rows.push(row);
    }

    /// Adds a note under the current section's table and prints it.
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  note: {note}");
        self.current().notes.push(note);
    }

    fn current(&mut self) -> &mut Section {
        if self.sections.is_empty() {
            self.section("Figures", "");
        }
        let last = self.sections.len() - 1;
        &mut self.sections[last]
    }

    /// The whole report as Markdown, after `preamble` (the machine, the date, the command).
    pub fn markdown(&self, preamble: &str) -> String {
        let mut out = String::new();
        out.push_str(preamble);
        for section in &self.sections {
            let _ = write!(out, "\n## {}\n\n", section.title);
            if !section.about.is_empty() {
                let _ = write!(out, "{}\n\n", section.about);
            }
            if !section.rows.is_empty() {
                out.push_str("| measurement | Slipway | baseline | ratio | goal |\n");
                out.push_str("|---|---:|---:|---:|---|\n");
                for row in &section.rows {
                    out.push_str(&render_row(row));
                    out.push('\n');
                }
            }
            for note in &section.notes {
                let _ = write!(out, "\n- {note}");
            }
            if !section.notes.is_empty() {
                out.push('\n');
            }
        }
        out
    }

    pub fn write(&self, path: &Path, preamble: &str) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, self.markdown(preamble))
    }
}

fn render_row(row: &Row) -> String {
    let ratio = row.ratio.map_or_else(String::new, |r| format!("{r:.2}×"));
    let goal = match row.met {
        Some(true) => format!("{} — met", row.goal),
        Some(false) => format!("{} — **not met**", row.goal),
        None => row.goal.clone(),
    };
    format!(
        "| {} | {} | {} | {} | {} |",
        row.measurement, row.value, row.baseline, ratio, goal
    )
}

/// A count per second with thousands separators: `5,120/s`.
pub fn per_second(rate: f64) -> String {
    format!("{}/s", thousands(rate.round() as u64))
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds with a precision that suits their size.
pub fn millis(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// Bytes as MiB.
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The `q`-quantile (0..=1) of `samples`, which need not be sorted; nearest rank.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of `samples`.
pub fn median(samples: &[f64]) -> f64 {
    quantile(samples, 0.5)
}
