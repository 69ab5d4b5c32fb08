//! Planning: from one push and a repository's rules to the builds it asks for, with a reason
//! for every rule that did not build. The reasons are what the deliveries log shows, so that
//! "my push triggered nothing" always has an answer.

use serde::{Deserialize, Serialize};

use crate::event::{CommitId, GitRef, PushEvent};
use crate::rule::BuildRule;

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
}

/// What happened to one rule for one push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RuleDecision {
    /// The rule matched and asks for this build.
    Build { rule: String, plan: BuildPlan },
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
pub fn plan_builds(rules: &[BuildRule], event: &PushEvent) -> PushPlan {
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

    let mut decisions = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        let label = format!("rule {} ({})", index + 1, rule.describe());
        let Some(captures) = rule.matches(&event.git_ref) else {
            decisions.push(RuleDecision::NoMatch { rule: label });
            continue;
        };
        if !rule.autobuild {
            decisions.push(RuleDecision::Skipped {
                rule: label,
                reason: "autobuild is off for this rule".to_owned(),
            });
            continue;
        }
        let tags = match rule.render_tags(&event.git_ref, &captures, commit) {
            Ok(tags) => tags,
            Err(reason) => {
                decisions.push(RuleDecision::Error {
                    rule: label,
                    reason,
                });
                continue;
            }
        };
        let plan = BuildPlan {
            rule_index: index,
            git_ref: event.git_ref.clone(),
            commit: commit.clone(),
            tags,
            dockerfile: rule.dockerfile.clone(),
            context: rule.context.clone(),
        };
        // Two rules that would build the same thing for the same commit are one build.
        let duplicate_of = decisions.iter().find_map(|d| match d {
            RuleDecision::Build {
                rule,
                plan: earlier,
            } if earlier.tags == plan.tags
                && earlier.dockerfile == plan.dockerfile
                && earlier.context == plan.context =>
            {
                Some(rule.clone())
            }
            _ => None,
        });
        decisions.push(match duplicate_of {
            Some(earlier) => RuleDecision::Skipped {
                rule: label,
                reason: format!("same build as {earlier}"),
            },
            None => RuleDecision::Build { rule: label, plan },
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
        let plan = plan_builds(&[], &push("refs/heads/main"));
        let builds: Vec<_> = plan.builds().collect();
        assert_eq!(builds.len(), 1);
        assert_eq!(builds[0].tags, vec!["latest".to_owned()]);
        assert_eq!(
            plan_builds(&[], &push("refs/heads/dev")).builds().count(),
            0
        );
    }

    #[test]
    fn unmatched_refs_say_which_rules_exist() {
        let rules = [
            rule(RefKind::Branch, "main", "latest"),
            rule(RefKind::Tag, "/^v.*$/", "{sourceref}"),
        ];
        let plan = plan_builds(&rules, &push("refs/heads/dev"));
        assert_eq!(
            plan.summary,
            "ref refs/heads/dev matched no rule (rules: branch main, tag /^v.*$/)"
        );
    }

    #[test]
    fn deletions_build_nothing() {
        let mut event = push("refs/heads/main");
        event.after = None;
        let plan = plan_builds(&[], &event);
        assert_eq!(plan.builds().count(), 0);
        assert_eq!(plan.summary, "branch main deleted: nothing to build");
    }

    #[test]
    fn autobuild_off_and_bad_tags_are_explained() {
        let mut quiet = rule(RefKind::Branch, "main", "latest");
        quiet.autobuild = false;
        let slashy = rule(RefKind::Branch, "/.*/", "{sourceref}");
        let plan = plan_builds(&[quiet, slashy], &push("refs/heads/main"));
        assert_eq!(plan.builds().count(), 1);
        let plan = plan_builds(
            &[rule(RefKind::Branch, "/.*/", "{sourceref}")],
            &push("refs/heads/a/b"),
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
        let plan = plan_builds(&rules, &push("refs/heads/main"));
        assert_eq!(plan.builds().count(), 1);
        assert!(
            plan.summary
                .contains("rule 2 (branch /ma.*/) skipped: same build as rule 1"),
            "{}",
            plan.summary
        );
    }
}
