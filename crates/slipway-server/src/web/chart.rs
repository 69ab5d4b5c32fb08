//! The repository page's chart of recent build durations: one stacked bar per build, queue time
//! below and build time above, oldest on the left, as inline SVG.
//!
//! The chart is drawn in a fixed coordinate system (`viewBox`) without a width or height, so the
//! stylesheet's `.duration-chart` rule scales it to the page, phones included. It names and
//! describes itself (`<title>`, `<desc>` with a summary in words), every bar has a `<title>`
//! that browsers show as a tooltip, and failed builds carry a mark besides their colour so that
//! the chart does not rely on colour alone.

use std::fmt::Write as _;

use super::escape;

/// One build in the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartPoint {
    /// A short name for the build, such as `#42` or a commit prefix.
    pub label: String,
    /// Seconds from queued to started.
    pub queue_seconds: f64,
    /// Seconds from started to finished.
    pub build_seconds: f64,
    pub failed: bool,
}

/// The drawing's coordinate system, and the plot area inside it (room is left for the legend
/// above, the tick labels on the left and the build labels below).
const WIDTH: f64 = 360.0;
const HEIGHT: f64 = 220.0;
const PLOT_LEFT: f64 = 50.0;
const PLOT_RIGHT: f64 = 352.0;
const PLOT_TOP: f64 = 32.0;
const PLOT_BOTTOM: f64 = 194.0;

/// Colours: queue time is a grey blue and build time a blue, both at least 3:1 against the white
/// page as WCAG asks of graphics; failed builds are red and also marked with a cross.
const QUEUE_FILL: &str = "#8494a7";
const BUILD_FILL: &str = "#1565c0";
const FAILED_FILL: &str = "#c62828";
const TEXT_FILL: &str = "#3d4752";
const GRID_STROKE: &str = "#dde1e6";

/// At most this many build labels are written under the bars; the others would overlap.
const MAX_X_LABELS: usize = 8;
/// Build labels are cut to this many characters under the bars (tooltips have them whole).
const MAX_LABEL_CHARS: usize = 10;
/// A generous estimate of a label character's width at the chart's font size.
const LABEL_CHAR_WIDTH: f64 = 7.0;
/// Durations beyond this (about 31 years) are taken as this, so that sums stay finite.
const MAX_SECONDS: f64 = 1e9;

