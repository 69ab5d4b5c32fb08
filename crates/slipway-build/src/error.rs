//! Build failures, split by whose fault they are: the user's (terminal) or ours (retryable).

/// Whose failure it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The repository's content or configuration is wrong: a bad Dockerfile, a failing `RUN`,
    /// a missing file, a path escaping the checkout, refused credentials. Retrying cannot help.
    User,
    /// Something around the build failed: the engine, the network, the registry's health.
    Infrastructure,
}

/// A failed build, with a message a user can act on. Messages never contain secrets: URLs are
/// stripped of credentials before they are put here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub kind: FailureKind,
    pub message: String,
}

impl BuildError {
    pub fn user(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::User,
            message: message.into(),
        }
    }

    pub fn infrastructure(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Infrastructure,
            message: message.into(),
        }
    }
}
