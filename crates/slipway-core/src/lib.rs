//! Slipway's domain: what a repository, a push, a build rule and a build are, and the pure
//! decisions made about them (which rules match a push, which tags a rule renders, where the
//! Dockerfile and context lie inside a checkout, which files `.dockerignore` excludes).
//!
//! **Invariant:** nothing in this crate does I/O, so every decision here is unit-tested without a
//! database, a network or a Docker engine.

pub mod build;
pub mod dockerignore;
pub mod event;
pub mod filters;
pub mod health;
pub mod image;
pub mod paths;
pub mod plan;
pub mod repo;
pub mod role;
pub mod rule;
pub mod secret;
pub mod units;

pub use build::{BuildId, BuildStatus};
pub use event::{CommitId, GitRef, PushEvent, RefKind};
pub use image::ImageName;
pub use plan::{BuildOptions, BuildPlan, PlanTrigger, RuleDecision, plan_builds};
pub use repo::{Provider, RepositoryName};
pub use role::Role;
pub use rule::{BuildRule, SourcePattern};
pub use secret::Secret;