/// Draws the chart for `points`, oldest first; an empty slice gives a small "no builds yet"
/// image of the same style.
pub fn duration_chart_svg(points: &[ChartPoint]) -> String {
    if points.is_empty() {
        return empty_chart();
    }
    let bars: Vec<Bar<'_>> = points.iter().map(Bar::from_point).collect();
    let largest = bars.iter().map(Bar::total).fold(0.0, f64::max);
    let step = tick_step(largest);
    // The axis ends at the first tick at or above the largest total, and is never empty.
    let axis_top = (step * (largest / step).ceil()).max(step);

    let mut svg = String::with_capacity(512 + 400 * bars.len());
    // Writing to a `String` cannot fail, so the results are ignored.
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"duration-chart\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" font-family=\"system-ui,sans-serif\" \
         font-size=\"11\"><title>Queue and build time of the last {count} {builds}</title>\
         <desc>{summary}</desc>",
        count = bars.len(),
        builds = plural(bars.len()),
        summary = escape(&summary(&bars)),
    );
    write_legend(&mut svg);
    write_axis(&mut svg, step, axis_top);

    let slot = (PLOT_RIGHT - PLOT_LEFT) / bars.len() as f64;
    let bar_width = (slot * 0.7).min(28.0);
    // Labels are spaced so that neither more than `MAX_X_LABELS` are written nor the longest
    // (estimated) could touch its neighbour.
    let longest_label = bars
        .iter()
        .map(|bar| shorten(bar.label).chars().count())
        .max()
        .unwrap_or(0);
    let label_room = (longest_label as f64 * LABEL_CHAR_WIDTH + 6.0) / slot;
    let label_every = bars
        .len()
        .div_ceil(MAX_X_LABELS)
        .max(label_room.ceil().clamp(1.0, 1e6) as usize);
    for (index, bar) in bars.iter().enumerate() {
        let x = PLOT_LEFT + slot * index as f64 + (slot - bar_width) / 2.0;
        write_bar(&mut svg, bar, x, bar_width, axis_top);
        // Labels are counted from the newest build, so the most recent one is always named.
        if (bars.len() - 1 - index).is_multiple_of(label_every) {
            let label = shorten(bar.label);
            // A label centred under the first or last bar could stick out of the drawing, so
            // its centre is kept half its (estimated) width away from either edge.
            let half = label.chars().count() as f64 * LABEL_CHAR_WIDTH / 2.0;
            let _ = write!(
                svg,
                "<text x=\"{cx:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" fill=\"{TEXT_FILL}\" \
                 aria-hidden=\"true\">{label}</text>",
                cx = (x + bar_width / 2.0)
                    .clamp(half.min(WIDTH / 2.0), (WIDTH - half).max(WIDTH / 2.0)),
                y = PLOT_BOTTOM + 16.0,
                label = escape(&label),
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A point with its durations made safe to draw: finite, non-negative and bounded.
#[derive(Debug)]
struct Bar<'a> {
    label: &'a str,
    queue: f64,
    build: f64,
    failed: bool,
}

impl<'a> Bar<'a> {
    fn from_point(point: &'a ChartPoint) -> Self {
        Bar {
            label: &point.label,
            queue: sane_seconds(point.queue_seconds),
            build: sane_seconds(point.build_seconds),
            failed: point.failed,
        }
    }

    fn total(&self) -> f64 {
        self.queue + self.build
    }

    /// The tooltip: the build's name, both durations and the outcome in words.
    fn describe(&self) -> String {
        format!(
            "{}: queued {}, built in {}{}",
            self.label,
            human_duration(self.queue),
            human_duration(self.build),
            if self.failed { ", failed" } else { "" }
        )
    }
}

/// Maps NaN, infinities and negative values (clock skew, missing timestamps) to 0 and caps huge
/// ones, so that no `NaN` or `inf` can reach the drawing.
fn sane_seconds(seconds: f64) -> f64 {
    if seconds.is_finite() && seconds > 0.0 {
        seconds.min(MAX_SECONDS)
    } else {
        0.0
    }
}

/// The distance between y-axis ticks: the smallest round duration that needs at most four
/// steps to reach `largest`.
fn tick_step(largest: f64) -> f64 {
    const STEPS: [f64; 18] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        10800.0, 21600.0, 43200.0, 86400.0,
    ];
    let wanted = largest / 4.0;
    if let Some(step) = STEPS.iter().copied().find(|&step| step >= wanted) {
        return step;
    }
    // Beyond a day per step, whole days doubling; `largest` is bounded, so this ends quickly.
    let mut step = 86400.0;
    while step < wanted {
        step *= 2.0;
    }
    step
}

/// The y coordinate of `seconds` on an axis that ends at `axis_top`.
fn y_of(seconds: f64, axis_top: f64) -> f64 {
    PLOT_BOTTOM - (seconds / axis_top) * (PLOT_BOTTOM - PLOT_TOP)
}

fn write_axis(svg: &mut String, step: f64, axis_top: f64) {
    // `axis_top` is a whole number of steps, at most a handful; rounding absorbs float error.
    let ticks = (axis_top / step).round().clamp(1.0, 100.0) as u32;
    svg.push_str("<g aria-hidden=\"true\">");
    for tick in 0..=ticks {
        let value = step * f64::from(tick);
        let y = y_of(value, axis_top);
        let _ = write!(
            svg,
            "<line x1=\"{PLOT_LEFT}\" x2=\"{PLOT_RIGHT}\" y1=\"{y:.1}\" y2=\"{y:.1}\" \
             stroke=\"{stroke}\"/><text x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"end\" \
             fill=\"{TEXT_FILL}\">{label}</text>",
            stroke = if tick == 0 { TEXT_FILL } else { GRID_STROKE },
            x = PLOT_LEFT - 6.0,
            ty = y + 4.0,
            label = tick_label(value),
        );
    }
    svg.push_str("</g>");
}

fn write_legend(svg: &mut String) {
    svg.push_str("<g aria-hidden=\"true\">");
    let entries = [
        (PLOT_LEFT, QUEUE_FILL, "Queue"),
        (PLOT_LEFT + 70.0, BUILD_FILL, "Build"),
        (PLOT_LEFT + 140.0, FAILED_FILL, "Failed build \u{2715}"),
    ];
    for (x, fill, text) in entries {
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"8\" width=\"11\" height=\"11\" fill=\"{fill}\"/>\
             <text x=\"{tx:.1}\" y=\"18\" fill=\"{TEXT_FILL}\">{text}</text>",
            tx = x + 16.0,
        );
    }
    svg.push_str("</g>");
}

