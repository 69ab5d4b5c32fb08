//! Status badges for READMEs: a flat, two-part SVG image ("build | passing") in the familiar
//! shields.io look, drawn here without any external service or font.
//!
//! Text widths are estimated from a table of Verdana's advance widths at 11px (the font such
//! badges name first), and every `<text>` carries `textLength`, so a viewer that falls back to
//! another font squeezes or stretches the text to the estimated box instead of overflowing it.
//! All colours keep white text at WCAG AA contrast (at least 4.5:1), which the tests compute.

use std::fmt::Write as _;

use super::escape;

/// What a badge's right-hand part says with its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadgeColour {
    Success,
    Failure,
    Running,
    Queued,
    Neutral,
}

impl BadgeColour {
    /// The fill as `#rrggbb`; each keeps white text at WCAG AA contrast.
    pub fn hex(self) -> &'static str {
        match self {
            BadgeColour::Success => "#2e7d32",
            BadgeColour::Failure => "#c62828",
            BadgeColour::Running => "#1565c0",
            BadgeColour::Queued => "#5a6b7c",
            BadgeColour::Neutral => "#6b6b6b",
        }
    }
}

/// The fill of the label part, the same dark grey for every badge.
const LABEL_FILL: &str = "#555555";
/// The badge's height and the horizontal padding on each side of each text.
const HEIGHT: u32 = 20;
const PADDING: u32 = 6;
/// The corner radius of the badge's outline.
const RADIUS: u32 = 3;
/// Texts longer than this many characters are cut with an ellipsis, so that a long tag or
/// repository name cannot produce an arbitrarily wide image.
const MAX_CHARS: usize = 64;

/// The message and colour for a build status as stored (`None` when there is no build yet).
///
/// Unrecognised statuses read "unknown" rather than echoing the string, so a badge only ever
/// says one of a fixed set of words.
pub fn badge_for_status(status: Option<&str>) -> (String, BadgeColour) {
    let (message, colour) = match status {
        Some("succeeded") => ("passing", BadgeColour::Success),
        Some("failed") => ("failing", BadgeColour::Failure),
        Some("running") => ("building", BadgeColour::Running),
        Some("queued") => ("queued", BadgeColour::Queued),
        Some("cancelled") => ("cancelled", BadgeColour::Neutral),
        Some("skipped") => ("skipped", BadgeColour::Neutral),
        _ => ("unknown", BadgeColour::Neutral),
    };
    (message.to_owned(), colour)
}

/// Draws a badge: `label` on dark grey on the left, `message` on `colour` on the right.
///
/// The image is self-contained (no external references, no element ids, so several can be
/// inlined in one page), names itself for assistive technology with `role="img"`, an
/// `aria-label` and a `<title>` reading "label: message", and escapes all text.
pub fn badge_svg(label: &str, message: &str, colour: BadgeColour) -> String {
    let label = shorten(label);
    let message = shorten(message);
    let label_text = text_width(&label);
    let message_text = text_width(&message);
    let label_width = box_width(label_text);
    let message_width = box_width(message_text);
    let width = label_width + message_width;
    let name = escape(&format!("{label}: {message}"));
    let label = escape(&label);
    let message = escape(&message);

    let mut svg = String::with_capacity(1024);
    // Writing to a `String` cannot fail, so the results are ignored.
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {width} {HEIGHT}\" role=\"img\" aria-label=\"{name}\">\
         <title>{name}</title>"
    );
    // Two paths, each rounded on its outer side only, instead of a clip path: clip paths need
    // ids, and ids would collide when two badges are inlined in one page.
    let inner = label_width - RADIUS;
    let _ = write!(
        svg,
        "<path fill=\"{LABEL_FILL}\" d=\"M{RADIUS} 0h{inner}v{HEIGHT}h-{inner}\
         a{RADIUS} {RADIUS} 0 0 1-{RADIUS}-{RADIUS}v-{side}a{RADIUS} {RADIUS} 0 0 1 {RADIUS}-{RADIUS}z\"/>",
        side = HEIGHT - 2 * RADIUS,
    );
    let inner = message_width - RADIUS;
    let _ = write!(
        svg,
        "<path fill=\"{fill}\" d=\"M{label_width} 0h{inner}\
         a{RADIUS} {RADIUS} 0 0 1 {RADIUS} {RADIUS}v{side}a{RADIUS} {RADIUS} 0 0 1-{RADIUS} {RADIUS}\
         h-{inner}z\"/>",
        fill = colour.hex(),
        side = HEIGHT - 2 * RADIUS,
    );
    svg.push_str(
        "<g fill=\"#fff\" text-anchor=\"middle\" \
         font-family=\"Verdana,Geneva,DejaVu Sans,sans-serif\" font-size=\"11\">",
    );
    write_text(&mut svg, &label, f64::from(label_width) / 2.0, label_text);
    write_text(
        &mut svg,
        &message,
        f64::from(label_width) + f64::from(message_width) / 2.0,
        message_text,
    );
    svg.push_str("</g></svg>");
    svg
}

