//! The build log: producers send lines, one consumer stores them in chunks.

use bytes::Bytes;
use tokio::sync::mpsc;

/// The sending side of a build's log; cheap to clone, usable from async code and from
/// blocking threads (git2 runs on those).
#[derive(Debug, Clone)]
pub struct BuildLog {
    sender: mpsc::Sender<Bytes>,
}

/// The receiving side, drained by whoever stores the log.
pub type LogReceiver = mpsc::Receiver<Bytes>;

impl BuildLog {
    /// A log whose receiver holds at most `capacity` pending pieces; a slow consumer slows the
    /// build down instead of letting memory grow.
    pub fn channel(capacity: usize) -> (Self, LogReceiver) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Self { sender }, receiver)
    }

    /// Appends one line (a newline is added).
    pub async fn line(&self, text: impl Into<String>) {
        let mut text = text.into();
        text.push('\n');
        self.raw(Bytes::from(text)).await;
    }

    /// Appends text as it came from the engine (which brings its own newlines).
    pub async fn raw(&self, data: Bytes) {
        // A closed receiver means nobody stores the log any more (the build is being torn
        // down); the build itself goes on, so the error is ignored.
        let _ = self.sender.send(data).await;
    }

    /// [`BuildLog::line`] for blocking threads.
    pub fn blocking_line(&self, text: impl Into<String>) {
        let mut text = text.into();
        text.push('\n');
        let _ = self.sender.blocking_send(Bytes::from(text));
    }
}