/// Draws one bar: queue time at the bottom, build time on top, separated by a hairline gap,
/// inside a group whose `<title>` is the tooltip.
fn write_bar(svg: &mut String, bar: &Bar<'_>, x: f64, width: f64, axis_top: f64) {
    let _ = write!(
        svg,
        "<g class=\"bar\"><title>{}</title>",
        escape(&bar.describe())
    );
    let queue_top = y_of(bar.queue, axis_top);
    let build_top = y_of(bar.total(), axis_top);
    // A duration too small to see still gets a sliver, so that a bar is never missing.
    let queue_height = visible_height(bar.queue, PLOT_BOTTOM - queue_top);
    let build_bottom = PLOT_BOTTOM - queue_height - if queue_height > 0.0 { 0.5 } else { 0.0 };
    let build_height =
        visible_height(bar.build, build_bottom - build_top).min(build_bottom - PLOT_TOP);
    if queue_height > 0.0 {
        let _ = write!(
            svg,
            "<rect class=\"bar-queue\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" \
             height=\"{queue_height:.1}\" fill=\"{QUEUE_FILL}\"/>",
            y = PLOT_BOTTOM - queue_height,
        );
    }
    if build_height > 0.0 {
        let _ = write!(
            svg,
            "<rect class=\"bar-build\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" \
             height=\"{build_height:.1}\" fill=\"{fill}\"/>",
            y = build_bottom - build_height,
            fill = if bar.failed { FAILED_FILL } else { BUILD_FILL },
        );
    }
    if bar.failed {
        let top = build_bottom - build_height;
        let _ = write!(
            svg,
            "<text x=\"{cx:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" fill=\"{FAILED_FILL}\" \
             font-size=\"9\">\u{2715}</text>",
            cx = x + width / 2.0,
            y = (top - 2.0).max(PLOT_TOP - 2.0),
        );
    }
    svg.push_str("</g>");
}

/// The drawn height of a segment: its scaled height, at least one unit when the duration is
/// not zero, and zero when it is.
fn visible_height(seconds: f64, scaled: f64) -> f64 {
    if seconds > 0.0 { scaled.max(1.0) } else { 0.0 }
}

fn empty_chart() -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"duration-chart duration-chart-empty\" \
         viewBox=\"0 0 {WIDTH} 48\" role=\"img\" font-family=\"system-ui,sans-serif\" \
         font-size=\"13\"><title>Queue and build time</title><desc>No builds yet.</desc>\
         <text x=\"{x}\" y=\"28\" text-anchor=\"middle\" fill=\"{TEXT_FILL}\" \
         aria-hidden=\"true\">No builds yet</text></svg>",
        x = WIDTH / 2.0,
    )
}

/// The chart in words, for `<desc>`: what is shown, the longest total, the median build time
/// and how many failed.
fn summary(bars: &[Bar<'_>]) -> String {
    let mut text = format!(
        "Stacked bars of queue time and build time for {} {}, oldest on the left.",
        bars.len(),
        plural(bars.len())
    );
    if let Some(longest) = bars.iter().max_by(|a, b| a.total().total_cmp(&b.total())) {
        let _ = write!(
            text,
            " Longest: {} at {} in all.",
            longest.label,
            human_duration(longest.total())
        );
    }
    let mut builds: Vec<f64> = bars.iter().map(|bar| bar.build).collect();
    builds.sort_by(f64::total_cmp);
    if let Some(median) = builds.get(builds.len() / 2) {
        let _ = write!(text, " Median build time: {}.", human_duration(*median));
    }
    let failed = bars.iter().filter(|bar| bar.failed).count();
    let _ = write!(text, " {failed} failed.");
    text
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "build" } else { "builds" }
}

/// Cuts a build label for the x axis, marking the cut with an ellipsis.
fn shorten(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL_CHARS {
        label.to_owned()
    } else {
        let mut short: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
        short.push('\u{2026}');
        short
    }
}

