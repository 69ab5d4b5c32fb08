//! Planning: from one push and a repository's rules to the builds it asks for, with a reason
//! for every rule that did not build. The reasons are what the deliveries log shows, so that
//! "my push triggered nothing" always has an answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{CommitId, GitRef, PushEvent};
use crate::filters::skip_marker;
use crate::rule::BuildRule;

/// What asked for the builds: a push honours `autobuild` and skip markers; a trigger or a
/// manual build does not, because someone asked for exactly this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanTrigger {
    Push,
    Manual,
}

/// How a planned build is built: the rule's settings at the time of the push, stored with the
/// build so that a later configuration change does not alter a queued build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOptions {
    #[serde(default = "yes")]
    pub cache: bool,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Path filter, checked by the worker against the real diff (it needs the commits).
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub ignore_paths: Vec<String>,
    /// Skip markers, checked by the worker on the commit itself when the forge did not send
    /// the message.
    #[serde(default)]
    pub skip_message: Vec<String>,
    /// The commit was named by a trigger rather than pushed: the worker builds it only if it
    /// is on the named ref.
    #[serde(default)]
    pub commit_on_ref: bool,
}

fn yes() -> bool {
    true
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions::from_rule(&BuildRule::default_rule())
    }
}

impl BuildOptions {
    pub fn from_rule(rule: &BuildRule) -> Self {
        Self {
            cache: rule.cache,
            build_args: rule.build_args.clone(),
            target: rule.target.clone(),
            labels: rule.labels.clone(),
            paths: rule.paths.clone(),
            ignore_paths: rule.ignore_paths.clone(),
            skip_message: rule.skip_message.clone(),
            commit_on_ref: false,
        }
    }
}

/// One build a push asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildPlan {
    /// Index of the rule in the repository's rule list (0-based).
    pub rule_index: usize,
    pub git_ref: GitRef,
    pub commit: CommitId,
    /// Tags to push, in the order written, without duplicates; never empty.
    pub tags: Vec<String>,
    /// The rule's Dockerfile and context as configured; the worker resolves them inside the
    /// checkout (see [`crate::paths`]), so a bad path fails a visible build instead of
    /// vanishing at planning time.
    pub dockerfile: String,
    pub context: String,
    /// The commit the ref pointed at before the push, for the path filter's diff; `None` for a
    /// new ref (which then always builds).
    #[serde(default)]
    pub before: Option<CommitId>,
    /// Whether the head commit's message was known (and checked for skip markers) when
    /// planning; if not, the worker checks the commit itself.
    #[serde(default)]
    pub message_checked: bool,
    #[serde(default)]
    pub options: BuildOptions,
}

/// What happened to one rule for one push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "a push has a handful of decisions, each made once; boxing the plan would only add indirection"
)]
pub enum RuleDecision {
    /// The rule matched and asks for this build; `note` says what is still to be checked or
    /// what was adjusted.
    Build {
        rule: String,
        plan: BuildPlan,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The rule matched the ref but will not build; the reason says why.
    Skipped { rule: String, reason: String },
    /// The rule did not match the ref.
    NoMatch { rule: String },
    /// The rule matched but could not be planned (e.g. it renders an invalid tag).
    Error { rule: String, reason: String },
}

/// The whole answer for one push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPlan {
    pub decisions: Vec<RuleDecision>,
    /// One sentence for humans: what the push led to and why.
    pub summary: String,
}

impl PushPlan {
    pub fn builds(&self) -> impl Iterator<Item = &BuildPlan> {
        self.decisions.iter().filter_map(|d| match d {
            RuleDecision::Build { plan, .. } => Some(plan),
            _ => None,
        })
    }
}

