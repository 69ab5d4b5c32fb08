//! The build log: producers send lines, one consumer stores them in chunks.

use bytes::Bytes;
use tokio::sync::mpsc;

/// The sending side of a build's log; cheap to clone, usable from async code and from
/// blocking threads (git2 runs on those).
#[derive(Debug, Clone)]
pub struct BuildLog {
    sender: mpsc::Sender<Bytes>,
    phases: Option<mpsc::UnboundedSender<Phase>>,
}

/// The phases of a build's attempt, for its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Cloning,
    Building,
    Pushing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Cloning => "cloning",
            Phase::Building => "building",
            Phase::Pushing => "pushing",
        }
    }
}

/// The receiving side, drained by whoever stores the log.
pub type LogReceiver = mpsc::Receiver<Bytes>;

impl BuildLog {
    /// A log whose receiver holds at most `capacity` pending pieces; a slow consumer slows the
    /// build down instead of letting memory grow.
    pub fn channel(capacity: usize) -> (Self, LogReceiver) {
        let (sender, receiver) = mpsc::channel(capacity);
        (
            Self {
                sender,
                phases: None,
            },
            receiver,
        )
    }

    /// The same log, also announcing each phase the build enters on `phases`.
    pub fn with_phases(self, phases: mpsc::UnboundedSender<Phase>) -> Self {
        Self {
            phases: Some(phases),
            ..self
        }
    }

    /// Announces that the build entered `phase`. Never blocks: a phase is a few bytes, and the
    /// timeline is worth less than the build.
    pub fn phase(&self, phase: Phase) {
        if let Some(phases) = &self.phases {
            let _ = phases.send(phase);
        }
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
