//! Build logs as HTML: terminal colours and text attributes become `<span>` elements with
//! `ansi-*` classes, everything else a terminal would act on is dropped, and all text is escaped.
//!
//! The model is a line printer, not a full terminal emulator: a log is a sequence of lines, and
//! within a line a carriage return starts the visible text over (progress bars redraw that way),
//! a backspace removes the character before it, and SGR sequences (`ESC [ … m`) change the style
//! of what follows. Cursor movement, erasing, window titles, hyperlinks (OSC) and every other
//! escape sequence are removed without trace, because reproducing them needs a screen grid that
//! a scrolling log does not have.
//!
//! The same model lives in `assets/build-log.js` for the text that arrives after the page has
//! loaded; the two must produce the same class names (the stylesheet test checks the names).
//!
//! **Invariants:** the output never contains a `<` that came from the input, and attribute
//! values are built only from the class names below.
//!
//! **Colours are classes, never `style` attributes**, because the dashboard's
//! Content-Security-Policy (`style-src 'self'`, no `'unsafe-inline'`) makes browsers ignore
//! inline styles. Every colour is one of xterm's 256 indexes and becomes `ansi-fg-N` or
//! `ansi-bg-N` (`N` from 0 to 255); the stylesheet defines all 512 classes (see
//! [`super::assets`], which generates the rules for 16–255). SGR 30–37 and 90–97 (and their
//! background forms) are indexes 0–15. A truecolour (`38;2;r;g;b`) is drawn as the nearest of
//! indexes 16–255 — the 6×6×6 cube and the grey ramp — by squared RGB distance, the way tmux
//! maps truecolour for 256-colour terminals ([`nearest_xterm_index`]); indexes 0–15 are left
//! out because their shades are the stylesheet's choice, not fixed values.

use std::fmt::Write as _;

use super::escape_into;

/// The start of a foreground colour's class name; the xterm index follows (`ansi-fg-196`).
pub(crate) const FG_PREFIX: &str = "ansi-fg-";
/// The start of a background colour's class name; the xterm index follows (`ansi-bg-24`).
pub(crate) const BG_PREFIX: &str = "ansi-bg-";

/// Classes for the text attributes, in the order they are written into a `class` attribute.
pub(crate) const ATTRIBUTE_CLASSES: [&str; 4] =
    ["ansi-bold", "ansi-dim", "ansi-italic", "ansi-underline"];

const BOLD: usize = 0;
const DIM: usize = 1;
const ITALIC: usize = 2;
const UNDERLINE: usize = 3;

/// How many log lines go into one `log-block` element; `build-log.js` uses the same number so
/// that server-rendered and streamed blocks have the same size for `contain-intrinsic-size`.
pub const LOG_BLOCK_LINES: usize = 500;

/// Converts terminal text to escaped HTML with `ansi-*` classes (see the module documentation).
///
/// Line breaks are kept as `\n`, so the result belongs inside a `<pre>`. Every line is
/// self-contained: spans are closed at the end of a line and reopened on the next when a style
/// carries over, so the output may be cut between lines (as [`log_html`] does).
#[allow(
    dead_code,
    reason = "the pages render whole logs with log_html; this one-line form is what the script's converter is tested against"
)]
pub fn ansi_to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut first = true;
    for_each_line(text, |runs| {
        if !first {
            out.push('\n');
        }
        first = false;
        render_runs(&mut out, runs);
    });
    out
}

/// The visible text of a terminal log: what [`ansi_to_html`] shows, without markup or escaping.
#[allow(
    dead_code,
    reason = "for plain-text uses of log lines (notifications); tested with the renderer"
)]
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut first = true;
    for_each_line(text, |runs| {
        if !first {
            out.push('\n');
        }
        first = false;
        for run in runs {
            out.push_str(&run.text);
        }
    });
    out
}