/// Writes one escaped text centred at `x`, over a faint shadow one pixel lower that keeps it
/// legible on the lighter fills.
fn write_text(svg: &mut String, escaped: &str, x: f64, width: f64) {
    let _ = write!(
        svg,
        "<text x=\"{x:.1}\" y=\"15\" fill=\"#010101\" fill-opacity=\".3\" aria-hidden=\"true\" \
         textLength=\"{width:.1}\" lengthAdjust=\"spacingAndGlyphs\">{escaped}</text>\
         <text x=\"{x:.1}\" y=\"14\" textLength=\"{width:.1}\" \
         lengthAdjust=\"spacingAndGlyphs\">{escaped}</text>"
    );
}

/// Cuts `text` to [`MAX_CHARS`] characters, marking the cut with an ellipsis.
fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX_CHARS - 1).collect();
        short.push('\u{2026}');
        short
    }
}

/// The width of a text part's box: the text rounded up to whole pixels, plus padding.
fn box_width(text_width: f64) -> u32 {
    // Texts are at most `MAX_CHARS` characters of at most 11px each, so the value is small,
    // finite and non-negative, and the conversion cannot truncate.
    let whole = text_width.ceil().clamp(0.0, 10_000.0) as u32;
    whole + 2 * PADDING
}

/// Verdana's advance widths for the printable ASCII characters, `' '` to `'~'`, in font units
/// (2048 to the em). These are this module's own rounded estimates, close enough for a box that
/// `textLength` then fits exactly.
const ASCII_WIDTHS: [u16; 95] = [
    720, 823, 956, 1681, 1303, 2222, 1493, 550, 930, 930, 1303, 1681, 745, 930, 745,
    930, // ' '–'/'
    1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, // '0'–'9'
    930, 930, 1681, 1681, 1681, 1120, 2048, // ':'–'@'
    1401, 1405, 1430, 1577, 1294, 1178, 1587, 1540, 862, 931, 1422, 1143, 1732, // 'A'–'M'
    1533, 1615, 1241, 1615, 1428, 1401, 1247, 1501, 1401, 2028, 1403, 1247, 1405, // 'N'–'Z'
    930, 930, 930, 1681, 1303, 1303, // '['–'`'
    1230, 1272, 1066, 1272, 1219, 720, 1272, 1292, 562, 705, 1198, 562, 1980, // 'a'–'m'
    1292, 1248, 1272, 1272, 874, 1063, 807, 1292, 1198, 1675, 1198, 1198, 1063, // 'n'–'z'
    1300, 930, 1300, 1681, // '{'–'~'
];

/// Font units per em, and the font size in pixels.
const UNITS_PER_EM: f64 = 2048.0;
const FONT_SIZE: f64 = 11.0;

/// The estimated width in pixels of `text` in Verdana at 11px.
fn text_width(text: &str) -> f64 {
    let units: u32 = text.chars().map(|c| u32::from(char_units(c))).sum();
    f64::from(units) * FONT_SIZE / UNITS_PER_EM
}

