//! The test rig: the Docker engine, registries, database and base image that `scripts/test`
//! brings up, as described by the environment it exports.

/// What every end-to-end test is told about the rig. Loading it fails the test (never skips
/// it) when a variable is missing, because a suite that passes without running is worse than
/// one that fails.
#[derive(Debug, Clone)]
pub struct Rig {
    /// The Docker Engine address, as the docker CLI and Slipway read it.
    pub docker_host: String,
    /// An anonymous registry, `127.0.0.1:PORT`.
    pub registry: String,
    /// A registry with htpasswd authentication, `127.0.0.1:PORT`.
    pub auth_registry: String,
    pub auth_registry_user: String,
    pub auth_registry_password: String,
    /// A PostgreSQL URL whose user may create databases.
    pub postgres_url: String,
    /// A local image that test Dockerfiles start `FROM`; nothing can be pulled from outside.
    pub base_image: String,
}

impl Rig {
    /// Reads the rig's environment, failing the test with instructions when it is incomplete.
    pub fn load() -> Self {
        let rig = Self {
            docker_host: required("DOCKER_HOST"),
            registry: required("SLIPWAY_TEST_REGISTRY"),
            auth_registry: required("SLIPWAY_TEST_AUTH_REGISTRY"),
            auth_registry_user: required("SLIPWAY_TEST_AUTH_REGISTRY_USER"),
            auth_registry_password: required("SLIPWAY_TEST_AUTH_REGISTRY_PASSWORD"),
            postgres_url: required("SLIPWAY_TEST_POSTGRES_URL"),
            base_image: required("SLIPWAY_TEST_BASE_IMAGE"),
        };
        // The tests only ever talk to this machine; refuse a rig that points anywhere else.
        for (what, host) in [
            ("SLIPWAY_TEST_REGISTRY", &rig.registry),
            ("SLIPWAY_TEST_AUTH_REGISTRY", &rig.auth_registry),
        ] {
            assert!(
                is_loopback_host(host),
                "{what}={host} is not a loopback address; the tests only use 127.0.0.1"
            );
        }
        assert!(
            rig.postgres_url.contains("@127.") || rig.postgres_url.contains("@localhost"),
            "SLIPWAY_TEST_POSTGRES_URL does not point at a loopback address; the tests only use 127.0.0.1"
        );
        rig
    }

    /// The credentials of the authenticated registry, as [`crate::Registry`] takes them.
    pub fn auth_registry_credentials(&self) -> (String, String) {
        (
            self.auth_registry_user.clone(),
            self.auth_registry_password.clone(),
        )
    }
}

fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "the environment variable {name} is not set: run scripts/test (it starts the rig)"
        ),
    }
}

fn is_loopback_host(host: &str) -> bool {
    host.starts_with("127.") || host.starts_with("localhost:") || host.starts_with("[::1]:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_registries_are_accepted() {
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("localhost:5001"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("registry.example.com:5000"));
        assert!(!is_loopback_host("10.0.0.1:5000"));
    }
}
