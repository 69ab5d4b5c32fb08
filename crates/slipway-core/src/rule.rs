//! Build rules with Docker Hub's semantics: which refs build, and which tags they produce.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::event::{CommitId, GitRef, RefKind};

/// One build rule, as written in the configuration file (and stored, as JSON, with the
/// repository). Unknown keys are refused so that a typo cannot silently change what builds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRule {
    /// A name for the rule, unique within its repository: the commit-status context is
    /// `slipway/<name>`, so naming a rule keeps its status (and a forge's required check on it)
    /// the same when the rules are reordered or its tags change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `branch` or `tag`.
    pub source_type: RefKind,
    /// A branch or tag name, or `/regex/` matched against the whole name.
    pub source: SourcePattern,
    /// Comma-separated Docker tags; see [`TagTemplate`] for the placeholders.
    #[serde(default = "default_tags")]
    pub tags: TagTemplate,
    /// The Dockerfile's path, relative to the context.
    #[serde(default = "default_dockerfile")]
    pub dockerfile: String,
    /// The build context: `/` is the repository root, an empty string is the Dockerfile's
    /// directory, anything else a directory relative to the repository root.
    #[serde(default = "default_context")]
    pub context: String,
    /// When false, pushes do not build this rule (manual builds and triggers still do).
    #[serde(default = "default_true")]
    pub autobuild: bool,
    /// True: keep the engine's layer cache and use the tag's previous image as a cache source;
    /// false: build with no cache.
    #[serde(default = "default_true")]
    pub cache: bool,
    /// Build arguments; values may use the build variables as `${SOURCE_COMMIT}` etc.
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// The multi-stage target to build.
    #[serde(default)]
    pub target: Option<String>,
    /// Extra image labels; values may use the build variables.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Build only when the push changed a file matching one of these globs.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Changed files matching these globs do not count.
    #[serde(default)]
    pub ignore_paths: Vec<String>,
    /// Markers that, found in the head commit's message (any case), skip the build.
    #[serde(default = "default_skip_messages")]
    pub skip_message: Vec<String>,
    /// Replace characters a Docker tag cannot hold with `-` instead of failing the rule.
    #[serde(default)]
    pub sanitize_tags: bool,
}

fn default_skip_messages() -> Vec<String> {
    crate::filters::DEFAULT_SKIP_MESSAGES
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

fn default_tags() -> TagTemplate {
    TagTemplate::parse("latest").unwrap_or_else(|_| unreachable!("the default template is valid"))
}

fn default_dockerfile() -> String {
    "Dockerfile".to_owned()
}

fn default_context() -> String {
    "/".to_owned()
}

fn default_true() -> bool {
    true
}

impl BuildRule {
    /// The rule a repository gets when it declares none: branch `main` → `latest`.
    pub fn default_rule() -> Self {
        Self {
            name: None,
            source_type: RefKind::Branch,
            source: SourcePattern::Exact("main".to_owned()),
            tags: default_tags(),
            dockerfile: default_dockerfile(),
            context: default_context(),
            autobuild: true,
            cache: true,
            build_args: BTreeMap::new(),
            target: None,
            labels: BTreeMap::new(),
            paths: Vec::new(),
            ignore_paths: Vec::new(),
            skip_message: default_skip_messages(),
            sanitize_tags: false,
        }
    }

    /// Checks what serde cannot: path globs, build-arg names and the variables used in values,
    /// label keys. Called when the configuration is loaded, so a bad rule stops the start.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(name) = &self.name {
            check_rule_name(name)?;
        }
        crate::filters::PathFilter::new(&self.paths, &self.ignore_paths)?;
        crate::filters::check_build_args("build_args", &self.build_args)?;
        for (key, value) in &self.labels {
            if key.trim().is_empty() {
                return Err("labels: a label key must not be empty".to_owned());
            }
            crate::filters::check_variables(&format!("labels.{key}"), value)?;
        }
        if self.target.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err("target must not be empty when given".to_owned());
        }
        Ok(())
    }

    /// A one-line description for logs and "why did nothing build" answers.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("{name}: {} {}", self.source_type, self.source),
            None => format!("{} {}", self.source_type, self.source),
        }
    }

    /// The capture groups of a matching ref (group 0 is the whole name), or `None`.
    pub fn matches(&self, git_ref: &GitRef) -> Option<Vec<String>> {
        if git_ref.kind != self.source_type {
            return None;
        }
        self.source.captures(&git_ref.name)
    }

    /// Renders this rule's tags for a matching ref.
    pub fn render_tags(
        &self,
        git_ref: &GitRef,
        captures: &[String],
        commit: &CommitId,
    ) -> Result<Vec<String>, String> {
        self.tags
            .render(&git_ref.name, captures, commit, self.sanitize_tags)
    }
}

