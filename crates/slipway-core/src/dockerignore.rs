//! `.dockerignore` matching with the Docker CLI's semantics: patterns are relative to the
//! context root (no implicit "match at any depth" as in `.gitignore`), `*` and `?` stay within
//! one path component, `**` spans any number of them, a `!` line re-includes, the last matching
//! line wins, and a pattern that matches a directory excludes everything below it.

use regex::Regex;

#[derive(Debug, Clone)]
struct Pattern {
    regex: Regex,
    exception: bool,
}

/// The parsed contents of one `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    pub fn parse(contents: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for (number, line) in contents.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, raw) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(raw);
            if cleaned.is_empty() {
                continue;
            }
            let regex = Regex::new(&to_regex(&cleaned)).map_err(|e| {
                format!(
                    ".dockerignore line {}: pattern {raw:?} is invalid: {e}",
                    number + 1
                )
            })?;
            patterns.push(Pattern { regex, exception });
        }
        Ok(Self { patterns })
    }

    /// Whether any `!` line exists; without one, an excluded directory need not be entered.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let mut excluded = false;
        for pattern in &self.patterns {
            if matches_self_or_parent(&pattern.regex, path) {
                excluded = !pattern.exception;
            }
        }
        excluded
    }
}

fn matches_self_or_parent(regex: &Regex, path: &str) -> bool {
    if regex.is_match(path) {
        return true;
    }
    path.match_indices('/')
        .any(|(at, _)| regex.is_match(&path[..at]))
}

/// Cleans a pattern the way Docker does: no leading `/` or `./`, no trailing `/`, `.`
/// components removed.
fn clean(pattern: &str) -> String {
    pattern
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn to_regex(pattern: &str) -> String {
    let mut out = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                // `**/` matches zero or more whole directories; a bare `**` anything at all.
                if chars.get(i + 2) == Some(&'/') {
                    out.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    out.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                // Character classes pass through; a leading `^` or `!` negates, as in Go.
                let end = chars[i..].iter().position(|&c| c == ']').map(|p| p + i);
                match end {
                    Some(end) if end > i + 1 => {
                        out.push('[');
                        let mut body: String = chars[i + 1..end].iter().collect();
                        if let Some(rest) = body.strip_prefix('!') {
                            body = format!("^{rest}");
                        }
                        out.push_str(&body.replace('\\', "\\\\"));
                        out.push(']');
                        i = end + 1;
                        continue;
                    }
                    _ => out.push_str("\\["),
                }
            }
            '\\' => {
                if let Some(next) = chars.get(i + 1) {
                    out.push_str(&regex::escape(&next.to_string()));
                    i += 2;
                    continue;
                }
                out.push_str("\\\\");
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).expect("parses")
    }

    #[test]
    fn patterns_are_rooted_unlike_gitignore() {
        let rules = ignore("*.md\n");
        assert!(rules.is_excluded("README.md"));
        assert!(!rules.is_excluded("docs/guide.md"));
        assert!(ignore("**/*.md").is_excluded("docs/guide.md"));
    }

    #[test]
    fn directories_exclude_their_contents() {
        let rules = ignore("# comment\n/target/\n./node_modules\n");
        assert!(rules.is_excluded("target"));
        assert!(rules.is_excluded("target/debug/app"));
        assert!(rules.is_excluded("node_modules/x/index.js"));
        assert!(!rules.is_excluded("src/target.rs"));
    }

    #[test]
    fn last_match_wins_and_exceptions_reinclude() {
        let rules = ignore("*.txt\n!keep.txt\n");
        assert!(rules.is_excluded("a.txt"));
        assert!(!rules.is_excluded("keep.txt"));
        assert!(rules.has_exceptions());
        let rules = ignore("!keep.txt\n*.txt\n");
        assert!(rules.is_excluded("keep.txt"));
    }

    #[test]
    fn single_star_and_question_mark_stay_in_one_component() {
        let rules = ignore("a/*/c\nfile?.log\n");
        assert!(rules.is_excluded("a/b/c"));
        assert!(!rules.is_excluded("a/b/x/c"));
        assert!(rules.is_excluded("file1.log"));
        assert!(!rules.is_excluded("file10.log"));
    }

    #[test]
    fn character_classes_and_escapes() {
        let rules = ignore("[!a]*.tmp\nlit\\*eral\n");
        assert!(rules.is_excluded("b1.tmp"));
        assert!(!rules.is_excluded("a1.tmp"));
        assert!(rules.is_excluded("lit*eral"));
        assert!(!rules.is_excluded("litXeral"));
    }
}
