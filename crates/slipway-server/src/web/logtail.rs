//! Which part of a build log the build page renders itself, and where the live stream takes
//! over.
//!
//! The page shows at most the log's last [`RENDERED_LOG_BYTES`], starting at a line start, and
//! hands `build-log.js` the byte offset just after the last complete line it showed
//! (`data-offset`), from which the script streams the rest. Everything is computed on the
//! stored bytes, never on decoded text, where an invalid byte becomes a three-byte replacement
//! character and would shift every offset after it.

use super::ansi;

/// The most log text a build page renders itself; the rest is a click (or a download) away.
pub const RENDERED_LOG_BYTES: i64 = 512 * 1024;

/// The rendered tail of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail {
    /// The shown part as HTML (see [`ansi::log_html`]).
    pub html: String,
    /// The offset after the last byte shown: where the live stream starts (`data-offset`).
    pub offset: i64,
    /// How many bytes at the log's start are not shown (the page says so when it is not 0).
    pub skipped: i64,
}

/// Where to start reading a log of `size` bytes to render its tail with [`render_tail`]: one
/// byte before the window of the last `limit` bytes, so that [`render_tail`] can tell whether
/// the window already begins at a line start.
pub fn read_from(size: i64, limit: i64) -> i64 {
    if size > limit { size - limit - 1 } else { 0 }
}