/// Plans the builds for one pushed ref. `rules` empty means the documented default rule.
pub fn plan_builds(rules: &[BuildRule], event: &PushEvent, trigger: PlanTrigger) -> PushPlan {
    let default_rules;
    let rules = if rules.is_empty() {
        default_rules = [BuildRule::default_rule()];
        &default_rules[..]
    } else {
        rules
    };
    let Some(commit) = event.after.as_ref().filter(|c| !c.is_zero()) else {
        return PushPlan {
            decisions: Vec::new(),
            summary: format!(
                "{} {} deleted: nothing to build",
                event.git_ref.kind, event.git_ref.name
            ),
        };
    };

    let mut decisions: Vec<RuleDecision> = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        let label = format!("rule {} ({})", index + 1, rule.describe());
        let Some(captures) = rule.matches(&event.git_ref) else {
            decisions.push(RuleDecision::NoMatch { rule: label });
            continue;
        };
        if trigger == PlanTrigger::Push && !rule.autobuild {
            decisions.push(RuleDecision::Skipped {
                rule: label,
                reason: "autobuild is off for this rule".to_owned(),
            });
            continue;
        }
        if trigger == PlanTrigger::Push
            && let Some(marker) = event
                .head_message
                .as_deref()
                .and_then(|m| skip_marker(m, &rule.skip_message))
        {
            decisions.push(RuleDecision::Skipped {
                rule: label,
                reason: format!("the head commit's message contains {marker:?}"),
            });
            continue;
        }
        let mut tags = match rule.render_tags(&event.git_ref, &captures, commit) {
            Ok(tags) => tags,
            Err(reason) => {
                decisions.push(RuleDecision::Error {
                    rule: label,
                    reason,
                });
                continue;
            }
        };
        // Two rules that would push the same tag for one commit are one build: the earlier
        // rule keeps the tag, so no two builds race to push it.
        let mut notes = Vec::new();
        for earlier in &decisions {
            if let RuleDecision::Build {
                rule: earlier_rule,
                plan: earlier_plan,
                ..
            } = earlier
            {
                let shared: Vec<String> = tags
                    .iter()
                    .filter(|t| earlier_plan.tags.contains(t))
                    .cloned()
                    .collect();
                if !shared.is_empty() {
                    tags.retain(|t| !shared.contains(t));
                    notes.push(format!(
                        "tag(s) {} left to {earlier_rule}",
                        shared.join(", ")
                    ));
                }
            }
        }
        if tags.is_empty() {
            decisions.push(RuleDecision::Skipped {
                rule: label,
                reason: format!("same build as another rule: {}", notes.join("; ")),
            });
            continue;
        }
        if !rule.paths.is_empty() || !rule.ignore_paths.is_empty() {
            notes.push(
                "the path filter is checked against the pushed diff when the build starts"
                    .to_owned(),
            );
        }
        let plan = BuildPlan {
            rule_index: index,
            git_ref: event.git_ref.clone(),
            commit: commit.clone(),
            tags,
            dockerfile: rule.dockerfile.clone(),
            context: rule.context.clone(),
            before: event.before.clone(),
            message_checked: event.head_message.is_some() || trigger == PlanTrigger::Manual,
            options: BuildOptions::from_rule(rule),
        };
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        decisions.push(RuleDecision::Build {
            rule: label,
            plan,
            note,
        });
    }

    let summary = summarize(&event.git_ref, rules, &decisions);
    PushPlan { decisions, summary }
}

