//! The dashboard's static files, compiled into the binary and served under `/assets/`.
//!
//! **The stylesheet** is `assets/slipway.css` with the rules for xterm's colours 16–255
//! (`.ansi-fg-N`, `.ansi-bg-N`) put in at two marker comments, once, on first use
//! ([`terminal_colour_rules`]): 480 rules computed from xterm's definition rather than written
//! by hand. The log renderers draw every colour with these classes because the pages'
//! Content-Security-Policy forbids inline styles (see `web/ansi.rs`).
//!
//! **Caching.** Each file has a version: a hash of its content, computed once, so it changes
//! exactly when the file does. A handler can use it in either (or both) of two ways:
//!
//! - Revalidation: send `ETag: <etag(path)>` and `Cache-Control: no-cache`, and answer
//!   `304 Not Modified` without a body when [`not_modified`] says the request's
//!   `If-None-Match` already names it.
//! - Cache busting: link to [`href`] (`/assets/slipway.css?v=<version>`) from the pages, and
//!   when a request's `v` equals [`version`], send [`IMMUTABLE_CACHE_CONTROL`]: browsers then
//!   never ask again, and a new build links to a new URL.
//!
//! The hash is FNV-1a (64 bits): it only has to tell versions of our own files apart, not
//! resist anyone.

use std::fmt::Write as _;
use std::sync::LazyLock;

use super::ansi::{BG_PREFIX, FG_PREFIX, xterm_rgb};
use super::contrast::contrast_ratio;

/// The stylesheet as written, with the markers where the generated colour rules go.
const CSS_SOURCE: &str = include_str!("../../assets/slipway.css");
/// Replaced by the background rules for indexes 16–255. Background rules come before every
/// foreground rule, so that a span with both gets the foreground's text colour.
const BG_MARKER: &str = "/* slipway: generated .ansi-bg-16 to .ansi-bg-255 */";
/// Replaced by the foreground rules for indexes 16–255.
const FG_MARKER: &str = "/* slipway: generated .ansi-fg-16 to .ansi-fg-255 */";

/// The log's background (`--log-bg` in the stylesheet; a test keeps the two equal), against
/// which foreground colours are made readable.
const LOG_BACKGROUND: (u8, u8, u8) = (0x15, 0x18, 0x1c);
/// WCAG AA for normal text.
const MIN_CONTRAST: f64 = 4.5;

/// The stylesheet of every dashboard page, with the generated colour rules.
pub static CSS: LazyLock<String> = LazyLock::new(|| {
    CSS_SOURCE
        .replacen(BG_MARKER, &terminal_colour_rules(Layer::Background), 1)
        .replacen(FG_MARKER, &terminal_colour_rules(Layer::Foreground), 1)
});
/// The live build log (see the comment at the top of the file for the markup it expects).
pub const BUILD_LOG_JS: &str = include_str!("../../assets/build-log.js");

/// `Cache-Control` for a request of the current version of a file through [`href`].
pub const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

const CSS_CONTENT_TYPE: &str = "text/css; charset=utf-8";
const JS_CONTENT_TYPE: &str = "text/javascript; charset=utf-8";

/// Which colour of a span a generated rule sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Foreground,
    Background,
}

/// The rules for xterm colours 16–255 of one layer, one a line (`.ansi-fg-N { color: #…; }`).
///
/// Foreground colours keep xterm's value when it has at least 4.5:1 contrast on the log's
/// background; darker ones (navy, the dark greys) are mixed with white in small steps until they
/// reach it, so that no program's colour choice makes its text unreadable here. A background
/// keeps xterm's value exactly and brings black or white text, whichever contrasts more (at
/// least 4.5:1 on any fill).
fn terminal_colour_rules(layer: Layer) -> String {
    let mut rules = String::new();
    for index in 16..=255u8 {
        let Some(value) = xterm_rgb(index) else {
            continue;
        };
        // Writing to a `String` cannot fail, so the results are ignored.
        match layer {
            Layer::Foreground => {
                let colour = hex(readable_on(value, LOG_BACKGROUND));
                let _ = writeln!(rules, ".{FG_PREFIX}{index} {{ color: {colour}; }}");
            }
            Layer::Background => {
                let black = (0, 0, 0);
                let white = (255, 255, 255);
                let text = if contrast_ratio(value, white) >= contrast_ratio(value, black) {
                    white
                } else {
                    black
                };
                let _ = writeln!(
                    rules,
                    ".{BG_PREFIX}{index} {{ background-color: {}; color: {}; }}",
                    hex(value),
                    hex(text)
                );
            }
        }
    }
    rules
}