/// The longest rule name accepted; the status context adds `slipway/` and forges show a line.
pub const MAX_RULE_NAME_LEN: usize = 64;

/// Checks a rule's `name`: 1 to [`MAX_RULE_NAME_LEN`] characters from `A-Z a-z 0-9 . _ - /`,
/// and not `rule-<digits>`, which is what an unnamed rule's status context is called after its
/// position.
pub fn check_rule_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_RULE_NAME_LEN {
        return Err(format!(
            "name {name:?} must be 1 to {MAX_RULE_NAME_LEN} characters"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        return Err(format!(
            "name {name:?} may hold only letters, digits, '.', '_', '-' and '/'"
        ));
    }
    if name
        .strip_prefix("rule-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "name {name:?} is reserved: unnamed rules are called rule-<position>"
        ));
    }
    Ok(())
}

/// Checks what no single rule can: that rule names are unique within a repository's rules.
pub fn check_rule_names(rules: &[BuildRule]) -> Result<(), String> {
    for (index, rule) in rules.iter().enumerate() {
        if let Some(name) = &rule.name
            && rules[..index].iter().any(|r| r.name.as_ref() == Some(name))
        {
            return Err(format!(
                "rules[{index}]: the name {name:?} is already another rule's; names tell the rules' commit statuses apart"
            ));
        }
    }
    Ok(())
}

/// A rule's `source`: an exact name, or `/regex/` anchored to the whole name.
#[derive(Debug, Clone)]
pub enum SourcePattern {
    Exact(String),
    /// The regex as written between the slashes, and its compiled, anchored form.
    Regex(String, Regex),
}

impl SourcePattern {
    pub fn parse(source: &str) -> Result<Self, String> {
        match source.strip_prefix('/').and_then(|s| s.strip_suffix('/')) {
            Some(pattern) if source.len() >= 2 => {
                // Anchoring makes `/v1/` mean "exactly v1", as users expect from a name, rather
                // than "contains v1": silent over-matching was a classic surprise.
                // The user's own pattern is compiled first, so an error quotes what they wrote
                // rather than the anchored form.
                Regex::new(pattern)
                    .map_err(|e| format!("source {source:?} is not a valid regex: {e}"))?;
                let anchored = format!("^(?:{pattern})$");
                let regex = Regex::new(&anchored)
                    .map_err(|e| format!("source {source:?} is not a valid regex: {e}"))?;
                Ok(SourcePattern::Regex(pattern.to_owned(), regex))
            }
            _ if source.trim().is_empty() => Err("source must not be empty".to_owned()),
            _ => Ok(SourcePattern::Exact(source.to_owned())),
        }
    }

    fn captures(&self, name: &str) -> Option<Vec<String>> {
        match self {
            SourcePattern::Exact(exact) => (exact == name).then(|| vec![name.to_owned()]),
            SourcePattern::Regex(_, regex) => regex.captures(name).map(|caps| {
                caps.iter()
                    .map(|group| group.map_or_else(String::new, |m| m.as_str().to_owned()))
                    .collect()
            }),
        }
    }
}

impl PartialEq for SourcePattern {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl fmt::Display for SourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourcePattern::Exact(name) => f.write_str(name),
            SourcePattern::Regex(pattern, _) => write!(f, "/{pattern}/"),
        }
    }
}

impl Serialize for SourcePattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SourcePattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        SourcePattern::parse(&source).map_err(serde::de::Error::custom)
    }
}

/// A comma-separated list of tag templates. Placeholders: `{sourceref}` (the whole branch or
/// tag name), `{\1}`..`{\9}` (the source regex's capture groups), `{commit}` and
/// `{commit_short}`. Templates are checked when the configuration is loaded, so a typo in a
/// placeholder is a configuration error rather than a build that never happens.
#[derive(Debug, Clone, PartialEq)]
pub struct TagTemplate {
    source: String,
    parts: Vec<Vec<Piece>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    SourceRef,
    Capture(usize),
    Commit,
    CommitShort,
}

