//! The dashboard's static files, compiled into the binary and served under `/assets/`.
//!
//! **Caching.** Each file has a version: a hash of its content computed at compile time, so it
//! changes exactly when the file does. A handler can use it in either (or both) of two ways:
//!
//! - Revalidation: send `ETag: <etag(path)>` and `Cache-Control: no-cache`, and answer
//!   `304 Not Modified` without a body when [`not_modified`] says the request's
//!   `If-None-Match` already names it.
//! - Cache busting: link to [`href`] (`/assets/slipway.css?v=<version>`) from the pages, and
//!   when a request's `v` equals [`version`], send [`IMMUTABLE_CACHE_CONTROL`]: browsers then
//!   never ask again, and a new build links to a new URL.
//!
//! The hash is FNV-1a (64 bits): it only has to tell versions of our own files apart, not
//! resist anyone, and it can be computed in a `const` context, so nothing runs at start-up.

/// The stylesheet of every dashboard page.
pub const CSS: &str = include_str!("../../assets/slipway.css");
/// The live build log (see the comment at the top of the file for the markup it expects).
pub const BUILD_LOG_JS: &str = include_str!("../../assets/build-log.js");

/// `Cache-Control` for a request of the current version of a file through [`href`].
pub const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

const CSS_CONTENT_TYPE: &str = "text/css; charset=utf-8";
const JS_CONTENT_TYPE: &str = "text/javascript; charset=utf-8";

/// The content type and content of the asset named `path` (the part after `/assets/`), or
/// `None` for any other name.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "slipway.css" => Some((CSS_CONTENT_TYPE, CSS)),
        "build-log.js" => Some((JS_CONTENT_TYPE, BUILD_LOG_JS)),
        _ => None,
    }
}

/// The version of the asset named `path`: 16 lower-case hex digits of its content hash.
pub fn version(path: &str) -> Option<&'static str> {
    match path {
        "slipway.css" => Some(CSS_VERSION),
        "build-log.js" => Some(JS_VERSION),
        _ => None,
    }
}

/// The strong entity tag of the asset named `path`: its version in double quotes, ready for an
/// `ETag` header.
pub fn etag(path: &str) -> Option<&'static str> {
    match path {
        "slipway.css" => Some(CSS_ETAG),
        "build-log.js" => Some(JS_ETAG),
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
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        index += 1;
    }
    hash
}

/// `hash` as 16 hex digits between double quotes: an entity tag whose inner part is the
/// version.
const fn quoted_hex(hash: u64) -> [u8; 18] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut index = 0;
    while index < 16 {
        let nibble = (hash >> (60 - 4 * index)) & 0xf;
        out[1 + index] = DIGITS[nibble as usize];
        index += 1;
    }
    out
}

/// Views ASCII bytes as a `str`; only used on [`quoted_hex`]'s output, which is ASCII, so the
/// error arm cannot be reached (and would stop the build, not the server: this runs at compile
/// time).
const fn ascii_str(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => panic!("hex digits and quotes are ASCII"),
    }
}

const CSS_TAG_BYTES: [u8; 18] = quoted_hex(fnv1a(CSS.as_bytes()));
const JS_TAG_BYTES: [u8; 18] = quoted_hex(fnv1a(BUILD_LOG_JS.as_bytes()));
const CSS_ETAG: &str = ascii_str(&CSS_TAG_BYTES);
const JS_ETAG: &str = ascii_str(&JS_TAG_BYTES);
const CSS_VERSION: &str = ascii_str(CSS_TAG_BYTES.split_at(17).0.split_at(1).1);
const JS_VERSION: &str = ascii_str(JS_TAG_BYTES.split_at(17).0.split_at(1).1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::ansi::{ATTRIBUTE_CLASSES, BG_CLASSES, FG_CLASSES, LOG_BLOCK_LINES};
    use crate::web::contrast::{contrast_ratio, parse_hex};

    #[test]
    fn assets_are_found_by_name_only() {
        assert_eq!(asset("slipway.css"), Some(("text/css; charset=utf-8", CSS)));
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

    #[test]
    fn stylesheet_defines_every_class_the_renderers_emit() {
        let classes = FG_CLASSES
            .iter()
            .chain(&BG_CLASSES)
            .chain(&ATTRIBUTE_CLASSES)
            .chain(&["log-block", "log-tail", "log", "sr-only", "duration-chart"]);
        for class in classes {
            assert!(defines_class(CSS, class), "slipway.css lacks .{class}");
        }
        for status in [
            "queued",
            "running",
            "succeeded",
            "failed",
            "cancelled",
            "skipped",
        ] {
            assert!(defines_class(CSS, &format!("status-{status}")), "{status}");
        }
        // Long logs rely on these to stay responsive.
        assert!(CSS.contains("content-visibility: auto"));
        assert!(CSS.contains("contain-intrinsic-size"));
        assert!(CSS.contains(":focus-visible"));
        assert_eq!(CSS.matches('{').count(), CSS.matches('}').count());
    }

    #[test]
    fn terminal_colours_are_readable_on_the_log_background() {
        let background = CSS
            .lines()
            .find_map(|line| line.trim().strip_prefix("--log-bg: "))
            .and_then(|value| parse_hex(value.trim_end_matches(';')))
            .expect("--log-bg in slipway.css");
        for class in FG_CLASSES {
            let colour = rule_value(CSS, class, "color")
                .and_then(parse_hex)
                .unwrap_or_else(|| panic!("no colour for .{class}"));
            let ratio = contrast_ratio(colour, background);
            assert!(ratio >= 4.5, ".{class} has contrast {ratio:.2} on the log");
        }
        for class in BG_CLASSES {
            let fill = rule_value(CSS, class, "background-color").and_then(parse_hex);
            let text = rule_value(CSS, class, "color").and_then(parse_hex);
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

    /// Runs the script's converter under Node, when Node is installed, on the same inputs as
    /// [`crate::web::ansi::ansi_to_html`] and compares the results: the server renders the
    /// first part of a log and the browser the rest, and the two must look the same.
    #[test]
    fn script_converter_matches_the_rust_one() {
        use std::process::Command;

        if Command::new("node").arg("--version").output().is_err() {
            eprintln!("node is not installed; the JavaScript converter was not compared");
            return;
        }
        let mut cases: Vec<String> = [
            "plain <b> & \"q\" 'a'",
            "\x1b[1;31mred\x1b[0m normal\n\x1b[38;5;208morange\x1b[48;2;1;2;3m rgb",
            "10%\r50%\r100%\r\nnext\x1b[4:0mx\x1b[4:3my",
            "\x1b]8;;http://e.invalid\x1b\\link\x1b]8;;\x07 \x1b(B\x1b[?25l\x1b[2K",
            "ab\x08c\x1b[38:2::9:8:7mtrue\x1b[38;5mx\x1b[38;2;300;0;0my\x1b[38;7;1mz",
            "\u{9b}32mc1\u{9d}title\u{9c}\x1b\u{e9}\x1b[31\nbroken\x00\x7f\u{85}",
            "emoji \u{1f600}\x08x \u{6f22}\u{5b57}\t\ttab",
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
    }
}
