//! The parts of a rule that decide whether a matching push really builds: path filters over
//! the push's changed files, skip markers in the head commit's message, and the build
//! variables Docker Hub users know (`SOURCE_BRANCH`, `SOURCE_COMMIT`, …).

use std::collections::BTreeMap;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The skip markers used when a rule names none.
pub const DEFAULT_SKIP_MESSAGES: [&str; 3] = ["[skip ci]", "[ci skip]", "[skip build]"];

/// The first skip marker found in `message`, compared without regard to case.
pub fn skip_marker<'a>(message: &str, markers: &'a [String]) -> Option<&'a str> {
    let message = message.to_lowercase();
    markers
        .iter()
        .map(String::as_str)
        .find(|marker| !marker.is_empty() && message.contains(&marker.to_lowercase()))
}

/// `paths` / `ignore_paths` of a rule, compiled. Patterns are globs relative to the repository
/// root: `*` stays within one directory, `**` spans any number, and a pattern also matches
/// everything below it (`docs` covers `docs/a/b.md`).
#[derive(Debug, Clone)]
pub struct PathFilter {
    paths: Option<GlobSet>,
    ignore: Option<GlobSet>,
    described: String,
}

/// Whether a push's changes pass a rule's path filter, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathDecision {
    pub build: bool,
    pub reason: String,
}

impl PathFilter {
    pub fn new(paths: &[String], ignore_paths: &[String]) -> Result<Self, String> {
        let mut described = Vec::new();
        if !paths.is_empty() {
            described.push(format!("paths: {}", paths.join(", ")));
        }
        if !ignore_paths.is_empty() {
            described.push(format!("ignore_paths: {}", ignore_paths.join(", ")));
        }
        Ok(Self {
            paths: compile(paths, "paths")?,
            ignore: compile(ignore_paths, "ignore_paths")?,
            described: described.join("; "),
        })
    }

    /// True when the rule has no path filter at all.
    pub fn is_empty(&self) -> bool {
        self.paths.is_none() && self.ignore.is_none()
    }

    /// Decides from the files a push changed (relative paths with `/`). Files matched by
    /// `ignore_paths` do not count; of the rest, at least one must match `paths` (or exist,
    /// when `paths` is empty).
    pub fn decide(&self, changed: &[String]) -> PathDecision {
        let counted: Vec<&String> = changed
            .iter()
            .filter(|file| {
                !self
                    .ignore
                    .as_ref()
                    .is_some_and(|set| set.is_match(file.as_str()))
            })
            .collect();
        let hit = match &self.paths {
            Some(set) => counted
                .iter()
                .find(|file| set.is_match(file.as_str()))
                .map(|f| f.as_str()),
            None => counted.first().map(|f| f.as_str()),
        };
        match hit {
            Some(file) => PathDecision {
                build: true,
                reason: format!(
                    "{file} changed, which the path filter ({}) selects",
                    self.described
                ),
            },
            None => PathDecision {
                build: false,
                reason: format!(
                    "none of the {} changed file(s) passes the path filter ({})",
                    changed.len(),
                    self.described
                ),
            },
        }
    }
}

fn compile(patterns: &[String], key: &str) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let trimmed = pattern
            .trim()
            .trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(format!("{key}: an empty pattern matches nothing"));
        }
        for candidate in [trimmed.to_owned(), format!("{trimmed}/**")] {
            builder.add(
                glob(&candidate)
                    .map_err(|e| format!("{key}: pattern {pattern:?} is invalid: {e}"))?,
            );
        }
    }
    builder.build().map(Some).map_err(|e| format!("{key}: {e}"))
}

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// The variables every build gets as build args (and that `build_args` and `labels` values
/// may use as `${NAME}`), with Docker Hub's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildVariables {
    /// The branch or tag name.
    pub source_branch: String,
    pub source_commit: String,
    pub commit_msg: String,
    /// `branch` or `tag`.
    pub source_type: String,
    /// The image repository, without a tag.
    pub docker_repo: String,
    /// The first of the build's tags.
    pub docker_tag: String,
    /// The Dockerfile's path from the repository root.
    pub dockerfile_path: String,
}

impl BuildVariables {
    pub const NAMES: [&'static str; 8] = [
        "SOURCE_BRANCH",
        "SOURCE_COMMIT",
        "COMMIT_MSG",
        "SOURCE_TYPE",
        "DOCKER_REPO",
        "DOCKER_TAG",
        "IMAGE_NAME",
        "DOCKERFILE_PATH",
    ];

