//! A client for the Docker Registry HTTP API v2, to check what a build really pushed.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::Client;

/// The manifest types a registry may hold for an image: single-platform manifests first, then
/// indexes, so that whatever was pushed is answered with its own digest.
const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.index.v1+json";

/// One registry, `host:port`, optionally with Basic credentials (the rig's authenticated
/// registry uses htpasswd, which takes Basic authentication directly).
#[derive(Debug, Clone)]
pub struct Registry {
    host: String,
    auth: Option<(String, String)>,
    http: Client,
}

impl Registry {
    pub fn new(host: &str, auth: Option<(String, String)>) -> Self {
        let http = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build an HTTP client");
        Self {
            host: host.to_owned(),
            auth,
            http,
        }
    }

    /// The `Docker-Content-Digest` of `<repository>:<tag>`, or `None` when the registry has no
    /// such manifest. Any other answer (such as a refused login) fails the test.
    pub fn manifest_digest(&self, repository: &str, tag: &str) -> Option<String> {
        let url = format!("http://{}/v2/{repository}/manifests/{tag}", self.host);
        let mut request = self
            .http
            .head(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_TYPES);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("HEAD {url} failed: {e}"));
        match response.status() {
            StatusCode::NOT_FOUND => None,
            StatusCode::OK => {
                let digest = response
                    .headers()
                    .get("docker-content-digest")
                    .unwrap_or_else(|| panic!("HEAD {url} has no Docker-Content-Digest header"))
                    .to_str()
                    .expect("the digest header is ASCII");
                Some(digest.to_owned())
            }
            status => panic!("HEAD {url} answered {status}"),
        }
    }
}

/// [`Registry::manifest_digest`] in one call.
pub fn manifest_digest(
    registry: &str,
    repository: &str,
    tag: &str,
    auth: Option<(&str, &str)>,
) -> Option<String> {
    let auth = auth.map(|(user, password)| (user.to_owned(), password.to_owned()));
    Registry::new(registry, auth).manifest_digest(repository, tag)
}
