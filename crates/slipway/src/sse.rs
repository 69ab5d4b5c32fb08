//! A Server-Sent Events parser for the live log: bytes in, whole events out, however the
//! network happens to cut the stream into chunks.
//!
//! It follows the WHATWG `text/event-stream` rules the log endpoint relies on: lines end with
//! LF, CRLF or a lone CR; `event`, `data` and `id` fields; several `data` lines joined with a
//! newline; comment lines (`:` first, the server's keep-alives) ignored; an event dispatched by
//! a blank line, and only if it has data.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type; `message` when the server named none.
    pub event: String,
    pub data: String,
    /// The last event id seen so far on this stream (what `Last-Event-ID` resends).
    pub id: Option<String>,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet ended.
    line: Vec<u8>,
    /// The previous chunk ended with CR, so an LF opening this one belongs to that line end.
    after_cr: bool,
    event: String,
    data: Vec<String>,
    last_id: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the stream; returns the events they completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match byte {
                b'\n' if after_cr => {}
                b'\n' => self.end_line(&mut events),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut events);
                }
                _ => self.line.push(byte),
            }
        }
        events
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        // Text is UTF-8 by the format's definition; a broken byte cannot stop the log.
        let line = String::from_utf8_lossy(&line);
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => self.data.push(value.to_owned()),
            // An id with a NUL is ignored, as the format says.
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            // `retry` and unknown fields change nothing a command-line client does.
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let data = std::mem::take(&mut self.data).join("\n");
        events.push(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        chunks.iter().flat_map(|chunk| parser.push(chunk)).collect()
    }

    #[test]
    fn events_have_their_type_data_and_id() {
        let events = parse_all(&[
            b"event: log\nid: 12\ndata: {\"offset\":0,\"text\":\"hello\\n\"}\n\nevent: end\ndata: {\"status\":\"succeeded\"}\n\n",
        ]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "log");
        assert_eq!(events[0].id.as_deref(), Some("12"));
        assert_eq!(events[0].data, r#"{"offset":0,"text":"hello\n"}"#);
        assert_eq!(events[1].event, "end");
        assert_eq!(
            events[1].id.as_deref(),
            Some("12"),
            "the last id carries over"
        );
    }

    #[test]
    fn chunks_may_cut_anywhere_even_inside_characters_and_line_ends() {
        let stream = "event: log\r\nid: 5\r\ndata: {\"text\":\"\u{e9}t\u{e9}\"}\r\n\r\n".as_bytes();
        let whole = parse_all(&[stream]);
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(parse_all(&[a, b]), whole, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse_all(&bytewise), whole);
        assert_eq!(whole[0].data, "{\"text\":\"\u{e9}t\u{e9}\"}");
    }

    #[test]
    fn comments_multiline_data_and_lone_cr_follow_the_format() {
        let events = parse_all(&[b": keep-alive\n\ndata: a\ndata:b\rdata\n\n", b"data: c"]);
        assert_eq!(
            events.len(),
            1,
            "a keep-alive dispatches nothing: {events:?}"
        );
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].data, "a\nb\n");
        assert_eq!(events[0].id, None);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_but_its_id_counts() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"event: log\nid: 9\n\n").is_empty());
        let events = parser.push(b"data: x\n\n");
        assert_eq!(events[0].event, "message", "the type does not carry over");
        assert_eq!(events[0].id.as_deref(), Some("9"));
    }
}
