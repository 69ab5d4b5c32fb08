//! The HTTP client behind the API's commands (`repo`, `build`, `trigger`, and `user` and `token`
//! when they go through the API): the one place that
//! knows the server's address, sends the token, and turns the API's error shape into messages
//! a person can act on.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;
use slipway_core::Secret;

/// How long a request other than a live log may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one Slipway server, acting with one API token (or none).
#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: Option<Secret>,
}

impl ApiClient {
    /// A client of the server at `server` (`http://` or `https://`, with or without a path).
    pub fn new(server: &str, token: Option<Secret>) -> Result<Self> {
        let base = parse_server(server)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("slipway-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self { http, base, token })
    }

    /// The server's base URL, for messages.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of `segments` under the server's base, each segment percent-encoded, so that a
    /// name from the command line can never reach another endpoint.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request with the token, marked sensitive so that it is never shown in debug output.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => match HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request.header(AUTHORIZATION, value)
                }
                // A token with bytes a header cannot hold is sent as none; the server's 401
                // then says what to do.
                Err(_) => request,
            },
            None => request,
        }
    }

    /// Sends a request and returns the answer if it succeeded; otherwise the API's error
    /// message, with advice for the statuses a person can fix.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Err(anyhow!(describe_failure(
            status,
            &body,
            self.token.is_some()
        )))
    }

    /// Explains a request that got no answer; the error's causes say whether the connection
    /// was refused, reset or timed out.
    pub fn unreachable(&self, error: &reqwest::Error) -> anyhow::Error {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        anyhow!(
            "cannot reach the Slipway server at {} ({text}); pass its address with --server or SLIPWAY_SERVER",
            self.server()
        )
    }

    /// `GET` of a JSON answer.
    pub async fn get_json(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value> {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let request = self.request(Method::GET, url).timeout(REQUEST_TIMEOUT);
        json_of(self.send(request).await?).await
    }

    /// `POST` with an optional JSON body; an answer without a body is `Value::Null`.
    pub async fn post_json(&self, segments: &[&str], body: Option<&Value>) -> Result<Value> {
        let mut request = self
            .request(Method::POST, self.url(segments))
            .timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        json_of(self.send(request).await?).await
    }

    /// `PATCH` with a JSON body.
    pub async fn patch_json(&self, segments: &[&str], body: &Value) -> Result<Value> {
        let request = self
            .request(Method::PATCH, self.url(segments))
            .timeout(REQUEST_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        json_of(self.send(request).await?).await
    }

    /// `DELETE`; an answer without a body is `Value::Null`.
    pub async fn delete(&self, segments: &[&str]) -> Result<Value> {
        let request = self
            .request(Method::DELETE, self.url(segments))
            .timeout(REQUEST_TIMEOUT);
        json_of(self.send(request).await?).await
    }
}

/// A successful answer's body as JSON (`Null` when it has none).
async fn json_of(response: Response) -> Result<Value> {
    let status = response.status();
    let text = response
        .text()
        .await
        .context("the server's answer broke off")?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text)
        .with_context(|| format!("the server answered {status} with something that is not JSON"))
}

/// The server's base URL, checked: a client must not send a token to something that is not
/// an HTTP server.
fn parse_server(server: &str) -> Result<Url> {
    let server = server.trim();
    let url = Url::parse(server).with_context(|| {
        format!("the server address {server:?} is not a URL like https://builds.example.com")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "the server address {server:?} must start with http:// or https://, not {}://",
            url.scheme()
        );
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        bail!("the server address {server:?} names no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("the server address must not contain credentials; pass a token with --token");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("the server address {server:?} must not have a query or fragment");
    }
    Ok(url)
}

/// What to tell the user about an error answer: the API's own message, and for 401 and 403
/// what to change.
pub fn describe_failure(status: StatusCode, body: &str, had_token: bool) -> String {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
    let message = match message {
        Some(message) => message,
        None => {
            let text: String = body.trim().chars().take(200).collect();
            if text.is_empty() {
                format!("the server answered {status}")
            } else {
                format!("the server answered {status}: {text}")
            }
        }
    };
    match status {
        StatusCode::UNAUTHORIZED if had_token => format!(
            "{message} (HTTP 401): the server did not accept the API token; pass a valid one with --token or SLIPWAY_TOKEN"
        ),
        StatusCode::UNAUTHORIZED => format!(
            "{message} (HTTP 401): pass an API token with --token or the SLIPWAY_TOKEN environment variable (`slipway token create --user NAME` makes one)"
        ),
        StatusCode::FORBIDDEN => {
            format!("{message} (HTTP 403): the token's user or scope does not allow this")
        }
        _ => format!("{message} (HTTP {})", status.as_u16()),
    }
}

/// Splits `owner/name` into the two path segments the API's routes take.
pub fn repository_segments(repository: &str) -> Result<(&str, &str)> {
    match repository.split_once('/') {
        Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((owner, name))
        }
        _ => bail!("the repository {repository:?} must be written owner/name"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_http_without_credentials() {
        assert!(parse_server("http://127.0.0.1:8080").is_ok());
        assert!(parse_server("https://builds.example.com/slipway/").is_ok());
        assert!(parse_server("127.0.0.1:8080").is_err());
        assert!(parse_server("ftp://example.com").is_err());
        assert!(parse_server("https://me:pw@example.com").is_err());
        assert!(parse_server("https://example.com/?x=1").is_err());
    }

    #[test]
    fn paths_are_built_from_encoded_segments() {
        let client = ApiClient::new("https://example.com/slipway/", None).expect("client");
        let url = client.url(&["api", "repositories", "acme", "web", "triggers", "a b/../c"]);
        assert_eq!(
            url.as_str(),
            "https://example.com/slipway/api/repositories/acme/web/triggers/a%20b%2F..%2Fc"
        );
        let client = ApiClient::new("http://127.0.0.1:8080", None).expect("client");
        assert_eq!(
            client.url(&["api", "builds"]).as_str(),
            "http://127.0.0.1:8080/api/builds"
        );
    }

    #[test]
    fn failures_show_the_api_message_and_what_to_do() {
        let body = r#"{"error": {"code": "not_found", "message": "no build 42"}}"#;
        assert_eq!(
            describe_failure(StatusCode::NOT_FOUND, body, true),
            "no build 42 (HTTP 404)"
        );
        let unauthenticated = r#"{"error": {"code": "unauthenticated", "message": "sign in"}}"#;
        let without = describe_failure(StatusCode::UNAUTHORIZED, unauthenticated, false);
        assert!(without.contains("--token") && without.contains("SLIPWAY_TOKEN"));
        let with = describe_failure(StatusCode::UNAUTHORIZED, unauthenticated, true);
        assert!(with.contains("did not accept the API token"), "{with}");
        assert_eq!(
            describe_failure(StatusCode::BAD_GATEWAY, "", false),
            "the server answered 502 Bad Gateway (HTTP 502)"
        );
    }

    #[test]
    fn repositories_are_owner_and_name() {
        assert_eq!(
            repository_segments("acme/web").expect("valid"),
            ("acme", "web")
        );
        assert!(repository_segments("acme").is_err());
        assert!(repository_segments("acme/web/x").is_err());
        assert!(repository_segments("/web").is_err());
    }
}