impl TagTemplate {
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        for template in source.split(',') {
            let template = template.trim();
            if template.is_empty() {
                return Err(format!("tags {source:?} contains an empty tag"));
            }
            parts.push(parse_one_template(template)?);
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    /// The tags when the template has no placeholders, as rendering would produce them (trimmed,
    /// without duplicates, joined by `,`), e.g. `latest` or `latest,stable`; `None` when any tag
    /// depends on the ref or the commit.
    pub fn literal(&self) -> Option<String> {
        let mut tags: Vec<&str> = Vec::with_capacity(self.parts.len());
        for pieces in &self.parts {
            let [Piece::Literal(text)] = pieces.as_slice() else {
                return None;
            };
            if !tags.contains(&text.as_str()) {
                tags.push(text);
            }
        }
        Some(tags.join(","))
    }

    /// Renders every tag, checks each against Docker's tag grammar (or, with `sanitize`,
    /// replaces what the grammar forbids) and drops duplicates while keeping the written order.
    pub fn render(
        &self,
        sourceref: &str,
        captures: &[String],
        commit: &CommitId,
        sanitize: bool,
    ) -> Result<Vec<String>, String> {
        let mut tags: Vec<String> = Vec::new();
        for pieces in &self.parts {
            let mut tag = String::new();
            for piece in pieces {
                match piece {
                    Piece::Literal(text) => tag.push_str(text),
                    Piece::SourceRef => tag.push_str(sourceref),
                    Piece::Capture(index) => {
                        tag.push_str(captures.get(*index).map_or("", String::as_str))
                    }
                    Piece::Commit => tag.push_str(commit.as_str()),
                    Piece::CommitShort => tag.push_str(commit.short()),
                }
            }
            if sanitize {
                tag = sanitize_docker_tag(&tag)?;
            }
            validate_docker_tag(&tag)?;
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        Ok(tags)
    }
}

fn parse_one_template(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("tag {template:?} has an unclosed '{{'"))?;
        let name = &rest[open + 1..open + close];
        pieces.push(match name {
            "sourceref" => Piece::SourceRef,
            "commit" => Piece::Commit,
            "commit_short" => Piece::CommitShort,
            _ => match name.strip_prefix('\\').and_then(|d| d.parse::<usize>().ok()) {
                Some(index @ 1..=9) => Piece::Capture(index),
                _ => {
                    return Err(format!(
                        "tag {template:?} uses unknown placeholder {{{name}}} (known: {{sourceref}}, {{\\1}}..{{\\9}}, {{commit}}, {{commit_short}})"
                    ));
                }
            },
        });
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.to_owned()));
    }
    Ok(pieces)
}

/// Makes `tag` fit Docker's grammar: characters outside it become `-`, a first character that
/// may not start a tag becomes `_`, and the result is cut at 128 characters.
pub fn sanitize_docker_tag(tag: &str) -> Result<String, String> {
    let mut out: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    if out.starts_with(['.', '-']) {
        out.replace_range(..1, "_");
    }
    if out.is_empty() {
        return Err(format!("rendered tag {tag:?} is empty"));
    }
    Ok(out)
}

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_docker_tag(tag: &str) -> Result<(), String> {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "rendered tag {tag:?} is not a valid Docker tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})"
        ))
    }
}