fn summarize(git_ref: &GitRef, rules: &[BuildRule], decisions: &[RuleDecision]) -> String {
    let builds = decisions
        .iter()
        .filter(|d| matches!(d, RuleDecision::Build { .. }))
        .count();
    if decisions
        .iter()
        .all(|d| matches!(d, RuleDecision::NoMatch { .. }))
    {
        let described: Vec<String> = rules.iter().map(BuildRule::describe).collect();
        return format!(
            "ref {git_ref} matched no rule (rules: {})",
            described.join(", ")
        );
    }
    let mut parts = vec![format!("{builds} build(s) queued for {git_ref}")];
    for decision in decisions {
        match decision {
            RuleDecision::Skipped { rule, reason } => {
                parts.push(format!("{rule} skipped: {reason}"))
            }
            RuleDecision::Error { rule, reason } => parts.push(format!("{rule} failed: {reason}")),
            RuleDecision::Build {
                rule,
                note: Some(note),
                ..
            } => parts.push(format!("{rule}: {note}")),
            RuleDecision::Build { .. } | RuleDecision::NoMatch { .. } => {}
        }
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RefKind;
    use crate::rule::{SourcePattern, TagTemplate};

    fn push(full_ref: &str) -> PushEvent {
        PushEvent {
            git_ref: GitRef::parse(full_ref).expect("ref"),
            before: None,
            after: Some(
                "1111111111111111111111111111111111111111"
                    .parse()
                    .expect("commit"),
            ),
            head_message: None,
            head_timestamp: None,
            pusher: None,
            forced: false,
        }
    }

    fn rule(kind: RefKind, source: &str, tags: &str) -> BuildRule {
        BuildRule {
            source_type: kind,
            source: SourcePattern::parse(source).expect("source"),
            tags: TagTemplate::parse(tags).expect("tags"),
            ..BuildRule::default_rule()
        }
    }

    #[test]
    fn no_rules_means_main_to_latest() {
        let plan = plan_builds(&[], &push("refs/heads/main"), PlanTrigger::Push);
        let builds: Vec<_> = plan.builds().collect();
        assert_eq!(builds.len(), 1);
        assert_eq!(builds[0].tags, vec!["latest".to_owned()]);
        assert_eq!(
            plan_builds(&[], &push("refs/heads/dev"), PlanTrigger::Push)
                .builds()
                .count(),
            0
        );
    }

    #[test]
    fn unmatched_refs_say_which_rules_exist() {
        let rules = [
            rule(RefKind::Branch, "main", "latest"),
            rule(RefKind::Tag, "/^v.*$/", "{sourceref}"),
        ];
        let plan = plan_builds(&rules, &push("refs/heads/dev"), PlanTrigger::Push);
        assert_eq!(
            plan.summary,
            "ref refs/heads/dev matched no rule (rules: branch main, tag /^v.*$/)"
        );
    }

    #[test]
    fn deletions_build_nothing() {
        let mut event = push("refs/heads/main");
        event.after = None;
        let plan = plan_builds(&[], &event, PlanTrigger::Push);
        assert_eq!(plan.builds().count(), 0);
        assert_eq!(plan.summary, "branch main deleted: nothing to build");
    }

    #[test]
    fn autobuild_off_and_bad_tags_are_explained() {
        let mut quiet = rule(RefKind::Branch, "main", "latest");
        quiet.autobuild = false;
        let slashy = rule(RefKind::Branch, "/.*/", "{sourceref}");
        let plan = plan_builds(
            &[quiet.clone(), slashy],
            &push("refs/heads/main"),
            PlanTrigger::Push,
        );
        assert_eq!(plan.builds().count(), 1);
        let plan = plan_builds(
            &[rule(RefKind::Branch, "/.*/", "{sourceref}")],
            &push("refs/heads/a/b"),
            PlanTrigger::Push,
        );
        assert_eq!(plan.builds().count(), 0);
        assert!(
            plan.summary
                .contains("rule 1 (branch /.*/) failed: rendered tag \"a/b\""),
            "{}",
            plan.summary
        );
    }

    #[test]
    fn identical_builds_from_two_rules_are_one() {
        let rules = [
            rule(RefKind::Branch, "main", "latest"),
            rule(RefKind::Branch, "/ma.*/", "latest"),
        ];
        let plan = plan_builds(&rules, &push("refs/heads/main"), PlanTrigger::Push);
        assert_eq!(plan.builds().count(), 1);
        assert!(
            plan.summary.contains("rule 2 (branch /ma.*/) skipped: same build as another rule: tag(s) latest left to rule 1 (branch main)"),
            "{}",
            plan.summary
        );
    }

    #[test]
    fn overlapping_tags_go_to_the_first_rule_only() {
        let rules = [
            rule(RefKind::Branch, "main", "latest"),
            rule(RefKind::Branch, "main", "latest,edge"),
        ];
        let plan = plan_builds(&rules, &push("refs/heads/main"), PlanTrigger::Push);
        let tags: Vec<Vec<String>> = plan.builds().map(|b| b.tags.clone()).collect();
        assert_eq!(
            tags,
            vec![vec!["latest".to_owned()], vec!["edge".to_owned()]]
        );
    }

    #[test]
    fn skip_markers_skip_pushes_but_not_manual_builds() {
        let mut event = push("refs/heads/main");
        event.head_message = Some("Update docs [CI SKIP]".to_owned());
        let plan = plan_builds(&[], &event, PlanTrigger::Push);
        assert_eq!(plan.builds().count(), 0);
        assert!(
            plan.summary
                .contains("skipped: the head commit's message contains \"[ci skip]\""),
            "{}",
            plan.summary
        );
        assert_eq!(
            plan_builds(&[], &event, PlanTrigger::Manual)
                .builds()
                .count(),
            1
        );
        let mut quiet = rule(RefKind::Branch, "main", "latest");
        quiet.autobuild = false;
        assert_eq!(
            plan_builds(&[quiet], &push("refs/heads/main"), PlanTrigger::Manual)
                .builds()
                .count(),
            1
        );
    }

    #[test]
    fn messages_not_sent_are_left_to_the_worker() {
        let plan = plan_builds(&[], &push("refs/heads/main"), PlanTrigger::Push);
        assert!(!plan.builds().next().expect("a build").message_checked);
        let mut event = push("refs/heads/main");
        event.head_message = Some("ok".to_owned());
        assert!(
            plan_builds(&[], &event, PlanTrigger::Push)
                .builds()
                .next()
                .expect("a build")
                .message_checked
        );
    }

    /// Docker Hub's documented examples, and the usual variations, as a table: source type,
    /// source, tags, pushed ref, expected tags (empty: no match).
    #[test]
    fn docker_hub_examples() {
        let table: &[(RefKind, &str, &str, &str, &[&str])] = &[
            (
                RefKind::Branch,
                "main",
                "latest",
                "refs/heads/main",
                &["latest"],
            ),
            (RefKind::Branch, "main", "latest", "refs/heads/main2", &[]),
            (
                RefKind::Tag,
                "/^[0-9.]+$/",
                "release-{sourceref}",
                "refs/tags/1.2.0",
                &["release-1.2.0"],
            ),
            (
                RefKind::Tag,
                "/^[0-9.]+$/",
                "release-{sourceref}",
                "refs/tags/v1.2.0",
                &[],
            ),
            (
                RefKind::Tag,
                "/^v([0-9.]+)$/",
                "{\\1}",
                "refs/tags/v1.2.3",
                &["1.2.3"],
            ),
            (
                RefKind::Tag,
                "/^v([0-9]+)\\.([0-9]+)\\.([0-9]+)$/",
                "{\\1}.{\\2},{\\1},latest",
                "refs/tags/v2.5.1",
                &["2.5", "2", "latest"],
            ),
            (
                RefKind::Branch,
                "/^(feature)-(.*)$/",
                "{\\2}-{\\1}",
                "refs/heads/feature-login",
                &["login-feature"],
            ),
            (
                RefKind::Branch,
                "/.*/",
                "{sourceref}",
                "refs/heads/staging",
                &["staging"],
            ),
            (
                RefKind::Branch,
                "/.*/",
                "{sourceref}",
                "refs/tags/staging",
                &[],
            ),
            (
                RefKind::Branch,
                "main",
                "sha-{commit_short}",
                "refs/heads/main",
                &["sha-111111111111"],
            ),
        ];
        for (kind, source, tags, full_ref, expected) in table {
            let plan = plan_builds(
                &[rule(*kind, source, tags)],
                &push(full_ref),
                PlanTrigger::Push,
            );
            let got: Vec<String> = plan.builds().flat_map(|b| b.tags.clone()).collect();
            assert_eq!(
                got,
                expected.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
                "{kind} {source} {tags} on {full_ref}"
            );
        }
    }

    /// Every context/dockerfile combination the rules can express, through planning into the
    /// resolved paths the worker uses.
    #[test]
    fn context_and_dockerfile_combinations() {
        type Row<'a> = (&'a str, &'a str, Result<(&'a str, &'a str), &'a str>);
        let table: &[Row] = &[
            ("/", "Dockerfile", Ok(("", "Dockerfile"))),
            (
                "/",
                "docker/Dockerfile.prod",
                Ok(("", "docker/Dockerfile.prod")),
            ),
            ("", "Dockerfile", Ok(("", "Dockerfile"))),
            (
                "",
                "services/api/Dockerfile",
                Ok(("services/api", "services/api/Dockerfile")),
            ),
            (
                "services/api",
                "Dockerfile",
                Ok(("services/api", "services/api/Dockerfile")),
            ),
            (
                "/services/api/",
                "../shared/Dockerfile",
                Ok(("services/api", "services/shared/Dockerfile")),
            ),
            (
                "./app",
                "./build/Dockerfile",
                Ok(("app", "app/build/Dockerfile")),
            ),
            ("../..", "Dockerfile", Err("leaves the repository checkout")),
            ("/", "../Dockerfile", Err("leaves the repository checkout")),
            (
                "/",
                "/etc/passwd",
                Err("must be relative to the build context"),
            ),
        ];
        for (context, dockerfile, expected) in table {
            let mut r = rule(RefKind::Branch, "main", "latest");
            r.context = (*context).to_owned();
            r.dockerfile = (*dockerfile).to_owned();
            let plan = plan_builds(&[r], &push("refs/heads/main"), PlanTrigger::Push);
            let build = plan.builds().next().expect("a build");
            let resolved = crate::paths::resolve_build_paths(&build.context, &build.dockerfile)
                .map(|p| {
                    (
                        p.context.display().to_string(),
                        p.dockerfile.display().to_string(),
                    )
                });
            match expected {
                Ok((ctx, df)) => assert_eq!(
                    resolved,
                    Ok(((*ctx).to_owned(), (*df).to_owned())),
                    "{context:?} {dockerfile:?}"
                ),
                Err(text) => assert!(
                    resolved.as_ref().is_err_and(|e| e.contains(text)),
                    "{context:?} {dockerfile:?}: {resolved:?}"
                ),
            }
        }
    }
}
