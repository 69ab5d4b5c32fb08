//! The reconciler: a webhook a forge never delivered (an outage, a misconfigured hook) must not
//! mean a build that never happens. Per repository, opt in, it lists the remote's refs and
//! queues a build for every rule whose ref head was never built.

use axum::http::StatusCode;
use slipway_core::plan::{PlanTrigger, RuleDecision, plan_builds};
use slipway_core::{BuildRule, CommitId, GitRef, PushEvent, SourcePattern};
use slipway_store::{NewBuild, RepositoryRecord, Supersede};
use uuid::Uuid;

use crate::{ApiError, AppState};

/// Compares `repository`'s rules with the remote once; returns the builds it queued.
///
/// Literal-source rules are checked against their ref; a regex rule only against refs it has
/// built before, so turning the reconciler on never builds every branch of a repository at
/// once. A head already built, queued or running for the rule is left alone (the same key as a
/// pushed build), and a webhook that arrives later finds the reconciler's build.
pub async fn reconcile(
    state: &AppState,
    repository: &RepositoryRecord,
) -> Result<Vec<Uuid>, ApiError> {
    let rules: Vec<BuildRule> = if repository.rules.is_empty() {
        vec![BuildRule::default_rule()]
    } else {
        repository.rules.clone()
    };
    let heads = state
        .ref_resolver
        .remote_refs(&repository.name.to_string())
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "git_unreachable", e))?;
    let mut builds = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let candidates: Vec<String> = match &rule.source {
            SourcePattern::Exact(name) => vec![
                GitRef {
                    kind: rule.source_type,
                    name: name.clone(),
                }
                .full(),
            ],
            SourcePattern::Regex(..) => state.store.built_refs(repository.id, index).await?,
        };
        for full_ref in candidates {
            let Some((_, head)) = heads.iter().find(|(name, _)| *name == full_ref) else {
                continue;
            };
            let (Some(git_ref), Ok(commit)) = (GitRef::parse(&full_ref), head.parse::<CommitId>())
            else {
                continue;
            };
            let event = PushEvent {
                git_ref,
                before: None,
                after: Some(commit),
                head_message: None,
                head_timestamp: None,
                pusher: None,
                forced: false,
            };
            // Planned as a push: autobuild is honoured, and the worker checks skip markers on
            // the commit itself since no message came with it.
            let plan = plan_builds(&rules, &event, PlanTrigger::Push);
            if let Some(RuleDecision::Build { plan, .. }) = plan.decisions.get(index) {
                builds.push(NewBuild {
                    id: Uuid::now_v7(),
                    image: repository.image.to_string(),
                    plan: plan.clone(),
                    trigger: "reconciler".to_owned(),
                    supersedes: Supersede::Nothing,
                });
            }
        }
    }
    Ok(state.store.queue_reconciled(repository.id, &builds).await?)
}
