//! `GET /api/builds/{id}/log/stream`: a build's log as Server-Sent Events, from any byte
//! offset, live while the build runs.
//!
//! Events: `log` (`{"offset": N, "text": "…"}`, the event id the offset just after the text),
//! `status` (`{"status": "running", "error": null}`) when the build's status changes, and `end`
//! (`{"status": "failed", "error": "…"}`) once the build has finished and its log is drained. Text is sent in whole lines, so a multi-byte character
//! is never split; a reconnecting client sends `Last-Event-ID` and misses nothing. The log is
//! read from the store a few pieces at a time and never held whole.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use slipway_core::{BuildStatus, Role};
use slipway_store::Store;
use uuid::Uuid;

use crate::api::authorized_build;
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// How often an idle stream looks for new log text and status changes.
const POLL: Duration = Duration::from_millis(300);
/// Pieces read from the store at once (each at most 256 KiB).
const PIECES: i64 = 4;
/// A line longer than this is sent in parts rather than waited for.
const MAX_PENDING_LINE: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    offset: Option<u64>,
}

pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (build, _) = authorized_build(&state, &caller, &id, Role::Read).await?;
    // A reconnecting EventSource says where it stopped; that wins over the page's offset.
    let offset = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(query.offset)
        .unwrap_or(0);
    let tail = Tail {
        store: state.store.clone(),
        id: build.id,
        offset,
        carry: Vec::new(),
        status: None,
        error: None,
        final_pass: false,
        done: false,
        pending: VecDeque::new(),
    };
    let events = futures_util::stream::unfold(tail, |mut tail| async move {
        let event = tail.next_event().await?;
        Some((Ok(event), tail))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Where one viewer is in one build's log.
struct Tail {
    store: Store,
    id: Uuid,
    /// The offset of the first byte not yet sent.
    offset: u64,
    /// Bytes read but not yet sent: the start of a line still being written.
    carry: Vec<u8>,
    status: Option<BuildStatus>,
    /// Why the build failed or was cancelled, for the `end` event.
    error: Option<String>,
    /// The build has finished; one more read drains what its worker wrote last.
    final_pass: bool,
    done: bool,
    pending: VecDeque<Event>,
}

impl Tail {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let read_from = self.offset + self.carry.len() as u64;
            let pieces = match self
                .store
                .log_from(
                    self.id,
                    i64::try_from(read_from).unwrap_or(i64::MAX),
                    PIECES,
                )
                .await
            {
                Ok(pieces) => pieces,
                Err(error) => {
                    tracing::warn!(%error, build = %self.id, "reading a log for a live viewer failed");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            if !pieces.is_empty() {
                let mut next = read_from;
                for piece in pieces {
                    let start = u64::try_from(piece.offset).unwrap_or(0);
                    let skip = usize::try_from(next.saturating_sub(start)).unwrap_or(usize::MAX);
                    if let Some(fresh) = piece.data.get(skip..) {
                        self.carry.extend_from_slice(fresh);
                        next = start + piece.data.len() as u64;
                    }
                }
                self.send_lines(false);
                continue;
            }
            if self.final_pass {
                self.send_lines(true);
                let status = self.status.map_or("unknown", BuildStatus::as_str);
                self.pending.push_back(
                    Event::default()
                        .event("end")
                        .data(json!({ "status": status, "error": self.error }).to_string()),
                );
                self.done = true;
                continue;
            }
            match self.store.build(self.id).await {
                Ok(Some(build)) => {
                    self.error.clone_from(&build.error);
                    if self.status != Some(build.status) {
                        self.status = Some(build.status);
                        self.pending
                            .push_back(Event::default().event("status").data(
                                json!({"status": build.status, "error": build.error}).to_string(),
                            ));
                    }
                    // The worker stores the whole log before it finishes the build, so one
                    // more read after seeing the end gets everything.
                    if build.status.is_finished() {
                        self.final_pass = true;
                        continue;
                    }
                }
                Ok(None) => {
                    self.done = true;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, build = %self.id, "reading a build for a live viewer failed");
                }
            }
            if self.pending.is_empty() {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Queues the complete lines held (or everything, at the end), as one `log` event.
    fn send_lines(&mut self, everything: bool) {
        let cut = if everything || self.carry.len() > MAX_PENDING_LINE {
            utf8_boundary(&self.carry, everything)
        } else {
            self.carry
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |newline| newline + 1)
        };
        if cut == 0 {
            return;
        }
        let sent: Vec<u8> = self.carry.drain(..cut).collect();
        let start = self.offset;
        self.offset += sent.len() as u64;
        self.pending.push_back(
            Event::default()
                .event("log")
                .id(self.offset.to_string())
                .data(json!({"offset": start, "text": String::from_utf8_lossy(&sent)}).to_string()),
        );
    }
}

/// How many leading bytes of `bytes` end on a character boundary (all of them at the end of
/// the log, where a broken character can no longer be completed).
fn utf8_boundary(bytes: &[u8], at_end: bool) -> usize {
    if at_end {
        return bytes.len();
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        // An error with no length is an incomplete character at the end: stop before it.
        Err(error) if error.error_len().is_none() => error.valid_up_to(),
        Err(_) => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_between_characters() {
        let text = "ab\u{e9}".as_bytes();
        assert_eq!(utf8_boundary(&text[..3], false), 2, "é is two bytes");
        assert_eq!(utf8_boundary(text, false), 4);
        assert_eq!(utf8_boundary(&text[..3], true), 3);
    }
}