    /// Name and value of every variable, in [`BuildVariables::NAMES`] order.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SOURCE_BRANCH", self.source_branch.clone()),
            ("SOURCE_COMMIT", self.source_commit.clone()),
            ("COMMIT_MSG", self.commit_msg.clone()),
            ("SOURCE_TYPE", self.source_type.clone()),
            ("DOCKER_REPO", self.docker_repo.clone()),
            ("DOCKER_TAG", self.docker_tag.clone()),
            (
                "IMAGE_NAME",
                format!("{}:{}", self.docker_repo, self.docker_tag),
            ),
            ("DOCKERFILE_PATH", self.dockerfile_path.clone()),
        ]
    }

    /// Replaces `${NAME}` with the variable's value; `$$` is a literal `$`. Anything else
    /// stays as written (names were checked when the configuration loaded).
    pub fn expand(&self, value: &str) -> String {
        let pairs = self.pairs();
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                out.push('$');
                rest = stripped;
            } else if let Some((name, tail)) =
                after.strip_prefix('{').and_then(|a| a.split_once('}'))
                && let Some((_, found)) = pairs.iter().find(|(n, _)| *n == name)
            {
                out.push_str(found);
                rest = tail;
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        out
    }
}

/// Checks that every `${NAME}` in `value` names a build variable.
pub fn check_variables(key: &str, value: &str) -> Result<(), String> {
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let Some((name, tail)) = after.split_once('}') else {
            return Err(format!("{key}: {value:?} has an unclosed \"${{\""));
        };
        if !BuildVariables::NAMES.contains(&name) {
            return Err(format!(
                "{key}: {value:?} uses unknown variable ${{{name}}} (known: {})",
                BuildVariables::NAMES.join(", ")
            ));
        }
        rest = tail;
    }
    Ok(())
}

/// Checks build-arg names (`ARG` names) and the variables their values use.
pub fn check_build_args(key: &str, args: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in args {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "{key}: {name:?} is not a valid build argument name"
            ));
        }
        check_variables(&format!("{key}.{name}"), value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn path_filters_select_and_ignore() {
        let api = PathFilter::new(&["services/api".to_owned()], &[]).expect("valid");
        assert!(api.decide(&files(&["services/api/main.go"])).build);
        assert!(!api.decide(&files(&["services/web/index.html"])).build);
        let md = PathFilter::new(&[], &["**/*.md".to_owned(), "docs/".to_owned()]).expect("valid");
        assert!(!md.decide(&files(&["README.md", "docs/a/b.txt"])).build);
        assert!(md.decide(&files(&["README.md", "src/lib.rs"])).build);
        let star = PathFilter::new(&["*.toml".to_owned()], &[]).expect("valid");
        assert!(star.decide(&files(&["Cargo.toml"])).build);
        assert!(
            !star.decide(&files(&["crates/a/Cargo.toml"])).build,
            "* stays in one directory"
        );
        let reason = api.decide(&files(&["x"])).reason;
        assert_eq!(
            reason,
            "none of the 1 changed file(s) passes the path filter (paths: services/api)"
        );
        assert!(
            PathFilter::new(&["[".to_owned()], &[])
                .expect_err("bad glob")
                .contains("paths")
        );
    }

    #[test]
    fn skip_markers_ignore_case() {
        let defaults: Vec<String> = DEFAULT_SKIP_MESSAGES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            skip_marker("Fix typo [SKIP CI]", &defaults),
            Some("[skip ci]")
        );
        assert_eq!(
            skip_marker("docs [skip build]\n\nmore", &defaults),
            Some("[skip build]")
        );
        assert_eq!(skip_marker("skip ci", &defaults), None);
    }

    #[test]
    fn variables_expand_and_are_checked() {
        let vars = BuildVariables {
            source_branch: "main".into(),
            source_commit: "abc".into(),
            commit_msg: "msg".into(),
            source_type: "branch".into(),
            docker_repo: "reg/acme/web".into(),
            docker_tag: "latest".into(),
            dockerfile_path: "Dockerfile".into(),
        };
        assert_eq!(
            vars.expand("v-${SOURCE_COMMIT}-$$-${IMAGE_NAME}-$HOME"),
            "v-abc-$-reg/acme/web:latest-$HOME"
        );
        assert!(check_variables("k", "${SOURCE_COMMIT}").is_ok());
        assert!(
            check_variables("k", "${NOPE}")
                .expect_err("unknown")
                .contains("unknown variable ${NOPE}")
        );
        assert!(check_variables("k", "${SOURCE").is_err());
        let bad = BTreeMap::from([("1X".to_owned(), "v".to_owned())]);
        assert!(check_build_args("build_args", &bad).is_err());
    }
}
