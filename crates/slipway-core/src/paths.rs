//! Where a rule's Dockerfile and context lie inside a checkout, by Docker Hub's semantics.
//! This is the lexical half of confinement: `..` that climbs out of the repository is refused
//! here; the build crate then resolves symlinks on disk and checks the result again.

use std::path::{Component, Path, PathBuf};

/// A rule's Dockerfile and context as paths relative to the repository root, with no `.`,
/// `..` or root components left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPaths {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
}

/// Resolves `context` (`/` = repository root, empty = the Dockerfile's directory, otherwise a
/// directory from the root) and `dockerfile` (relative to the context; relative to the root
/// when the context is empty).
pub fn resolve_build_paths(context: &str, dockerfile: &str) -> Result<BuildPaths, String> {
    if dockerfile.trim().is_empty() {
        return Err("dockerfile must not be empty".to_owned());
    }
    if dockerfile.starts_with('/') {
        return Err(format!(
            "dockerfile {dockerfile:?} must be relative to the build context, not absolute"
        ));
    }
    if context.is_empty() {
        let dockerfile_path = normalize(Path::new(dockerfile), "dockerfile", dockerfile)?;
        let context_path = dockerfile_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        return Ok(BuildPaths {
            context: context_path,
            dockerfile: dockerfile_path,
        });
    }
    let context_path = normalize(
        Path::new(context.trim_start_matches('/')),
        "context",
        context,
    )?;
    let dockerfile_path = normalize(&context_path.join(dockerfile), "dockerfile", dockerfile)?;
    Ok(BuildPaths {
        context: context_path,
        dockerfile: dockerfile_path,
    })
}

/// Removes `.` and folds `..` without touching the disk; climbing above the root is an error.
pub fn normalize(path: &Path, what: &str, as_written: &str) -> Result<PathBuf, String> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "{what} {as_written:?} leaves the repository checkout"
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{what} {as_written:?} must be a relative path"));
            }
        }
    }
    Ok(parts.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(context: &str, dockerfile: &str) -> Result<(String, String), String> {
        resolve_build_paths(context, dockerfile).map(|p| {
            (
                p.context.display().to_string(),
                p.dockerfile.display().to_string(),
            )
        })
    }

    #[test]
    fn docker_hub_semantics() {
        assert_eq!(
            resolve("/", "Dockerfile"),
            Ok(("".into(), "Dockerfile".into()))
        );
        assert_eq!(
            resolve("/", "docker/Dockerfile"),
            Ok(("".into(), "docker/Dockerfile".into()))
        );
        assert_eq!(
            resolve("", "docker/web/Dockerfile"),
            Ok(("docker/web".into(), "docker/web/Dockerfile".into()))
        );
        assert_eq!(
            resolve("", "Dockerfile"),
            Ok(("".into(), "Dockerfile".into()))
        );
        assert_eq!(
            resolve("app", "Dockerfile"),
            Ok(("app".into(), "app/Dockerfile".into()))
        );
        assert_eq!(
            resolve("/app/", "../Dockerfile"),
            Ok(("app".into(), "Dockerfile".into()))
        );
    }

    #[test]
    fn escapes_are_refused() {
        assert!(
            resolve("../..", "Dockerfile")
                .expect_err("escape")
                .contains("leaves the repository checkout")
        );
        assert!(resolve("/", "../Dockerfile").is_err());
        assert!(resolve("/", "/etc/passwd").is_err());
        assert!(resolve("a/../../b", "Dockerfile").is_err());
        assert!(resolve("/", "").is_err());
    }
}
