//! Building blocks of the server-rendered dashboard: terminal-log rendering, status badges,
//! the build-duration chart and the static assets served under `/assets`.
//!
//! Everything here is pure (no I/O, no state), so the page handlers stay thin and these parts
//! are tested on their own. Every string that reaches HTML or SVG from outside is escaped here.

pub mod ansi;

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
