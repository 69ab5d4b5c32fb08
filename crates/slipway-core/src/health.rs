//! A component's health, shared between the part that knows (a worker's circuit breaker) and
//! the part that reports it (`/healthz`).

use std::sync::Mutex;

/// Healthy, or unhealthy with a reason. Cheap to read and update from any task.
#[derive(Debug, Default)]
pub struct Health {
    problem: Mutex<Option<String>>,
}

impl Health {
    /// Records a problem; returns true when this changes the state (for logging transitions).
    pub fn set_unhealthy(&self, reason: impl Into<String>) -> bool {
        let mut problem = self
            .problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let was_healthy = problem.is_none();
        *problem = Some(reason.into());
        was_healthy
    }

    /// Clears the problem; returns true when it was unhealthy before.
    pub fn set_healthy(&self) -> bool {
        self.problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .is_some()
    }

    /// `None` when healthy, else the reason.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_reported_once() {
        let health = Health::default();
        assert!(health.problem().is_none());
        assert!(health.set_unhealthy("engine down"));
        assert!(!health.set_unhealthy("engine still down"));
        assert_eq!(health.problem().as_deref(), Some("engine still down"));
        assert!(health.set_healthy());
        assert!(!health.set_healthy());
    }
}