/// A duration for people: "4.2 s", "38 s", "3 min 4 s", "2 h 5 min".
fn human_duration(seconds: f64) -> String {
    if seconds < 9.95 {
        return format!("{} s", trimmed(seconds, 1));
    }
    // Rounded once, up front, so that 59.6 s reads "1 min" rather than "60 s".
    let whole = seconds.round();
    if whole < 60.0 {
        format!("{whole} s")
    } else if whole < 3600.0 {
        let (minutes, rest) = ((whole / 60.0).floor(), whole % 60.0);
        if rest == 0.0 {
            format!("{minutes} min")
        } else {
            format!("{minutes} min {rest} s")
        }
    } else {
        let all_minutes = (whole / 60.0).round();
        let (hours, rest) = ((all_minutes / 60.0).floor(), all_minutes % 60.0);
        if rest == 0.0 {
            format!("{hours} h")
        } else {
            format!("{hours} h {rest} min")
        }
    }
}

/// A y-axis tick in the largest unit that fits it: "30 s", "1.5 min", "2 h", "4 d".
fn tick_label(seconds: f64) -> String {
    if seconds == 0.0 {
        "0".to_owned()
    } else if seconds < 60.0 {
        format!("{} s", trimmed(seconds, 1))
    } else if seconds < 3600.0 {
        format!("{} min", trimmed(seconds / 60.0, 1))
    } else if seconds < 2.0 * 86400.0 {
        format!("{} h", trimmed(seconds / 3600.0, 1))
    } else {
        format!("{} d", trimmed(seconds / 86400.0, 1))
    }
}