/// Renders the tail of a log from `bytes`, the log's bytes from offset `start` to its current
/// end (as read from [`read_from`]).
///
/// The part shown is the last `limit` bytes or less: it begins at the first line start inside
/// that window (a log whose window holds no line start at all, one enormous line, is shown from
/// the window's start). A running build's last line may still grow, so only complete lines are
/// shown and the stream sends the rest; a finished build's log is shown to its end.
pub fn render_tail(start: i64, bytes: &[u8], limit: i64, finished: bool) -> LogTail {
    let start = start.max(0);
    let end = start + i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let window = (end - limit.max(0)).max(start).max(0);
    // The index in `bytes` of the first byte shown.
    let from = if window == 0 {
        0
    } else {
        // A line starts at the window when the byte before it ends a line, so the search for
        // a line break begins one byte before the window, where `read_from` put `start`.
        let search = usize::try_from((window - 1 - start).max(0)).unwrap_or(0);
        let window_index = usize::try_from(window - start).unwrap_or(0);
        bytes
            .get(search..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map_or(window_index, |at| search + at + 1)
            .min(bytes.len())
    };
    let rest = &bytes[from..];
    let shown = if finished {
        rest.len()
    } else {
        rest.iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1)
    };
    let skipped = start + i64::try_from(from).unwrap_or(0);
    LogTail {
        html: ansi::log_html(&String::from_utf8_lossy(&rest[..shown])),
        offset: skipped + i64::try_from(shown).unwrap_or(0),
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of rendered HTML without the block spans (the inputs here have no escapes).
    fn text(html: &str) -> String {
        html.replace("<span class=\"log-block\">", "")
            .replace("</span>", "")
    }

    /// A log of `lines` numbered lines of 100 bytes each.
    fn numbered(lines: usize) -> Vec<u8> {
        (0..lines)
            .flat_map(|n| format!("{n:>99}\n").into_bytes())
            .collect()
    }

    /// The tail of `log` rendered the way the page reads it: from [`read_from`] to the end.
    fn tail_of(log: &[u8], limit: i64, finished: bool) -> LogTail {
        let size = i64::try_from(log.len()).expect("a size");
        let start = read_from(size, limit);
        let from = usize::try_from(start).expect("an index");
        render_tail(start, &log[from..], limit, finished)
    }

    #[test]
    fn a_short_log_is_shown_whole() {
        let log = b"one\ntwo\nthree";
        let running = tail_of(log, RENDERED_LOG_BYTES, false);
        assert_eq!(text(&running.html), "one\ntwo\n");
        assert_eq!(running.skipped, 0);
        assert_eq!(
            running.offset, 8,
            "the stream resumes at the unfinished line"
        );
        let finished = tail_of(log, RENDERED_LOG_BYTES, true);
        assert_eq!(text(&finished.html), "one\ntwo\nthree");
        assert_eq!(finished.offset, 13);
        assert_eq!(tail_of(b"", RENDERED_LOG_BYTES, false).offset, 0);
        assert_eq!(
            tail_of(b"no line break yet", RENDERED_LOG_BYTES, false),
            LogTail {
                html: String::new(),
                offset: 0,
                skipped: 0
            }
        );
    }

    #[test]
    fn a_log_over_the_limit_shows_its_last_whole_lines() {
        // 6,000 lines of 100 bytes: 600,000 bytes, more than 512 KiB.
        let log = numbered(6000);
        let size = i64::try_from(log.len()).expect("a size");
        assert!(size > RENDERED_LOG_BYTES);
        let tail = tail_of(&log, RENDERED_LOG_BYTES, true);
        // The window of the last 524,288 bytes starts 75,712 bytes in, in line 757; the shown
        // part starts at the next line.
        assert_eq!(tail.skipped, 758 * 100);
        assert_eq!(tail.offset, size);
        assert!(size - tail.skipped <= RENDERED_LOG_BYTES);
        let shown = text(&tail.html);
        assert!(
            shown.starts_with(&format!("{:>99}\n", 758)),
            "{}",
            &shown[..200]
        );
        assert!(shown.ends_with(&format!("{:>99}\n", 5999)));
        assert_eq!(shown.len(), log.len() - 75_800);
    }

    #[test]
    fn a_window_that_starts_at_a_line_start_loses_no_line() {
        // 10 lines of 100 bytes and a limit of 500: the window starts exactly at line 5.
        let log = numbered(10);
        let tail = tail_of(&log, 500, true);
        assert_eq!(tail.skipped, 500);
        assert!(text(&tail.html).starts_with(&format!("{:>99}\n", 5)));
        // One byte more and line 5 no longer fits: the shown part starts at line 6.
        let tail = tail_of(&log, 499, true);
        assert_eq!(tail.skipped, 600);
        // One byte less and the window starts on line 4's line break: line 5 is still first.
        let tail = tail_of(&log, 501, true);
        assert_eq!(tail.skipped, 500);
    }

    #[test]
    fn the_stream_takes_over_after_the_last_complete_line() {
        let mut log = numbered(6000);
        log.extend_from_slice(b"half a line");
        let size = i64::try_from(log.len()).expect("a size");
        let tail = tail_of(&log, RENDERED_LOG_BYTES, false);
        // Everything before the unfinished line, and nothing of it.
        assert_eq!(tail.offset, size - 11);
        assert_eq!(
            log[usize::try_from(tail.offset).expect("offset") - 1],
            b'\n'
        );
        assert!(!tail.html.contains("half"));
        assert!(text(&tail.html).ends_with(&format!("{:>99}\n", 5999)));
        // Finished, the last line is shown too and nothing is left to stream.
        let tail = tail_of(&log, RENDERED_LOG_BYTES, true);
        assert_eq!(tail.offset, size);
        assert!(tail.html.ends_with("half a line</span>"));
    }

    #[test]
    fn offsets_count_stored_bytes_even_when_they_are_not_utf8() {
        // Each invalid byte is one stored byte but three bytes of U+FFFD once decoded.
        let mut log = Vec::new();
        for n in 0..20 {
            log.extend_from_slice(format!("line {n} ").as_bytes());
            log.extend_from_slice(&[0xff, 0xfe, 0xff, 0xc3, b'\n']);
        }
        log.extend_from_slice(b"open \xff");
        let size = i64::try_from(log.len()).expect("a size");
        let running = tail_of(&log, 100, false);
        assert_eq!(running.offset, size - 6);
        let from = usize::try_from(running.skipped).expect("skipped");
        assert_eq!(
            log[from - 1],
            b'\n',
            "the shown part starts at a line start"
        );
        assert!(size - running.skipped <= 100);
        assert!(running.html.contains('\u{fffd}'));
        assert!(text(&running.html).ends_with("\u{fffd}\u{fffd}\n"));
        let finished = tail_of(&log, 100, true);
        assert_eq!(finished.offset, size);
        assert!(finished.html.ends_with("open \u{fffd}</span>"));
    }

    #[test]
    fn one_enormous_line_is_shown_from_the_window() {
        let log = vec![b'x'; 2000];
        let tail = tail_of(&log, 500, true);
        assert_eq!(tail.skipped, 1500);
        assert_eq!(tail.offset, 2000);
        assert_eq!(text(&tail.html).len(), 500);
        // Still running, nothing of it is complete, and the stream starts at the window.
        let tail = tail_of(&log, 500, false);
        assert_eq!((tail.skipped, tail.offset), (1500, 1500));
        assert!(tail.html.is_empty());
    }

    #[test]
    fn every_cut_is_at_a_line_start_and_within_the_limit() {
        // A log of lines of every length from 1 to 40, cut with every limit up to its size.
        let log: Vec<u8> = (1..=40usize)
            .flat_map(|n| {
                let mut line = vec![b'a' + u8::try_from(n % 26).expect("a letter"); n - 1];
                line.push(b'\n');
                line
            })
            .collect();
        let size = i64::try_from(log.len()).expect("a size");
        for limit in 1..=size + 1 {
            for finished in [false, true] {
                let tail = tail_of(&log, limit, finished);
                let from = usize::try_from(tail.skipped).expect("skipped");
                assert!(
                    from == 0 || log[from - 1] == b'\n',
                    "limit {limit}: starts mid-line at {from}"
                );
                assert!(size - tail.skipped <= limit, "limit {limit}");
                // No line that fits the window whole is left out.
                if from > 0 {
                    let previous_start = log[..from - 1]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |at| at + 1);
                    let previous = i64::try_from(previous_start).expect("an offset");
                    assert!(size - previous > limit, "limit {limit}: a line was lost");
                }
                assert_eq!(tail.offset, size, "the log ends with a line break");
                let shown = usize::try_from(tail.offset - tail.skipped).expect("a length");
                assert_eq!(text(&tail.html).len(), shown);
            }
        }
    }
}