impl fmt::Display for TagTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for TagTemplate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for TagTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        TagTemplate::parse(&source).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit() -> CommitId {
        "0123456789abcdef0123456789abcdef01234567"
            .parse()
            .expect("valid")
    }

    fn rule(toml_text: &str) -> BuildRule {
        toml::from_str(toml_text).expect("rule parses")
    }

    #[test]
    fn defaults_are_docker_hubs() {
        let parsed = rule("source_type = \"branch\"\nsource = \"main\"");
        assert_eq!(parsed, BuildRule::default_rule());
        assert_eq!(parsed.tags.to_string(), "latest");
        assert_eq!(parsed.dockerfile, "Dockerfile");
        assert_eq!(parsed.context, "/");
        assert!(parsed.autobuild);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err =
            toml::from_str::<BuildRule>("source_type = \"branch\"\nsource = \"main\"\ntag = \"x\"")
                .expect_err("typo must fail");
        assert!(err.to_string().contains("unknown field `tag`"), "{err}");
    }

    #[test]
    fn regex_sources_match_the_whole_name_and_render_captures() {
        let parsed = rule(
            r#"source_type = "tag"
source = "/^v([0-9.]+)$/"
tags = "{\\1},latest""#,
        );
        let tag = GitRef::parse("refs/tags/v1.2.3").expect("ref");
        let captures = parsed.matches(&tag).expect("matches");
        assert_eq!(
            parsed.render_tags(&tag, &captures, &commit()),
            Ok(vec!["1.2.3".to_owned(), "latest".to_owned()])
        );
        assert!(
            parsed
                .matches(&GitRef::parse("refs/tags/xv1.2").expect("ref"))
                .is_none()
        );
        assert!(
            parsed
                .matches(&GitRef::parse("refs/heads/v1.2").expect("ref"))
                .is_none()
        );
    }

    #[test]
    fn regex_without_anchors_is_still_whole_name() {
        let pattern = SourcePattern::parse("/release-.*/").expect("valid");
        assert!(pattern.captures("release-1").is_some());
        assert!(pattern.captures("my-release-1").is_none());
    }

    #[test]
    fn placeholders_render() {
        let template = TagTemplate::parse(
            "{sourceref}-{commit_short}, sha-{commit}, {sourceref}-{commit_short}",
        )
        .expect("valid");
        let tags = template
            .render("main", &[], &commit(), false)
            .expect("renders");
        assert_eq!(
            tags,
            vec!["main-0123456789ab".to_owned(), format!("sha-{}", commit())]
        );
    }

    #[test]
    fn literal_templates_are_told_from_ones_with_placeholders() {
        let literal = |t: &str| TagTemplate::parse(t).expect("valid").literal();
        assert_eq!(literal("latest").as_deref(), Some("latest"));
        assert_eq!(
            literal(" latest , stable,latest").as_deref(),
            Some("latest,stable")
        );
        assert_eq!(literal("{sourceref}"), None);
        assert_eq!(literal("latest,{commit_short}"), None);
        assert_eq!(literal("v-{\\1}"), None);
    }

    #[test]
    fn rule_names_are_checked_and_unique() {
        for good in ["web", "api/release", "build_1.2-x"] {
            assert_eq!(check_rule_name(good), Ok(()), "{good}");
        }
        for bad in ["", "with space", "é", "rule-1", "rule-42", &"x".repeat(65)] {
            assert!(check_rule_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_rule_name("rule-one"), Ok(()));
        let named = |name: Option<&str>| BuildRule {
            name: name.map(str::to_owned),
            ..BuildRule::default_rule()
        };
        assert_eq!(
            check_rule_names(&[named(Some("a")), named(None), named(Some("b")), named(None)]),
            Ok(())
        );
        let twice = check_rule_names(&[named(Some("a")), named(Some("a"))]).expect_err("refused");
        assert!(twice.contains("rules[1]"), "{twice}");
        assert!(named(Some("has space")).validate().is_err());
        // The name is optional and round-trips through the stored JSON only when set.
        let parsed: BuildRule = serde_json::from_value(serde_json::json!({
            "name": "web", "source_type": "branch", "source": "main"
        }))
        .expect("a named rule");
        assert_eq!(parsed.name.as_deref(), Some("web"));
        assert_eq!(parsed.describe(), "web: branch main");
        let unnamed = serde_json::to_value(BuildRule::default_rule()).expect("json");
        assert!(unnamed.get("name").is_none(), "{unnamed}");
    }

    #[test]
    fn bad_templates_and_tags_are_errors_not_skips() {
        assert!(
            TagTemplate::parse("{branch}")
                .expect_err("unknown")
                .contains("{branch}")
        );
        assert!(TagTemplate::parse("a,,b").is_err());
        assert!(TagTemplate::parse("{\\0}").is_err());
        let template = TagTemplate::parse("{sourceref}").expect("valid");
        let err = template
            .render("feature/x", &[], &commit(), false)
            .expect_err("slash is not a tag char");
        assert!(err.contains("\"feature/x\""), "{err}");
        assert_eq!(
            template.render("feature/x", &[], &commit(), true),
            Ok(vec!["feature-x".to_owned()])
        );
        assert_eq!(
            template.render("-weird name!", &[], &commit(), true),
            Ok(vec!["_weird-name-".to_owned()])
        );
    }

    #[test]
    fn rule_extensions_parse_and_validate() {
        let parsed = rule(
            r#"source_type = "branch"
source = "main"
build_args = { VERSION = "${SOURCE_COMMIT}", MODE = "release" }
target = "runtime"
labels = { "org.example.team" = "web" }
paths = ["services/web/**"]
ignore_paths = ["**/*.md"]
skip_message = ["[no build]"]
cache = false"#,
        );
        assert!(parsed.validate().is_ok());
        assert_eq!(parsed.target.as_deref(), Some("runtime"));
        assert!(!parsed.cache);
        assert_eq!(parsed.skip_message, vec!["[no build]".to_owned()]);
        let mut bad = parsed.clone();
        bad.build_args.insert("X".into(), "${NOPE}".into());
        assert!(
            bad.validate()
                .expect_err("unknown variable")
                .contains("${NOPE}")
        );
        let mut bad = parsed;
        bad.paths = vec!["a/[".into()];
        assert!(bad.validate().is_err());
    }

    #[test]
    fn invalid_regex_is_reported() {
        assert!(
            SourcePattern::parse("/(/")
                .expect_err("bad")
                .contains("not a valid regex")
        );
        assert!(SourcePattern::parse("").is_err());
    }
}