/// Renders a log for `<pre id="log">`: [`ansi_to_html`]'s lines grouped in
/// `<span class="log-block">` elements of [`LOG_BLOCK_LINES`] lines each.
///
/// The blocks let the browser skip layout and painting of the parts of a long log that are off
/// screen (`content-visibility: auto` in the stylesheet), and `build-log.js` appends its own
/// blocks after them. Each line inside a block ends with `\n`, except a last line that the
/// text did not end.
pub fn log_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut lines_in_block = 0;
    let mut block_open = false;
    let mut previous_line_pending = false;
    for_each_line(text, |runs| {
        // A line's break is written when the next line begins, into the block of the line it
        // ends; the block is closed once it holds a full set of ended lines. Blocks are opened
        // only for content, so a text that ends with a line break gets no empty last block.
        if previous_line_pending {
            if !block_open {
                out.push_str("<span class=\"log-block\">");
                block_open = true;
            }
            out.push('\n');
            lines_in_block += 1;
            if lines_in_block == LOG_BLOCK_LINES {
                out.push_str("</span>");
                block_open = false;
                lines_in_block = 0;
            }
        }
        if !runs.is_empty() && !block_open {
            out.push_str("<span class=\"log-block\">");
            block_open = true;
        }
        render_runs(&mut out, runs);
        previous_line_pending = true;
    });
    if block_open {
        out.push_str("</span>");
    }
    out
}

/// A colour as SGR can set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Colour {
    /// The terminal's default: no class.
    #[default]
    Default,
    /// One of xterm's 256 colours, drawn with its `ansi-fg-N` or `ansi-bg-N` class.
    Indexed(u8),
}

/// The text style that SGR sequences build up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Style {
    attributes: [bool; 4],
    fg: Colour,
    bg: Colour,
}

impl Style {
    fn is_plain(&self) -> bool {
        *self == Style::default()
    }

    /// Applies the parameters of one SGR sequence (the text between `ESC [` and `m`).
    ///
    /// Unknown codes are ignored, as terminals do, so that a code this renderer does not draw
    /// (blink, reverse, strike-through) does not disturb the ones it does.
    fn apply_sgr(&mut self, params: &str) {
        let groups: Vec<&str> = params.split(';').collect();
        let mut index = 0;
        while index < groups.len() {
            let group = groups[index];
            let mut parts = group.split(':');
            let code = parts.next().map_or(0, parse_number);
            match code {
                0 => *self = Style::default(),
                1 => self.attributes[BOLD] = true,
                2 => self.attributes[DIM] = true,
                3 => self.attributes[ITALIC] = true,
                // `4:0` is "no underline" in the colon form; `4:3` and friends are curly and
                // other underline kinds, all drawn as a plain underline here.
                4 => self.attributes[UNDERLINE] = parts.next().map(parse_number) != Some(0),
                22 => {
                    self.attributes[BOLD] = false;
                    self.attributes[DIM] = false;
                }
                23 => self.attributes[ITALIC] = false,
                24 => self.attributes[UNDERLINE] = false,
                30..=37 => self.fg = basic(code - 30),
                90..=97 => self.fg = basic(code - 90 + 8),
                39 => self.fg = Colour::Default,
                40..=47 => self.bg = basic(code - 40),
                100..=107 => self.bg = basic(code - 100 + 8),
                49 => self.bg = Colour::Default,
                38 | 48 => {
                    let colour = if group.contains(':') {
                        let values: Vec<u32> = parts.map(parse_number).collect();
                        extended_colour_from_subparameters(&values)
                    } else {
                        let (colour, used) = extended_colour_from_groups(&groups[index + 1..]);
                        index += used;
                        colour
                    };
                    if let Some(colour) = colour {
                        if code == 38 {
                            self.fg = colour;
                        } else {
                            self.bg = colour;
                        }
                    }
                }
                _ => {}
            }
            index += 1;
        }
    }

    /// Writes the opening `<span>` for this style; only called when the style is not plain,
    /// so there is always at least one class. The order is foreground, background, attributes,
    /// as in `build-log.js`.
    fn write_open_tag(&self, out: &mut String) {
        out.push_str("<span class=\"");
        let mut first = true;
        let mut separate = |out: &mut String| {
            if !std::mem::take(&mut first) {
                out.push(' ');
            }
        };
        // Writing to a `String` cannot fail, so the results are ignored.
        if let Colour::Indexed(index) = self.fg {
            separate(out);
            let _ = write!(out, "{FG_PREFIX}{index}");
        }
        if let Colour::Indexed(index) = self.bg {
            separate(out);
            let _ = write!(out, "{BG_PREFIX}{index}");
        }
        for (on, class) in self.attributes.iter().zip(ATTRIBUTE_CLASSES) {
            if *on {
                separate(out);
                out.push_str(class);
            }
        }
        out.push_str("\">");
    }
}

/// One of the 16 basic colours from an index that the callers keep below 16.
fn basic(index: u32) -> Colour {
    Colour::Indexed(u8::try_from(index).unwrap_or(0) % 16)
}