/// One character's estimated advance in font units.
fn char_units(c: char) -> u16 {
    match c {
        ' '..='~' => ASCII_WIDTHS[c as usize - ' ' as usize],
        // Combining marks sit on the previous character and take no room of their own.
        '\u{300}'..='\u{36f}' => 0,
        // East Asian wide characters (Hangul, CJK, kana, full-width forms) take a full em.
        '\u{1100}'..='\u{115f}'
        | '\u{2e80}'..='\u{a4cf}'
        | '\u{ac00}'..='\u{d7a3}'
        | '\u{f900}'..='\u{faff}'
        | '\u{fe30}'..='\u{fe4f}'
        | '\u{ff00}'..='\u{ff60}'
        | '\u{ffe0}'..='\u{ffe6}'
        | '\u{1f300}'..='\u{1faff}'
        | '\u{20000}'..='\u{3fffd}' => 2048,
        // Anything else is taken as an average Latin letter.
        _ => 1300,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::contrast::{contrast_ratio, parse_hex};

    const ALL: [BadgeColour; 5] = [
        BadgeColour::Success,
        BadgeColour::Failure,
        BadgeColour::Running,
        BadgeColour::Queued,
        BadgeColour::Neutral,
    ];

    #[test]
    fn statuses_map_to_messages_and_colours() {
        let cases = [
            (Some("succeeded"), "passing", BadgeColour::Success),
            (Some("failed"), "failing", BadgeColour::Failure),
            (Some("running"), "building", BadgeColour::Running),
            (Some("queued"), "queued", BadgeColour::Queued),
            (Some("cancelled"), "cancelled", BadgeColour::Neutral),
            (Some("skipped"), "skipped", BadgeColour::Neutral),
            (None, "unknown", BadgeColour::Neutral),
            (Some("<weird>"), "unknown", BadgeColour::Neutral),
        ];
        for (status, message, colour) in cases {
            assert_eq!(
                badge_for_status(status),
                (message.to_owned(), colour),
                "{status:?}"
            );
        }
    }

    #[test]
    fn white_text_has_aa_contrast_on_every_fill() {
        let white = (255, 255, 255);
        for fill in ALL.map(BadgeColour::hex).into_iter().chain([LABEL_FILL]) {
            let rgb = parse_hex(fill).expect("a #rrggbb colour");
            let ratio = contrast_ratio(rgb, white);
            assert!(ratio >= 4.5, "{fill} has contrast {ratio:.2} with white");
        }
    }

    #[test]
    fn badge_is_accessible_and_well_formed() {
        let svg = badge_svg("build", "passing", BadgeColour::Success);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("aria-label=\"build: passing\""));
        assert!(svg.contains("<title>build: passing</title>"));
        assert!(svg.contains("fill=\"#2e7d32\""));
        assert!(svg.contains(">passing</text>"));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert!(!svg.contains(" id="), "badges must not use ids");
    }

    #[test]
    fn text_is_escaped_everywhere() {
        let svg = badge_svg("<a&b>", "\"x'\u{1}", BadgeColour::Failure);
        assert!(!svg.contains("<a&b>"));
        assert!(svg.contains("aria-label=\"&lt;a&amp;b&gt;: &quot;x&#39;\""));
        assert!(svg.contains("<title>&lt;a&amp;b&gt;: &quot;x&#39;</title>"));
        assert!(
            !svg.contains('\u{1}'),
            "a control character would break the XML"
        );
        // Every `<` starts one of the image's own elements.
        for tag in svg.split('<').skip(1) {
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphabetic() || *c == '/')
                .collect();
            assert!(
                [
                    "svg", "title", "path", "g", "text", "/title", "/g", "/text", "/svg"
                ]
                .contains(&name.as_str()),
                "unexpected element {name:?}"
            );
        }
    }

    /// Reads the `width="…"` of the root element.
    fn width_of(svg: &str) -> u32 {
        let start = svg.find("width=\"").expect("a width") + 7;
        let end = start + svg[start..].find('"').expect("a closing quote");
        svg[start..end].parse().expect("a whole number")
    }

    #[test]
    fn width_follows_the_text() {
        let narrow = width_of(&badge_svg("build", "iiii", BadgeColour::Neutral));
        let wide = width_of(&badge_svg("build", "WWWW", BadgeColour::Neutral));
        assert!(wide > narrow + 20, "{wide} vs {narrow}");
        // "passing" is about 42px wide in Verdana 11px; with padding the part is about 54px.
        let part = box_width(text_width("passing"));
        assert!((50..=58).contains(&part), "{part}");
        assert_eq!(text_width("\u{301}"), 0.0);
        assert!(text_width("\u{6f22}") > text_width("a"));
    }

    #[test]
    fn long_texts_are_shortened() {
        let long = "x".repeat(1000);
        let svg = badge_svg(&long, "passing", BadgeColour::Success);
        assert!(width_of(&svg) < 600);
        assert!(svg.contains('\u{2026}'));
        assert_eq!(shorten("short"), "short");
        assert_eq!(shorten(&long).chars().count(), MAX_CHARS);
    }
}