/// `colour`, or the least mix of it with white (in steps of 1/100) that has [`MIN_CONTRAST`]
/// on `background`.
fn readable_on(colour: (u8, u8, u8), background: (u8, u8, u8)) -> (u8, u8, u8) {
    let mix = |channel: u8, step: u32| -> u8 {
        let lifted = f64::from(channel) + f64::from(255 - channel) * f64::from(step) / 100.0;
        // The value lies between the channel and 255, so the conversion cannot overflow.
        lifted.round().clamp(0.0, 255.0) as u8
    };
    (0..=100)
        .map(|step| {
            (
                mix(colour.0, step),
                mix(colour.1, step),
                mix(colour.2, step),
            )
        })
        .find(|&mixed| contrast_ratio(mixed, background) >= MIN_CONTRAST)
        .unwrap_or((255, 255, 255))
}

/// `#rrggbb`.
fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The content type and content of the asset named `path` (the part after `/assets/`), or
/// `None` for any other name.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "slipway.css" => Some((CSS_CONTENT_TYPE, CSS.as_str())),
        "build-log.js" => Some((JS_CONTENT_TYPE, BUILD_LOG_JS)),
        _ => None,
    }
}

/// The strong entity tags of the two files: the version in double quotes.
static CSS_ETAG: LazyLock<String> = LazyLock::new(|| quoted_hex(fnv1a(CSS.as_bytes())));
static JS_ETAG: LazyLock<String> = LazyLock::new(|| quoted_hex(fnv1a(BUILD_LOG_JS.as_bytes())));

/// The version of the asset named `path`: 16 lower-case hex digits of its content hash.
pub fn version(path: &str) -> Option<&'static str> {
    etag(path).map(|tag| tag.trim_matches('"'))
}

/// The strong entity tag of the asset named `path`: its version in double quotes, ready for an
/// `ETag` header.
pub fn etag(path: &str) -> Option<&'static str> {
    match path {
        "slipway.css" => Some(CSS_ETAG.as_str()),
        "build-log.js" => Some(JS_ETAG.as_str()),
        _ => None,
    }
}

/// The URL to link the asset named `path` from a page: `/assets/{path}?v={version}`.
pub fn href(path: &str) -> Option<String> {
    version(path).map(|version| format!("/assets/{path}?v={version}"))
}

/// Whether a request with this `If-None-Match` header value already has the current version of
/// the asset named `path`, so that `304 Not Modified` is the answer.
///
/// The header may list several tags, mark them weak (`W/`), or be `*`; comparison is the weak
/// one that RFC 9110 prescribes for `If-None-Match`.
pub fn not_modified(path: &str, if_none_match: Option<&str>) -> bool {
    let (Some(current), Some(header)) = (etag(path), if_none_match) else {
        return false;
    };
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == current)
}