/// Parses one SGR parameter; an empty parameter means 0, and a huge one saturates rather than
/// wrapping into a small, valid-looking code.
fn parse_number(text: &str) -> u32 {
    text.bytes()
        .filter(u8::is_ascii_digit)
        .fold(0u32, |value, digit| {
            value
                .saturating_mul(10)
                .saturating_add(u32::from(digit - b'0'))
        })
}

/// Reads `5;n` or `2;r;g;b` after a `38` or `48` given with semicolons; answers the colour (if
/// valid) and how many groups it used, so that the caller skips them either way.
fn extended_colour_from_groups(rest: &[&str]) -> (Option<Colour>, usize) {
    let Some(mode) = rest.first().map(|group| parse_number(group)) else {
        return (None, 0);
    };
    let values = |count: usize| -> Vec<u32> {
        rest.iter()
            .skip(1)
            .take(count)
            .map(|group| parse_number(group))
            .collect()
    };
    match mode {
        5 => {
            let index = values(1);
            (index.first().and_then(|&n| colour_256(n)), 1 + index.len())
        }
        2 => {
            let rgb = values(3);
            (rgb_colour(&rgb), 1 + rgb.len())
        }
        // An unknown mode is skipped alone; what follows it is read as ordinary codes.
        _ => (None, 1),
    }
}

/// Reads the colon form: `38:5:n`, `38:2:r:g:b`, or ITU T.416's `38:2:colourspace:r:g:b`.
fn extended_colour_from_subparameters(values: &[u32]) -> Option<Colour> {
    match values.split_first() {
        Some((5, [index, ..])) => colour_256(*index),
        Some((2, rest)) if rest.len() >= 4 => rgb_colour(&rest[1..4]),
        Some((2, rest)) => rgb_colour(rest),
        _ => None,
    }
}

/// A colour from exactly three components of at most 255 each, as the nearest xterm index.
fn rgb_colour(values: &[u32]) -> Option<Colour> {
    match values {
        [r, g, b] => Some(Colour::Indexed(nearest_xterm_index(
            u8::try_from(*r).ok()?,
            u8::try_from(*g).ok()?,
            u8::try_from(*b).ok()?,
        ))),
        _ => None,
    }
}

/// One of xterm's 256 colours by index; anything above 255 is no colour.
fn colour_256(index: u32) -> Option<Colour> {
    u8::try_from(index).ok().map(Colour::Indexed)
}

/// The channel values of the 6×6×6 cube's six steps, as xterm defines them.
const CUBE_LEVELS: [u8; 6] = [0, 95, 135, 175, 215, 255];

/// The sRGB value of xterm colour `index` for indexes 16–255: the 6×6×6 cube (16–231) and the
/// 24-step grey ramp (232–255). Indexes 0–15 have no fixed value (the stylesheet picks their
/// shades), so they answer `None`.
pub(crate) fn xterm_rgb(index: u8) -> Option<(u8, u8, u8)> {
    match index {
        0..=15 => None,
        16..=231 => {
            let cube = usize::from(index - 16);
            Some((
                CUBE_LEVELS[cube / 36],
                CUBE_LEVELS[(cube / 6) % 6],
                CUBE_LEVELS[cube % 6],
            ))
        }
        _ => {
            let grey = 8 + 10 * (index - 232);
            Some((grey, grey, grey))
        }
    }
}

/// The xterm index (16–255) nearest to a truecolour, as tmux chooses it: the nearest cube step
/// of each channel gives a cube colour, the channels' mean gives a grey of the ramp, and the one
/// of the two closer to the colour (squared RGB distance; the cube on a tie) wins. An exact cube
/// colour is always itself.
pub(crate) fn nearest_xterm_index(r: u8, g: u8, b: u8) -> u8 {
    // The step whose level is nearest: the midpoints between the levels are 47.5, 115, 155,
    // 195 and 235, which `(v - 35) / 40` reproduces above the second one.
    let step = |v: u8| -> u8 {
        match v {
            0..=47 => 0,
            48..=114 => 1,
            _ => (v - 35) / 40,
        }
    };
    let (qr, qg, qb) = (step(r), step(g), step(b));
    let cube = (
        CUBE_LEVELS[usize::from(qr)],
        CUBE_LEVELS[usize::from(qg)],
        CUBE_LEVELS[usize::from(qb)],
    );
    let cube_index = 16 + 36 * qr + 6 * qg + qb;
    if cube == (r, g, b) {
        return cube_index;
    }
    let mean = (u16::from(r) + u16::from(g) + u16::from(b)) / 3;
    let grey_step = if mean > 238 {
        23
    } else {
        mean.saturating_sub(3) / 10
    };
    // `grey_step` is at most 23, so the grey level (at most 238) fits a byte.
    let grey_step = u8::try_from(grey_step).unwrap_or(23);
    let grey = 8 + 10 * grey_step;
    let distance = |(x, y, z): (u8, u8, u8)| -> u32 {
        let d = |a: u8, b: u8| (i32::from(a) - i32::from(b)).unsigned_abs().pow(2);
        d(x, r) + d(y, g) + d(z, b)
    };
    if distance((grey, grey, grey)) < distance(cube) {
        232 + grey_step
    } else {
        cube_index
    }
}