/// Formats with at most `decimals` decimals and without trailing zeros ("1.5", "2").
fn trimmed(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, queue: f64, build: f64, failed: bool) -> ChartPoint {
        ChartPoint {
            label: label.to_owned(),
            queue_seconds: queue,
            build_seconds: build,
            failed,
        }
    }

    /// The value of attribute `name` in every `<rect>` with class `class`.
    fn rect_attributes(svg: &str, class: &str, name: &str) -> Vec<f64> {
        svg.split("<rect ")
            .skip(1)
            .filter(|tag| tag.starts_with(&format!("class=\"{class}\"")))
            .map(|tag| {
                let start =
                    tag.find(&format!(" {name}=\"")).expect("the attribute") + name.len() + 3;
                let end = start + tag[start..].find('"').expect("a closing quote");
                tag[start..end].parse().expect("a number")
            })
            .collect()
    }

    /// Asserts that no number in the drawing is NaN or infinite.
    fn assert_finite(svg: &str) {
        let lower = svg.to_ascii_lowercase();
        assert!(!lower.contains("nan"), "NaN in {svg}");
        assert!(!lower.contains("inf"), "infinity in {svg}");
    }

    #[test]
    fn empty_input_says_no_builds_yet() {
        let svg = duration_chart_svg(&[]);
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("<title>"));
        assert!(svg.contains("No builds yet"));
        assert!(svg.contains("viewBox=\"0 0 360 48\""));
        assert!(!svg.contains("<rect"));
    }

    #[test]
    fn chart_is_accessible_and_scalable() {
        let svg =
            duration_chart_svg(&[point("#1", 5.0, 60.0, false), point("#2", 12.0, 95.0, true)]);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("viewBox=\"0 0 360 220\""));
        assert!(!svg.contains(" width=\"100"), "no fixed size on the root");
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("<title>Queue and build time of the last 2 builds</title>"));
        assert!(svg.contains("<desc>Stacked bars"));
        assert!(svg.contains("Longest: #2 at 1 min 47 s in all."));
        assert!(svg.contains("1 failed."));
        assert!(svg.contains("<title>#1: queued 5 s, built in 1 min</title>"));
        assert!(svg.contains("<title>#2: queued 12 s, built in 1 min 35 s, failed</title>"));
        assert!(svg.contains("Queue</text>"));
        assert!(svg.contains("Build</text>"));
        assert_eq!(svg.matches("<g class=\"bar\">").count(), 2);
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn labels_are_escaped() {
        let svg = duration_chart_svg(&[point("<script>&\"'", 1.0, 2.0, false)]);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;&amp;&quot;&#39;: queued"));
        for tag in svg.split('<').skip(1) {
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphabetic() || *c == '/')
                .collect();
            assert!(
                ["svg", "title", "desc", "g", "rect", "line", "text"]
                    .iter()
                    .any(|known| name == *known || name.strip_prefix('/') == Some(known)),
                "unexpected element {name:?}"
            );
        }
    }

    #[test]
    fn zero_and_invalid_durations_stay_finite() {
        let svg = duration_chart_svg(&[
            point("a", 0.0, 0.0, false),
            point("b", f64::NAN, f64::INFINITY, true),
            point("c", -5.0, f64::NEG_INFINITY, false),
        ]);
        assert_finite(&svg);
        assert!(
            svg.contains(">1 s</text>"),
            "a one-second axis when all are zero"
        );
        // Nothing to draw, but every build still has its group and tooltip.
        assert_eq!(svg.matches("<g class=\"bar\">").count(), 3);
        assert!(rect_attributes(&svg, "bar-build", "height").is_empty());
    }

    #[test]
    fn one_very_long_build_fits_and_short_ones_stay_visible() {
        let mut points: Vec<ChartPoint> = (0..20)
            .map(|n| point(&format!("#{n}"), 2.0, 30.0, false))
            .collect();
        points.push(point("#20", 60.0, 10.0 * 3600.0, false));
        let svg = duration_chart_svg(&points);
        assert_finite(&svg);
        assert!(svg.contains(">12 h</text>"), "ticks in hours: {svg}");
        let tops = rect_attributes(&svg, "bar-build", "y");
        let heights = rect_attributes(&svg, "bar-build", "height");
        assert_eq!(tops.len(), 21);
        for (top, height) in tops.iter().zip(&heights) {
            assert!(*top >= PLOT_TOP - 0.05 && top + height <= PLOT_BOTTOM + 0.05);
            assert!(*height >= 1.0, "a short build disappeared");
        }
        let longest = heights.iter().copied().fold(0.0, f64::max);
        assert!(longest > (PLOT_BOTTOM - PLOT_TOP) * 0.75, "{longest}");
        for height in rect_attributes(&svg, "bar-queue", "height") {
            assert!(height >= 1.0);
        }
        // Labels are thinned out to at most eight, and the newest is always among them.
        assert!(svg.contains(">#20</text>"));
        let last = svg.rfind(">#20</text>").expect("the newest label");
        let x_at = svg[..last].rfind("x=\"").expect("its x") + 3;
        let x: f64 = svg[x_at..x_at + svg[x_at..].find('"').expect("a quote")]
            .parse()
            .expect("a number");
        assert!(
            x + 3.0 * LABEL_CHAR_WIDTH / 2.0 <= WIDTH,
            "the label sticks out at {x}"
        );
        let labels = svg.matches("aria-hidden=\"true\">#").count();
        assert!(labels <= MAX_X_LABELS, "{labels}");
    }

    #[test]
    fn bars_are_oldest_first_and_stay_inside_the_plot() {
        let points: Vec<ChartPoint> = (0..200)
            .map(|n| point("x", 1.0, f64::from(n), n % 3 == 0))
            .collect();
        let svg = duration_chart_svg(&points);
        let xs = rect_attributes(&svg, "bar-build", "x");
        assert!(xs.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(xs.iter().all(|x| *x >= PLOT_LEFT && *x <= PLOT_RIGHT));
        assert!(
            rect_attributes(&svg, "bar-build", "width")
                .iter()
                .all(|w| *w > 0.0)
        );
    }

    #[test]
    fn durations_read_in_human_units() {
        assert_eq!(human_duration(0.0), "0 s");
        assert_eq!(human_duration(4.26), "4.3 s");
        assert_eq!(human_duration(38.4), "38 s");
        assert_eq!(human_duration(184.0), "3 min 4 s");
        assert_eq!(human_duration(120.0), "2 min");
        assert_eq!(human_duration(9.96), "10 s");
        assert_eq!(human_duration(59.6), "1 min");
        assert_eq!(human_duration(3599.6), "1 h");
        assert_eq!(human_duration(7500.0), "2 h 5 min");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(30.0), "30 s");
        assert_eq!(tick_label(90.0), "1.5 min");
        assert_eq!(tick_label(7200.0), "2 h");
        assert_eq!(tick_label(4.0 * 86400.0), "4 d");
        assert_eq!(tick_step(0.0), 1.0);
        assert_eq!(tick_step(100.0), 30.0);
        let huge = tick_step(MAX_SECONDS * 2.0);
        assert!((MAX_SECONDS / 2.0..MAX_SECONDS).contains(&huge), "{huge}");
    }
}