/// FNV-1a, 64 bits, over `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// `hash` as 16 hex digits between double quotes: an entity tag whose inner part is the
/// version.
fn quoted_hex(hash: u64) -> String {
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::ansi::{ATTRIBUTE_CLASSES, LOG_BLOCK_LINES};
    use crate::web::contrast::parse_hex;

    #[test]
    fn assets_are_found_by_name_only() {
        assert_eq!(
            asset("slipway.css"),
            Some(("text/css; charset=utf-8", CSS.as_str()))
        );
        assert_eq!(
            asset("build-log.js"),
            Some(("text/javascript; charset=utf-8", BUILD_LOG_JS))
        );
        for other in [
            "",
            "slipway.CSS",
            "../Cargo.toml",
            "/slipway.css",
            "slipway.css/",
        ] {
            assert_eq!(asset(other), None, "{other:?}");
            assert_eq!(etag(other), None);
            assert_eq!(href(other), None);
        }
        assert!(CSS.len() > 1000);
        assert!(BUILD_LOG_JS.len() > 1000);
    }

    #[test]
    fn versions_follow_the_content() {
        let css = format!("{:016x}", fnv1a(CSS.as_bytes()));
        assert_eq!(version("slipway.css"), Some(css.as_str()));
        assert_eq!(etag("slipway.css"), Some(format!("\"{css}\"").as_str()));
        assert_eq!(
            href("slipway.css"),
            Some(format!("/assets/slipway.css?v={css}"))
        );
        let js = format!("{:016x}", fnv1a(BUILD_LOG_JS.as_bytes()));
        assert_eq!(version("build-log.js"), Some(js.as_str()));
        assert_ne!(version("slipway.css"), version("build-log.js"));
        // The reference values of FNV-1a 64.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn if_none_match_is_compared_weakly() {
        let current = etag("slipway.css").expect("a tag");
        assert!(not_modified("slipway.css", Some(current)));
        assert!(not_modified("slipway.css", Some(&format!("W/{current}"))));
        assert!(not_modified(
            "slipway.css",
            Some(&format!("\"old\", {current}"))
        ));
        assert!(not_modified("slipway.css", Some("*")));
        assert!(!not_modified("slipway.css", Some("\"old\"")));
        assert!(!not_modified("slipway.css", None));
        assert!(!not_modified("nothing.css", Some("*")));
        assert!(!not_modified("build-log.js", Some(current)));
    }

    /// Whether the stylesheet has a selector for `.class` (not merely a longer class name that
    /// starts with it).
    fn defines_class(css: &str, class: &str) -> bool {
        let selector = format!(".{class}");
        css.match_indices(&selector).any(|(at, _)| {
            css[at + selector.len()..]
                .chars()
                .next()
                .is_some_and(|next| !(next.is_ascii_alphanumeric() || next == '-' || next == '_'))
        })
    }

    /// The value of `property` in the one-line rule for `.class` (`.class { a: b; c: d; }`).
    fn rule_value<'a>(css: &'a str, class: &str, property: &str) -> Option<&'a str> {
        let start = format!(".{class} {{");
        let line = css.lines().find(|line| line.starts_with(&start))?;
        let key = format!("{property}: ");
        let at = line.find(&format!(" {key}"))? + 1 + key.len();
        line[at..].split(';').next().map(str::trim)
    }

    /// Every colour class: `ansi-fg-0` … `ansi-fg-255`, then the same for backgrounds.
    fn colour_classes() -> Vec<String> {
        [FG_PREFIX, BG_PREFIX]
            .iter()
            .flat_map(|prefix| (0..=255u8).map(move |index| format!("{prefix}{index}")))
            .collect()
    }

    #[test]
    fn stylesheet_defines_every_class_the_renderers_emit() {
        let css = CSS.as_str();
        for class in colour_classes() {
            assert!(defines_class(css, &class), "slipway.css lacks .{class}");
        }
        let classes = ATTRIBUTE_CLASSES.iter().chain(&[
            "log-block",
            "log-tail",
            "log",
            "sr-only",
            "duration-chart",
        ]);
        for class in classes {
            assert!(defines_class(css, class), "slipway.css lacks .{class}");
        }
        for status in [
            "queued",
            "running",
            "succeeded",
            "failed",
            "cancelled",
            "skipped",
        ] {
            assert!(defines_class(css, &format!("status-{status}")), "{status}");
        }
        // Long logs rely on these to stay responsive.
        assert!(css.contains("content-visibility: auto"));
        assert!(css.contains("contain-intrinsic-size"));
        assert!(css.contains(":focus-visible"));
        assert_eq!(css.matches('{').count(), css.matches('}').count());
    }

    #[test]
    fn colour_rules_are_generated_once_in_cascade_order() {
        // Each marker is in the source once and gone from the result.
        for marker in [BG_MARKER, FG_MARKER] {
            assert_eq!(CSS_SOURCE.matches(marker).count(), 1, "{marker}");
            assert!(!CSS.contains(marker), "{marker}");
        }
        // Every class has exactly one rule.
        for class in colour_classes() {
            let rule = format!(".{class} {{");
            assert_eq!(CSS.matches(&rule).count(), 1, "{rule}");
        }
        // Every background rule comes before every foreground rule: both set `color`, and the
        // foreground's must win on a span that has both.
        let last_background = CSS
            .rfind(&format!(".{BG_PREFIX}"))
            .expect("background rules");
        let first_foreground = CSS
            .find(&format!(".{FG_PREFIX}"))
            .expect("foreground rules");
        assert!(last_background < first_foreground);
        // Colours keep xterm's values where they are readable already.
        assert_eq!(rule_value(&CSS, "ansi-fg-208", "color"), Some("#ff8700"));
        assert_eq!(rule_value(&CSS, "ansi-fg-231", "color"), Some("#ffffff"));
        assert_eq!(
            rule_value(&CSS, "ansi-bg-17", "background-color"),
            Some("#00005f")
        );
        assert_eq!(rule_value(&CSS, "ansi-bg-17", "color"), Some("#ffffff"));
        assert_eq!(rule_value(&CSS, "ansi-bg-231", "color"), Some("#000000"));
        // Dark ones are lifted towards white, keeping their hue.
        let navy = rule_value(&CSS, "ansi-fg-17", "color")
            .and_then(parse_hex)
            .expect("a colour for 17");
        assert_ne!(navy, (0, 0, 0x5f));
        assert!(navy.2 > navy.0 && navy.0 == navy.1, "{navy:?}");
    }

    #[test]
    fn the_log_background_is_the_stylesheets() {
        let background = CSS
            .lines()
            .find_map(|line| line.trim().strip_prefix("--log-bg: "))
            .and_then(|value| parse_hex(value.trim_end_matches(';')))
            .expect("--log-bg in slipway.css");
        assert_eq!(background, LOG_BACKGROUND);
    }

    #[test]
    fn terminal_colours_are_readable_on_the_log_background() {
        let background = LOG_BACKGROUND;
        for index in 0..=255u8 {
            let class = format!("{FG_PREFIX}{index}");
            let colour = rule_value(&CSS, &class, "color")
                .and_then(parse_hex)
                .unwrap_or_else(|| panic!("no colour for .{class}"));
            let ratio = contrast_ratio(colour, background);
            assert!(ratio >= 4.5, ".{class} has contrast {ratio:.2} on the log");
        }
        for index in 0..=255u8 {
            let class = format!("{BG_PREFIX}{index}");
            let fill = rule_value(&CSS, &class, "background-color").and_then(parse_hex);
            let text = rule_value(&CSS, &class, "color").and_then(parse_hex);
            let (Some(fill), Some(text)) = (fill, text) else {
                panic!(".{class} needs a background-color and a color");
            };
            let ratio = contrast_ratio(fill, text);
            assert!(ratio >= 4.5, ".{class} has contrast {ratio:.2}");
        }
    }

    #[test]
    fn status_pills_keep_white_text_readable() {
        for status in ["queued", "running", "succeeded", "failed"] {
            let start = format!(".status-{status} {{");
            let at = CSS.find(&start).expect("the rule") + start.len();
            let body = &CSS[at..at + CSS[at..].find('}').expect("the rule's end")];
            let fill = body
                .split(';')
                .find_map(|declaration| declaration.trim().strip_prefix("background: "))
                .and_then(parse_hex)
                .expect("a #rrggbb background");
            let ratio = contrast_ratio(fill, (255, 255, 255));
            assert!(ratio >= 4.5, "{status}: {ratio:.2}");
        }
    }

    #[test]
    fn script_matches_the_page_contract() {
        for needle in [
            "'follow-tail'",
            "'build-status'",
            "getElementById('log')",
            "dataset.streamUrl",
            "dataset.offset",
            "'ended'",
            "addEventListener('log'",
            "addEventListener('status'",
            "addEventListener('end'",
            "'offset='",
            "'ansi-fg-'",
            "'ansi-bg-'",
            "'log-block'",
            "'log-tail'",
            "requestAnimationFrame",
        ] {
            assert!(BUILD_LOG_JS.contains(needle), "build-log.js lacks {needle}");
        }
        let attributes = format!(
            "const ATTRIBUTE_CLASSES = [{}];",
            ATTRIBUTE_CLASSES
                .map(|class| format!("'{class}'"))
                .join(", ")
        );
        assert!(BUILD_LOG_JS.contains(&attributes), "{attributes}");
        assert!(BUILD_LOG_JS.contains(&format!("const BLOCK_LINES = {LOG_BLOCK_LINES};")));
        // Nothing that a strict Content-Security-Policy forbids.
        for forbidden in ["eval(", "new Function", "setTimeout('", "document.write"] {
            assert!(!BUILD_LOG_JS.contains(forbidden), "{forbidden}");
        }
    }

    /// Runs the script's converter under Node on the same inputs as
    /// [`crate::web::ansi::ansi_to_html`] and compares the results: the server renders the
    /// first part of a log and the browser the rest, and the two must look the same. Node is
    /// part of the test rig (`scripts/rig/up` installs Debian's `nodejs` when no `node` is on
    /// `PATH`), so a machine without it fails here rather than skipping the comparison.
    #[test]
    fn script_converter_matches_the_rust_one() {
        use std::process::Command;

        if let Err(error) = Command::new("node").arg("--version").output() {
            panic!(
                "cannot run `node` ({error}): the JavaScript log renderer must be compared with \
                 the Rust one; run scripts/rig/up (it installs Debian's nodejs) or put a node \
                 on PATH"
            );
        }
        let mut cases: Vec<String> = [
            "plain <b> & \"q\" 'a'",
            "\x1b[1;31mred\x1b[0m normal\n\x1b[38;5;208morange\x1b[48;2;1;2;3m rgb",
            "10%\r50%\r100%\r\nnext\x1b[4:0mx\x1b[4:3my",
            "\x1b]8;;http://e.invalid\x1b\\link\x1b]8;;\x07 \x1b(B\x1b[?25l\x1b[2K",
            "ab\x08c\x1b[38:2::9:8:7mtrue\x1b[38;5mx\x1b[38;2;300;0;0my\x1b[38;7;1mz",
            "\u{9b}32mc1\u{9d}title\u{9c}\x1b\u{e9}\x1b[31\nbroken\x00\x7f\u{85}",
            "emoji \u{1f600}\x08x \u{6f22}\u{5b57}\t\ttab",
            "\x1b[38;2;255;135;0m208\x1b[48;2;47;48;114mgrey\x1b[38;2;1;1;1;48;2;250;250;250mx",
            "\x1b[1;48;5;17;38;5;230mboth\x1b[38:2:10:20:30m\x1b[48;5;255my\x1b[39;49mz",
        ]
        .map(String::from)
        .to_vec();
        // A deterministic mix of fragments, to reach combinations no one thought to write.
        let fragments = [
            "\x1b", "\x1b[", "\x1b]", "[", ";", ":", "m", "1", "3", "8", "5", "2", "9", "0", "\r",
            "\n", "\x08", "\x07", "<", "&", "x", "\u{9b}", "\u{9c}", "\\", "?", "4",
        ];
        let mut seed: u64 = 0x5eed;
        for _ in 0..3000 {
            let mut case = String::new();
            for _ in 0..(seed % 24) {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                case.push_str(fragments[(seed >> 33) as usize % fragments.len()]);
            }
            seed = seed.wrapping_add(1);
            cases.push(case);
        }
        let expected: Vec<String> = cases
            .iter()
            .map(|case| crate::web::ansi::ansi_to_html(case))
            .collect();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let input = dir.path().join("cases.json");
        std::fs::write(
            &input,
            serde_json::to_string(&cases).expect("cases as JSON"),
        )
        .expect("the cases written");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/build-log.js");
        let output = Command::new("node")
            .arg("-e")
            .arg(
                "const m = require(process.argv[1]);\
                 const cases = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));\
                 process.stdout.write(JSON.stringify(cases.map(m.ansiToHtml)));",
            )
            .arg(script)
            .arg(&input)
            .output()
            .expect("node ran");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let actual: Vec<String> =
            serde_json::from_slice(&output.stdout).expect("node's answer as JSON");
        assert_eq!(actual.len(), expected.len());
        for ((case, rust), js) in cases.iter().zip(&expected).zip(&actual) {
            assert_eq!(rust, js, "the converters differ on {case:?}");
        }

        // The truecolour mapping on a grid through the whole RGB cube, directly.
        let output = Command::new("node")
            .arg("-e")
            .arg(
                "const m = require(process.argv[1]);\
                 const out = [];\
                 for (let r = 0; r < 256; r += 5)\
                   for (let g = 0; g < 256; g += 15)\
                     for (let b = 0; b < 256; b += 17) out.push(m.nearestXtermIndex(r, g, b));\
                 process.stdout.write(JSON.stringify(out));",
            )
            .arg(script)
            .output()
            .expect("node ran");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let js: Vec<u8> = serde_json::from_slice(&output.stdout).expect("node's answer as JSON");
        let mut rust = Vec::new();
        for r in (0..=255u8).step_by(5) {
            for g in (0..=255u8).step_by(15) {
                for b in (0..=255u8).step_by(17) {
                    rust.push(crate::web::ansi::nearest_xterm_index(r, g, b));
                }
            }
        }
        assert_eq!(js, rust, "the truecolour mappings differ");
    }
}