/// A stretch of text in one style.
#[derive(Debug)]
struct Run {
    style: Style,
    text: String,
}

/// Writes one line's runs as escaped HTML, each styled run in its own span.
fn render_runs(out: &mut String, runs: &[Run]) {
    for run in runs {
        if run.style.is_plain() {
            escape_into(out, &run.text);
        } else {
            run.style.write_open_tag(out);
            escape_into(out, &run.text);
            out.push_str("</span>");
        }
    }
}

/// The visible content of the line being read, and the style in force.
#[derive(Debug, Default)]
struct LineBuilder {
    style: Style,
    runs: Vec<Run>,
    /// A carriage return was read and no text since: the next text starts the line over. It is
    /// deferred because a carriage return just before a line break (CRLF) or the end changes
    /// nothing on a terminal.
    pending_return: bool,
}

impl LineBuilder {
    fn push_char(&mut self, c: char) {
        if self.pending_return {
            self.runs.clear();
            self.pending_return = false;
        }
        match self.runs.last_mut() {
            Some(run) if run.style == self.style => run.text.push(c),
            _ => self.runs.push(Run {
                style: self.style,
                text: c.to_string(),
            }),
        }
    }

    /// A backspace removes the character before it, the way `char\x08_` overstriking and
    /// spinners that back up over themselves look on a terminal. At the start of a line (also
    /// right after a carriage return) there is nothing to remove.
    fn backspace(&mut self) {
        if self.pending_return {
            return;
        }
        if let Some(run) = self.runs.last_mut() {
            run.text.pop();
            if run.text.is_empty() {
                self.runs.pop();
            }
        }
    }

    /// Ends the line: hands its runs over and keeps the style, which carries into the next line
    /// as it does on a terminal.
    fn finish(&mut self) -> Vec<Run> {
        self.pending_return = false;
        std::mem::take(&mut self.runs)
    }
}

/// What the scanner found at one point of the input.
#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    Text(char),
    LineBreak,
    CarriageReturn,
    Backspace,
    /// The parameters of an SGR sequence.
    Sgr(&'a str),
}

