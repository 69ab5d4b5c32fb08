//! Building blocks of the server-rendered dashboard: terminal-log rendering and the part of a
//! log a build page shows, status badges, the build-duration chart and the static assets served
//! under `/assets`.
//!
//! Everything here is pure (no I/O, no state), so the page handlers stay thin and these parts
//! are tested on their own. Every string that reaches HTML or SVG from outside is escaped here.

pub mod ansi;
pub mod assets;
pub mod badge;
pub mod chart;
pub mod logtail;
pub mod pages;
pub mod routes;
pub mod session;

/// Escapes the five characters that are special in HTML and XML text and attribute values,
/// and drops the characters that XML 1.0 forbids outright.
///
/// Both the HTML log and the SVG images use it, so one careful implementation serves all. A
/// forbidden character (most C0 controls, U+FFFE, U+FFFF) would make a whole SVG image fail to
/// parse, so it is dropped rather than escaped: XML has no escape for it either.
pub(crate) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\t' | '\n' | '\r' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {}
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

/// Returns `text` escaped for HTML or XML (see [`escape_into`]).
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// WCAG 2 contrast computations: the stylesheet's generated terminal colours are made readable
/// with them, and tests hold every colour of the pages and badges to level AA.
pub(crate) mod contrast {
    /// Reads a `#rrggbb` colour.
    #[cfg(test)]
    pub(crate) fn parse_hex(text: &str) -> Option<(u8, u8, u8)> {
        let hex = text.strip_prefix('#')?;
        if hex.len() != 6 || !hex.is_ascii() {
            return None;
        }
        let channel = |at: usize| u8::from_str_radix(&hex[at..at + 2], 16).ok();
        Some((channel(0)?, channel(2)?, channel(4)?))
    }

    /// The relative luminance of an sRGB colour, as WCAG 2 defines it.
    fn luminance((r, g, b): (u8, u8, u8)) -> f64 {
        let linear = |channel: u8| {
            let c = f64::from(channel) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
    }

    /// The contrast ratio of two colours, from 1 (none) to 21 (black on white).
    pub(crate) fn contrast_ratio(a: (u8, u8, u8), b: (u8, u8, u8)) -> f64 {
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn known_ratios() {
            let black = (0, 0, 0);
            let white = (255, 255, 255);
            assert!((contrast_ratio(black, white) - 21.0).abs() < 1e-9);
            assert!((contrast_ratio(white, white) - 1.0).abs() < 1e-9);
            let grey = parse_hex("#767676").expect("a colour");
            assert!((contrast_ratio(grey, white) - 4.54).abs() < 0.01);
            assert_eq!(parse_hex("#12345"), None);
            assert_eq!(parse_hex("123456"), None);
        }
    }
}