/// Splits terminal text into [`Token`]s and drops everything else.
///
/// Sequences follow ECMA-48: a CSI is `ESC [` (or U+009B), parameter bytes `0x30–0x3F`,
/// intermediate bytes `0x20–0x2F`, and a final byte `0x40–0x7E`. A byte that fits none of these
/// ends a broken sequence without being swallowed, so that garbage or a sequence cut off by a
/// line break loses at most the sequence, never the text after it.
#[derive(Debug)]
struct Scanner<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner { text, position: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.position..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.position += c.len_utf8();
        Some(c)
    }

    /// Reads a control sequence after its introducer; answers its parameters when it is SGR.
    fn control_sequence(&mut self) -> Option<&'a str> {
        let start = self.position;
        while matches!(self.peek(), Some('\u{30}'..='\u{3f}')) {
            self.position += 1;
        }
        let parameters = &self.text[start..self.position];
        let mut has_intermediates = false;
        while matches!(self.peek(), Some('\u{20}'..='\u{2f}')) {
            self.position += 1;
            has_intermediates = true;
        }
        match self.peek() {
            Some(final_byte @ '\u{40}'..='\u{7e}') => {
                self.position += 1;
                // Private sequences (parameters starting with `<`, `=`, `>` or `?`) and ones
                // with intermediates only look like SGR; they mean something else.
                let is_sgr = final_byte == 'm'
                    && !has_intermediates
                    && parameters
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b';' || b == b':');
                is_sgr.then_some(parameters)
            }
            // A cut-off or malformed sequence is dropped; the character that broke it is read
            // again as ordinary input.
            _ => None,
        }
    }

    /// Skips a control string (OSC, DCS, SOS, PM, APC) up to its terminator: BEL, `ESC \` or
    /// U+009C. A line break also ends it, so that one unterminated title sequence cannot hide
    /// the rest of a log; terminals would hide it, but a log reader is better served this way.
    fn skip_control_string(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                '\u{7}' | '\u{9c}' => {
                    self.position += c.len_utf8();
                    return;
                }
                '\u{1b}' => {
                    self.position += 1;
                    if self.peek() == Some('\\') {
                        self.position += 1;
                    }
                    return;
                }
                '\n' => return,
                _ => self.position += c.len_utf8(),
            }
        }
    }

    /// Reads what follows an ESC; answers SGR parameters when it is an SGR sequence.
    fn escape(&mut self) -> Option<&'a str> {
        match self.peek()? {
            '[' => {
                self.position += 1;
                self.control_sequence()
            }
            ']' | 'P' | 'X' | '^' | '_' => {
                self.position += 1;
                self.skip_control_string();
                None
            }
            // `ESC ( B` and other sequences with intermediates (character sets and the like).
            '\u{20}'..='\u{2f}' => {
                while matches!(self.peek(), Some('\u{20}'..='\u{2f}')) {
                    self.position += 1;
                }
                if matches!(self.peek(), Some('\u{30}'..='\u{7e}')) {
                    self.position += 1;
                }
                None
            }
            // Two-character sequences such as `ESC 7` (save cursor) or `ESC c` (reset).
            '\u{30}'..='\u{7e}' => {
                self.position += 1;
                None
            }
            // ESC followed by anything else is a stray ESC; the next character stays.
            _ => None,
        }
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        loop {
            let c = self.bump()?;
            let token = match c {
                '\n' => Token::LineBreak,
                '\r' => Token::CarriageReturn,
                '\u{8}' => Token::Backspace,
                '\t' => Token::Text('\t'),
                '\u{1b}' => match self.escape() {
                    Some(parameters) => Token::Sgr(parameters),
                    None => continue,
                },
                // The 8-bit forms of CSI and of the control strings, as some programs emit.
                '\u{9b}' => match self.control_sequence() {
                    Some(parameters) => Token::Sgr(parameters),
                    None => continue,
                },
                '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => {
                    self.skip_control_string();
                    continue;
                }
                // Other controls (BEL, NUL, DEL, the rest of C1) have no visible form.
                '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => continue,
                _ => Token::Text(c),
            };
            return Some(token);
        }
    }
}

/// Calls `emit` with the runs of every line of `text`, in order, including the (possibly
/// empty) remainder after the last line break, so that callers join lines with `\n` and get
/// the input's line structure back.
fn for_each_line(text: &str, mut emit: impl FnMut(&[Run])) {
    let mut line = LineBuilder::default();
    for token in Scanner::new(text) {
        match token {
            Token::Text(c) => line.push_char(c),
            Token::LineBreak => emit(&line.finish()),
            Token::CarriageReturn => line.pending_return = true,
            Token::Backspace => line.backspace(),
            Token::Sgr(parameters) => line.style.apply_sgr(parameters),
        }
    }
    emit(&line.finish());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_text_is_escaped() {
        assert_eq!(
            ansi_to_html("<script>alert('x' & \"y\")</script>"),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
    }

    #[test]
    fn basic_colours_and_attributes_become_classes() {
        assert_eq!(
            ansi_to_html("\x1b[1;31mError\x1b[0m: done"),
            "<span class=\"ansi-fg-1 ansi-bold\">Error</span>: done"
        );
        assert_eq!(
            ansi_to_html("\x1b[92;104mok\x1b[39;49m"),
            "<span class=\"ansi-fg-10 ansi-bg-12\">ok</span>"
        );
        assert_eq!(
            ansi_to_html("\x1b[2;3;4mx\x1b[22mY\x1b[23;24mz"),
            "<span class=\"ansi-dim ansi-italic ansi-underline\">x</span>\
             <span class=\"ansi-italic ansi-underline\">Y</span>z"
        );
    }

    #[test]
    fn empty_parameters_reset() {
        assert_eq!(
            ansi_to_html("\x1b[31ma\x1b[mb"),
            "<span class=\"ansi-fg-1\">a</span>b"
        );
        // An empty group among others counts as 0 as well.
        assert_eq!(
            ansi_to_html("\x1b[31ma\x1b[;1mb"),
            "<span class=\"ansi-fg-1\">a</span><span class=\"ansi-bold\">b</span>"
        );
    }

    #[test]
    fn extended_colours_become_index_classes() {
        assert_eq!(
            ansi_to_html("\x1b[38;5;9mx"),
            "<span class=\"ansi-fg-9\">x</span>"
        );
        assert_eq!(
            ansi_to_html("\x1b[38;5;196mx"),
            "<span class=\"ansi-fg-196\">x</span>"
        );
        assert_eq!(
            ansi_to_html("\x1b[48;5;244mx"),
            "<span class=\"ansi-bg-244\">x</span>"
        );
        // Truecolour is drawn as the nearest index: (1, 2, 255) is the cube's pure blue, and
        // (16, 32, 48) is nearest to the grey 28 of the ramp.
        assert_eq!(
            ansi_to_html("\x1b[38;2;1;2;255;48;2;16;32;48mx"),
            "<span class=\"ansi-fg-21 ansi-bg-234\">x</span>"
        );
        assert_eq!(
            ansi_to_html("\x1b[38:2::255:135:0mx\x1b[38:5:1my"),
            "<span class=\"ansi-fg-208\">x</span><span class=\"ansi-fg-1\">y</span>"
        );
        assert_eq!(
            ansi_to_html("\x1b[38:2:10:20:30mx"),
            "<span class=\"ansi-fg-233\">x</span>"
        );
        // Colours come first, then the attributes, as in build-log.js.
        assert_eq!(
            ansi_to_html("\x1b[1;48;5;17;38;5;230mx"),
            "<span class=\"ansi-fg-230 ansi-bg-17 ansi-bold\">x</span>"
        );
        // No colour ever becomes an inline style, which the page's CSP would block.
        assert!(!ansi_to_html("\x1b[38;2;1;2;3;48;5;100mx").contains("style"));
    }

    #[test]
    fn xterm_values_follow_xterm() {
        assert_eq!(xterm_rgb(15), None);
        assert_eq!(xterm_rgb(16), Some((0, 0, 0)));
        assert_eq!(xterm_rgb(21), Some((0, 0, 255)));
        assert_eq!(xterm_rgb(196), Some((255, 0, 0)));
        assert_eq!(xterm_rgb(208), Some((255, 135, 0)));
        assert_eq!(xterm_rgb(231), Some((255, 255, 255)));
        assert_eq!(xterm_rgb(232), Some((8, 8, 8)));
        assert_eq!(xterm_rgb(244), Some((128, 128, 128)));
        assert_eq!(xterm_rgb(255), Some((238, 238, 238)));
    }

    #[test]
    fn truecolour_maps_to_the_nearest_xterm_colour() {
        // Every cube and grey-ramp colour maps to itself (no ramp grey is also a cube colour).
        for index in 16..=255u8 {
            let (r, g, b) = xterm_rgb(index).expect("a fixed value");
            assert_eq!(nearest_xterm_index(r, g, b), index, "{index}: {r},{g},{b}");
        }
        // Near a cube colour: each channel goes to its nearest step.
        assert_eq!(nearest_xterm_index(250, 130, 5), 208);
        assert_eq!(nearest_xterm_index(3, 100, 140), 16 + 6 + 2);
        assert_eq!(nearest_xterm_index(115, 155, 195), 16 + 36 * 2 + 6 * 3 + 4);
        // Greys that fall between cube steps go to the ramp, and so do dull colours whose
        // mean grey is nearer than any cube colour.
        assert_eq!(nearest_xterm_index(128, 128, 128), 244);
        assert_eq!(nearest_xterm_index(47, 48, 114), 238);
        assert_eq!(nearest_xterm_index(60, 62, 58), 237);
        assert_eq!(nearest_xterm_index(1, 1, 1), 16);
        assert_eq!(nearest_xterm_index(250, 250, 250), 231);
        assert_eq!(nearest_xterm_index(240, 240, 240), 255);
        // A saturated colour stays in the cube even when its mean is a ramp grey.
        assert_eq!(nearest_xterm_index(200, 0, 0), 160);
    }

    /// The mapping checked by brute force: no index from 16 to 255 is nearer to the colour than
    /// the one chosen (the per-channel cube step and the mean's grey are each their family's
    /// nearest, so the better of the two is the nearest of all).
    #[test]
    fn the_chosen_index_is_the_nearest_of_all_240() {
        let distance = |a: (u8, u8, u8), b: (u8, u8, u8)| -> u32 {
            let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).unsigned_abs().pow(2);
            d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
        };
        for r in (0..=255u8).step_by(5) {
            for g in (0..=255u8).step_by(15) {
                for b in (0..=255u8).step_by(17) {
                    let colour = (r, g, b);
                    let chosen = nearest_xterm_index(r, g, b);
                    let best = (16..=255u8)
                        .map(|i| distance(colour, xterm_rgb(i).expect("a fixed value")))
                        .min()
                        .expect("240 colours");
                    let got = distance(colour, xterm_rgb(chosen).expect("16 to 255"));
                    assert_eq!(got, best, "{colour:?} -> {chosen}");
                }
            }
        }
    }

    #[test]
    fn invalid_extended_colours_are_ignored_without_eating_later_codes() {
        // Out-of-range components leave the colour alone.
        assert_eq!(ansi_to_html("\x1b[38;2;300;0;0mx"), "x");
        assert_eq!(ansi_to_html("\x1b[38;5;256mx"), "x");
        // A truncated form uses up what is there and nothing more.
        assert_eq!(ansi_to_html("\x1b[38;5mx"), "x");
        assert_eq!(ansi_to_html("\x1b[48;2;1;2mx"), "x");
        // An unknown mode is skipped and the code after it still applies.
        assert_eq!(
            ansi_to_html("\x1b[38;7;1mx"),
            "<span class=\"ansi-bold\">x</span>"
        );
        // A huge number saturates instead of wrapping around to a valid code.
        assert_eq!(ansi_to_html("\x1b[4294967327mx"), "x");
    }

    #[test]
    fn other_sequences_are_dropped() {
        assert_eq!(ansi_to_html("a\x1b[2Kb\x1b[1Ac\x1b[?25ld"), "abcd");
        assert_eq!(ansi_to_html("\x1b]0;title\x07x"), "x");
        assert_eq!(
            ansi_to_html("\x1b]8;;https://e.invalid/\x1b\\link\x1b]8;;\x1b\\"),
            "link"
        );
        assert_eq!(ansi_to_html("\x1b(Bx\x1b7y\x1b=z"), "xyz");
        assert_eq!(
            ansi_to_html("\u{9b}31mx\u{9b}0m"),
            "<span class=\"ansi-fg-1\">x</span>"
        );
        // Private and intermediate forms ending in `m` are not SGR.
        assert_eq!(ansi_to_html("\x1b[>4;2mx\x1b[1 my"), "xy");
        assert_eq!(ansi_to_html("a\x07b\x00c\x7fd"), "abcd");
    }

    #[test]
    fn truncated_and_broken_sequences_keep_the_text_after_them() {
        assert_eq!(ansi_to_html("abc\x1b"), "abc");
        assert_eq!(ansi_to_html("abc\x1b["), "abc");
        assert_eq!(ansi_to_html("abc\x1b[31"), "abc");
        assert_eq!(ansi_to_html("a\x1b[31\nb"), "a\nb");
        assert_eq!(
            ansi_to_html("a\x1b[3\x1b[1mb"),
            "a<span class=\"ansi-bold\">b</span>"
        );
        assert_eq!(ansi_to_html("a\x1b]0;no end\nb"), "a\nb");
        assert_eq!(ansi_to_html("a\x1b\u{e9}b"), "a\u{e9}b");
    }

    #[test]
    fn carriage_returns_keep_the_last_redraw() {
        assert_eq!(ansi_to_html("10%\r50%\r100%\ndone"), "100%\ndone");
        assert_eq!(
            ansi_to_html("windows line\r\nnext\r\n"),
            "windows line\nnext\n"
        );
        assert_eq!(ansi_to_html("trailing\r"), "trailing");
        assert_eq!(ansi_to_html("a\r\r\nb"), "a\nb");
        // A style set in the overwritten part still applies, as on a terminal.
        assert_eq!(
            ansi_to_html("\x1b[32mold\rnew"),
            "<span class=\"ansi-fg-2\">new</span>"
        );
    }

    #[test]
    fn backspace_removes_the_previous_character() {
        assert_eq!(strip_ansi("ab\x08c"), "ac");
        assert_eq!(strip_ansi("\x08\x08a"), "a");
        assert_eq!(strip_ansi("x\r\x08y"), "y");
        assert_eq!(
            ansi_to_html("a\x1b[1mb\x08\x08c"),
            "<span class=\"ansi-bold\">c</span>"
        );
    }

    #[test]
    fn styles_carry_across_lines_in_self_contained_spans() {
        assert_eq!(
            ansi_to_html("\x1b[31mone\ntwo\x1b[0m\nthree"),
            "<span class=\"ansi-fg-1\">one</span>\n<span class=\"ansi-fg-1\">two</span>\nthree"
        );
    }

    #[test]
    fn strip_ansi_keeps_only_visible_text() {
        assert_eq!(
            strip_ansi("\x1b[1;31m<b>\x1b[0m 100%\r\n50%\r\x1b]0;t\x07ok\n"),
            "<b> 100%\nok\n"
        );
    }

    #[test]
    fn log_html_groups_lines_in_blocks() {
        assert_eq!(log_html(""), "");
        assert_eq!(log_html("a\n"), "<span class=\"log-block\">a\n</span>");
        assert_eq!(log_html("a\nb"), "<span class=\"log-block\">a\nb</span>");
        assert_eq!(log_html("\n"), "<span class=\"log-block\">\n</span>");
        let exact: String = (0..LOG_BLOCK_LINES).map(|n| format!("{n}\n")).collect();
        assert_eq!(log_html(&exact).matches("log-block").count(), 1);
        let text: String = (0..LOG_BLOCK_LINES * 2 + 1)
            .map(|n| format!("line {n}\n"))
            .collect();
        let html = log_html(&text);
        assert_eq!(html.matches("<span class=\"log-block\">").count(), 3);
        assert_eq!(html.matches("</span>").count(), 3);
        assert!(html.starts_with("<span class=\"log-block\">line 0\n"));
        assert!(html.contains("line 499\n</span><span class=\"log-block\">line 500\n"));
        assert!(html.ends_with("line 1000\n</span>"));
    }

    /// Checks that every `<` in `html` starts one of the tags this module writes: a span with
    /// one `class` attribute of `ansi-*` names, and never a `style` attribute.
    fn assert_only_own_markup(html: &str) {
        let mut rest = html;
        while let Some(at) = rest.find('<') {
            rest = &rest[at..];
            if let Some(after) = rest.strip_prefix("</span>") {
                rest = after;
                continue;
            }
            let end = rest.find('>').expect("an unclosed tag");
            let tag = &rest[..=end];
            assert!(tag.starts_with("<span "), "unexpected markup {tag:?}");
            assert!(
                tag.chars()
                    .all(|c| c.is_ascii_alphanumeric() || " <>=\"-".contains(c)),
                "unexpected characters in {tag:?}"
            );
            assert!(
                (tag.starts_with("<span class=\"ansi-") || tag == "<span class=\"log-block\">")
                    && tag.matches('"').count() == 2,
                "unexpected attributes in {tag:?}"
            );
            rest = &rest[end + 1..];
        }
    }

    /// Undoes the escaping, to compare the HTML's text with [`strip_ansi`].
    fn unescape(text: &str) -> String {
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }

    /// Removes this module's tags, leaving the escaped text.
    fn remove_tags(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' if in_tag => in_tag = false,
                _ if !in_tag => out.push(c),
                _ => {}
            }
        }
        out
    }

    /// Input biased towards the characters that matter: escapes, brackets, digits, separators,
    /// controls and characters that need escaping, plus arbitrary Unicode.
    fn terminal_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\x1b".to_string()),
            Just("\x1b[".to_string()),
            Just("\x1b]".to_string()),
            Just("\u{9b}".to_string()),
            Just("\u{9c}".to_string()),
            "[0-9;:]{0,8}m",
            "[\\[\\]\\\\;:?>=<&\"' 0-9a-zA-Z]{1,4}",
            "[\r\n\x07\x08\t\x00\x7f]",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn output_has_only_own_markup(text in terminal_text()) {
            let html = ansi_to_html(&text);
            assert_only_own_markup(&html);
            assert_only_own_markup(&log_html(&text));
        }

        #[test]
        fn text_of_html_equals_strip_ansi(text in terminal_text()) {
            let html = ansi_to_html(&text);
            let visible = strip_ansi(&text);
            prop_assert_eq!(unescape(&remove_tags(&html)), visible.clone());
            // The visible text is free of controls and escapes except tabs and line breaks.
            prop_assert!(!visible.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
        }

        #[test]
        fn arbitrary_strings_never_panic(text in any::<String>()) {
            assert_only_own_markup(&ansi_to_html(&text));
            let _ = strip_ansi(&text);
        }

        #[test]
        fn line_count_is_kept(text in terminal_text()) {
            prop_assert_eq!(
                ansi_to_html(&text).matches('\n').count(),
                text.matches('\n').count()
            );
        }
    }
}
