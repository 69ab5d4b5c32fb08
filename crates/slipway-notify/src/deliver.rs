//! Delivering notifications: the dispatcher turns each status a build took into the commit
//! statuses and webhook requests it calls for; the sender delivers them, retrying with backoff,
//! and records every attempt. Both claim their work from the store with leases, so any number of
//! processes may run them, and neither ever touches a build: a forge that is down delays only
//! its own notifications.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use slipway_core::{BuildStatus, Provider, Secret};
use slipway_store::{
    AfterAttempt, BuildRecord, HookRecord, ManagedBy, NewNotification, NotificationAttempt,
    NotificationKind, NotificationRecord, RepositoryRecord, Store, StoreError, now_millis,
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::HttpRequestSpec;
use crate::payload::{BuildInfo, Delivery, HookEvent, build_event_body, image_pushed_body};
use crate::ssrf::{TargetPolicy, TargetUrl, check_resolved, check_target_url};
use crate::status::{StatusState, StatusTarget, StatusUpdate, context_for_rule, status_request};

/// How long one request may take before it counts as failed, unless configured
/// (`notification_timeout_seconds`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long resolving a target's name may take.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts before a notification is given up, unless configured
/// (`notification_max_attempts`).
pub const DEFAULT_MAX_ATTEMPTS: i64 = 8;
/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// How much of an answer is kept in the history, and so read at all.
pub const EXCERPT_BYTES: usize = 1024;
/// Requests in flight at once per process.
const CONCURRENCY: usize = 8;
/// How long a sender waits before it tries again a status whose slot another sender holds.
const SLOT_BUSY_RETRY_MS: i64 = 1_000;

/// What the notifier needs from the configuration.
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    /// The externally visible base URL, for links to build pages.
    pub public_url: String,
    /// Which private addresses webhooks and status APIs may reach.
    pub policy: TargetPolicy,
    /// Commit-status tokens of configuration-managed repositories, by name.
    pub status_tokens: HashMap<String, Secret>,
    /// The wait before the second attempt; each later wait is six times the one before.
    pub first_retry_delay: Duration,
    /// Attempts before a notification is given up (`failed`).
    pub max_attempts: i64,
    /// How long one request may take before the attempt counts as failed.
    pub request_timeout: Duration,
}

impl NotifierSettings {
    /// The documented defaults, for `public_url`, with no private targets and no tokens.
    pub fn new(public_url: &str) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            policy: TargetPolicy::public_only(),
            status_tokens: HashMap::new(),
            first_retry_delay: Duration::from_secs(5),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// How long a sender holds a notification (and a status's slot): renewed right before each
    /// send, and longer than the name lookup and the request together can take, so a lease only
    /// passes to another sender once this one's request is over, one way or another.
    fn send_lease_ms(&self) -> i64 {
        let longest = self.request_timeout + DNS_TIMEOUT + Duration::from_secs(30);
        i64::try_from(longest.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The wait before attempt `attempts + 1`, after `attempts` failed ones.
pub fn retry_delay(first: Duration, attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 8)).unwrap_or(8);
    first
        .saturating_mul(6u32.saturating_pow(exponent))
        .min(MAX_DELAY)
}

/// The forge API a repository's statuses go to when none is configured: the public service's,
/// or, for self-hosted forges, the clone URL's host and port (https unless the clone URL is
/// http), read by the same parser the sender uses. `None` when the clone URL has no host.
pub fn default_status_api_url(provider: Provider, git_url: &str) -> Option<String> {
    match provider {
        Provider::Github => return Some("https://api.github.com".to_owned()),
        Provider::Bitbucket => return Some("https://api.bitbucket.org".to_owned()),
        Provider::Gitlab | Provider::Gitea | Provider::BitbucketServer => {}
    }
    let parsed = url::Url::parse(git_url).ok()?;
    let host = match parsed.host()? {
        url::Host::Domain(domain) => domain.to_ascii_lowercase(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => format!("[{ip}]"),
    };
    if provider == Provider::Gitlab && host.trim_end_matches('.') == "gitlab.com" {
        return Some("https://gitlab.com".to_owned());
    }
    let scheme = if parsed.scheme() == "http" {
        "http"
    } else {
        "https"
    };
    Some(match parsed.port() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// The addresses a checked target's connection is pinned to: its domain name and every
/// address it resolved to, all checked, for the client to try in turn.
type Pinned = Option<(String, Vec<std::net::SocketAddr>)>;

/// A notification's request, or why there is none.
enum Prepared {
    /// Send this, connecting only to the pinned addresses when there are some.
    Ready(HttpRequestSpec, Pinned),
    /// It cannot be sent and retrying will not change that (a refused target, no token).
    Refused(String),
    /// It cannot be sent now (a name that does not resolve); try again later.
    NotNow(String),
}

/// Runs the dispatcher and the sender until `shutdown`.
#[derive(Debug, Clone)]
pub struct Notifier {
    store: Store,
    owner: String,
    settings: Arc<NotifierSettings>,
    wake: Arc<Notify>,
}

/// A build's state when the transition was dispatched, kept with the notification so that a
/// delivery describes the moment it announces, however late it is sent.
fn snapshot(build: &BuildRecord, status: &str, tag: Option<&str>) -> Value {
    json!({
        "rule_index": build.rule_index,
        "status": status,
        "error": build.error,
        "digest": build.digest,
        "tags": build.tags,
        "commit": build.commit,
        "ref": build.git_ref,
        "image": build.image,
        "trigger": build.trigger,
        "queued_at": build.queued_at,
        "started_at": build.started_at,
        "finished_at": build.finished_at,
        "tag": tag,
    })
}

fn time_of(millis: Option<i64>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis?) * 1_000_000).ok()
}

/// Transitions claimed per dispatch pass.
const DISPATCH_BATCH: usize = 100;

/// How long the notifier gathers transitions after a pass that found less than a batch: what
/// a notification waits at most, beyond its build's change, before it is dispatched.
const GATHER: Duration = Duration::from_millis(50);

impl Notifier {
    pub fn new(store: Store, owner: String, settings: NotifierSettings, wake: Arc<Notify>) -> Self {
        Self {
            store,
            owner,
            settings: Arc::new(settings),
            wake,
        }
    }

    /// Dispatches and sends until `shutdown`. Between passes that found work but less than a
    /// full batch of transitions, it waits [`GATHER`], so that a stream of builds is dispatched
    /// many transitions per pass (two transactions each) rather than one per build; the
    /// ingest benchmark showed one-at-a-time dispatch taking the database's write lock
    /// as often as the deliveries themselves.
    pub async fn run(self, shutdown: CancellationToken) {
        info!(owner = %self.owner, "notifier started");
        while !shutdown.is_cancelled() {
            let dispatched = match self.dispatch_once().await {
                Ok(count) => count,
                Err(error) => {
                    warn!(%error, "dispatching build notifications failed; trying again");
                    0
                }
            };
            let sent = match self.send_once().await {
                Ok(count) => count,
                Err(error) => {
                    warn!(%error, "sending notifications failed; trying again");
                    0
                }
            };
            if dispatched == 0 && sent == 0 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = self.wake.notified() => {}
                    () = shutdown.cancelled() => {}
                }
            } else if dispatched < DISPATCH_BATCH && sent == 0 {
                tokio::select! {
                    () = tokio::time::sleep(GATHER) => {}
                    () = shutdown.cancelled() => {}
                }
            }
        }
    }

    /// Turns claimed transitions into notifications; returns how many transitions it handled.
    pub async fn dispatch_once(&self) -> Result<usize, StoreError> {
        let transitions = self
            .store
            .claim_transitions(&self.owner, 30_000, DISPATCH_BATCH as i64)
            .await?;
        if transitions.is_empty() {
            return Ok(0);
        }
        let mut notifications = Vec::new();
        // One read of the batch's builds, and each repository and its hooks read once per
        // pass: a pass costs a few statements, not a few per transition.
        let ids: Vec<Uuid> = transitions.iter().map(|t| t.build_id).collect();
        let builds: HashMap<Uuid, BuildRecord> = self
            .store
            .builds_for_dispatch(&ids)
            .await?
            .into_iter()
            .map(|build| (build.id, build))
            .collect();
        let mut repositories: HashMap<String, Option<RepositoryRecord>> = HashMap::new();
        let mut hooks_of: HashMap<Uuid, Vec<HookRecord>> = HashMap::new();
        for transition in &transitions {
            let Some(build) = builds.get(&transition.build_id) else {
                continue;
            };
            let name = build.repository.to_string();
            if !repositories.contains_key(&name) {
                let found = self.store.repository_by_name(&name).await?;
                repositories.insert(name.clone(), found);
            }
            let Some(Some(repository)) = repositories.get(&name) else {
                continue;
            };
            let Ok(status) = transition.status.parse::<BuildStatus>() else {
                continue;
            };
            let base = |kind, hook_id, event: &str, payload: Value| NewNotification {
                build_id: build.id,
                repository_id: repository.id,
                kind,
                hook_id,
                event: event.to_owned(),
                payload_json: payload.to_string(),
                transition_seq: transition.seq,
                status_key: None,
            };
            if repository.status.report_status {
                // A status notification's event is the build status it reports. Its context is
                // decided now, from the rule, so every status of the build (and a late retry
                // of one) names the same context; and whether a failure was the
                // infrastructure's is read now, while it is the build's last attempt.
                let rule_index = usize::try_from(build.rule_index).unwrap_or(usize::MAX);
                let context = context_for_rule(&repository.rules, rule_index);
                let infrastructure = status == BuildStatus::Failed
                    && self.store.failed_for_infrastructure(build.id).await?;
                let mut payload = snapshot(build, &transition.status, None);
                payload["context"] = json!(context);
                payload["infrastructure_failure"] = json!(infrastructure);
                let mut notification =
                    base(NotificationKind::Status, None, &transition.status, payload);
                notification.status_key = Some(status_key(repository.id, &build.commit, &context));
                notifications.push(notification);
            }
            let hooks = match hooks_of.entry(repository.id) {
                std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(self.store.hooks_for_repository(repository.id).await?)
                }
            };
            if hooks.is_empty() {
                continue;
            }
            let pushed = if status == BuildStatus::Succeeded {
                self.store.pushed_tags_of(build.id).await?
            } else {
                Vec::new()
            };
            for hook in hooks {
                if let Some(event) = HookEvent::for_build_status(status)
                    && hook.events.iter().any(|e| e == event.as_str())
                {
                    notifications.push(base(
                        NotificationKind::Webhook,
                        Some(hook.id),
                        event.as_str(),
                        snapshot(build, &transition.status, None),
                    ));
                }
                if hook
                    .events
                    .iter()
                    .any(|e| e == HookEvent::ImagePushed.as_str())
                {
                    for tag in &pushed {
                        notifications.push(base(
                            NotificationKind::Webhook,
                            Some(hook.id),
                            HookEvent::ImagePushed.as_str(),
                            snapshot(build, &transition.status, Some(tag)),
                        ));
                    }
                }
            }
        }
        let seqs: Vec<i64> = transitions.iter().map(|t| t.seq).collect();
        self.store
            .dispatch_transitions(&self.owner, &seqs, &notifications)
            .await?;
        Ok(transitions.len())
    }

    /// Delivers the notifications that are due; returns how many it attempted (a status whose
    /// slot another sender holds is put back for a moment, and not counted).
    pub async fn send_once(&self) -> Result<usize, StoreError> {
        let due = self
            .store
            .claim_notifications(&self.owner, self.settings.send_lease_ms(), 32)
            .await?;
        // Statuses of one slot (commit and context) go out in order, and so do the webhook
        // requests of one build; different slots, builds and hooks in parallel.
        let mut groups: HashMap<String, Vec<NotificationRecord>> = HashMap::new();
        for notification in due {
            let group = match (&notification.kind, &notification.status_key) {
                (NotificationKind::Status, Some(key)) => format!("status:{key}"),
                (NotificationKind::Status, None) => format!("status:{}", notification.build_id),
                (NotificationKind::Webhook, _) => format!("webhook:{}", notification.build_id),
            };
            groups.entry(group).or_default().push(notification);
        }
        let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut tasks = Vec::new();
        for group in groups.into_values() {
            let notifier = self.clone();
            let semaphore = semaphore.clone();
            tasks.push(tokio::spawn(async move {
                let Ok(_place) = semaphore.acquire_owned().await else {
                    return 0;
                };
                let mut attempted = 0;
                for notification in group {
                    match notifier.deliver(&notification).await {
                        Ok(true) => attempted += 1,
                        Ok(false) => {}
                        Err(error) => {
                            warn!(%error, notification = %notification.id, "recording a notification attempt failed");
                        }
                    }
                }
                attempted
            }));
        }
        let mut count = 0;
        for task in tasks {
            count += task.await.unwrap_or(0);
        }
        Ok(count)
    }

    /// Delivers one claimed notification; false when it was left for later or to another
    /// sender.
    async fn deliver(&self, notification: &NotificationRecord) -> Result<bool, StoreError> {
        if notification.kind == NotificationKind::Webhook {
            return self.attempt(notification).await;
        }
        // A status is checked against newer ones and sent while holding its slot's lease, so
        // that no other process sends a status of the same slot meanwhile: checking first and
        // sending later without it would let an older status still in flight elsewhere land
        // after a newer one.
        let slot = notification
            .status_key
            .clone()
            .unwrap_or_else(|| notification.build_id.to_string());
        if !self
            .store
            .acquire_status_lease(&slot, &self.owner, self.settings.send_lease_ms())
            .await?
        {
            self.store
                .postpone_notification(
                    notification.id,
                    &self.owner,
                    now_millis() + SLOT_BUSY_RETRY_MS,
                )
                .await?;
            return Ok(false);
        }
        let outcome = self.deliver_status(notification).await;
        // Released whatever happened, so the slot's next status need not wait for the lease to
        // expire; if releasing fails, it expires.
        let released = self.store.release_status_lease(&slot, &self.owner).await;
        let attempted = outcome?;
        released?;
        Ok(attempted)
    }

    /// A status, with its slot's lease held: superseded if a newer one of the slot is queued or
    /// sent (a redelivery too: it must not put an old state back), otherwise attempted.
    async fn deliver_status(&self, notification: &NotificationRecord) -> Result<bool, StoreError> {
        if self.store.newer_status_exists(notification).await? {
            self.store
                .supersede_notification(notification.id, &self.owner)
                .await?;
            return Ok(true);
        }
        self.attempt(notification).await
    }

    /// Makes one attempt at a notification and records it with what comes next.
    async fn attempt(&self, notification: &NotificationRecord) -> Result<bool, StoreError> {
        // Sends of one group go one after another, so a notification may wait behind slow ones:
        // the lease is renewed right before its own send, and a notification whose lease passed
        // to another sender is left to it rather than sent twice.
        if !self
            .store
            .renew_notification_lease(notification.id, &self.owner, self.settings.send_lease_ms())
            .await?
        {
            return Ok(false);
        }
        let prepared = match notification.kind {
            NotificationKind::Status => self.status_request(notification).await?,
            NotificationKind::Webhook => self.webhook_request(notification).await?,
        };
        let attempt_number = notification.attempts + 1;
        let at = now_millis();
        let unsent = |reason: String| NotificationAttempt {
            attempt: attempt_number,
            at,
            status_code: None,
            duration_ms: 0,
            error: Some(reason),
            response_excerpt: None,
        };
        let (attempt, delivered, final_refusal) = match prepared {
            Prepared::Refused(reason) => (unsent(reason), false, true),
            Prepared::NotNow(reason) => (unsent(reason), false, false),
            Prepared::Ready(request, pinned) => {
                let (attempt, delivered) = send(
                    &request,
                    pinned,
                    self.settings.request_timeout,
                    attempt_number,
                    at,
                )
                .await;
                (attempt, delivered, false)
            }
        };
        // A forge's API refusing a status (400, 401, 403, 404, 422) will refuse it again: a
        // bad token or repository path needs a person. A webhook receiver gets every retry: a
        // receiver's 4xx is as often a deployment in progress as a final answer.
        let refused_for_good = notification.kind == NotificationKind::Status
            && attempt
                .status_code
                .is_some_and(|code| (400..500).contains(&code) && code != 408 && code != 429);
        let after = if delivered {
            AfterAttempt::Delivered
        } else if final_refusal || refused_for_good || attempt_number >= self.settings.max_attempts
        {
            AfterAttempt::Failed
        } else {
            let delay = retry_delay(self.settings.first_retry_delay, attempt_number);
            AfterAttempt::RetryAt(
                now_millis() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
            )
        };
        match after {
            AfterAttempt::Delivered => {}
            _ => warn!(
                notification = %notification.id,
                kind = notification.kind.as_str(),
                event = %notification.event,
                attempt = attempt_number,
                status = ?attempt.status_code,
                error = attempt.error.as_deref().unwrap_or(""),
                "a notification was not delivered"
            ),
        }
        self.store
            .record_notification_attempt(notification.id, &self.owner, &attempt, after)
            .await?;
        Ok(true)
    }

    /// The commit-status request of a notification, or why it cannot be made.
    async fn status_request(
        &self,
        notification: &NotificationRecord,
    ) -> Result<Prepared, StoreError> {
        let Some(repository) = self.store.repository(notification.repository_id).await? else {
            return Ok(Prepared::Refused(
                "the repository no longer exists".to_owned(),
            ));
        };
        let Some(build) = self.store.build(notification.build_id).await? else {
            return Ok(Prepared::Refused("the build no longer exists".to_owned()));
        };
        let token = match repository.managed_by {
            ManagedBy::Config => self
                .settings
                .status_tokens
                .get(&repository.name.to_string())
                .cloned(),
            ManagedBy::Api => self
                .store
                .status_settings(repository.id)
                .await?
                .and_then(|settings| settings.stored_token),
        };
        let Some(token) = token else {
            return Ok(Prepared::Refused(
                "the repository has no status token configured".to_owned(),
            ));
        };
        let Some(api_url) = repository
            .status
            .api_url
            .clone()
            .or_else(|| default_status_api_url(repository.provider, &repository.git_url))
        else {
            return Ok(Prepared::Refused(
                "the repository has no status API URL".to_owned(),
            ));
        };
        let forge_repository = repository
            .status
            .repository
            .clone()
            .or_else(|| repository.forge_repository.clone())
            .unwrap_or_else(|| repository.name.to_string());
        let target = StatusTarget {
            provider: repository.provider,
            api_url,
            repository: forge_repository,
            token,
        };
        if let Err(reason) = target.validate() {
            return Ok(Prepared::Refused(reason));
        }
        let payload: Value =
            serde_json::from_str(&notification.payload_json).unwrap_or(Value::Null);
        let build_status = payload["status"]
            .as_str()
            .and_then(|s| s.parse::<BuildStatus>().ok())
            .unwrap_or(BuildStatus::Queued);
        let state = StatusState::for_build(
            build_status,
            payload["infrastructure_failure"].as_bool().unwrap_or(false),
        );
        let error = payload["error"].as_str().filter(|e| !e.is_empty());
        let description = match (build_status, error) {
            (BuildStatus::Skipped, reason) => {
                format!("skipped: {}", reason.unwrap_or("nothing to build"))
            }
            (BuildStatus::Failed | BuildStatus::Cancelled, Some(error)) => error.to_owned(),
            _ => state.default_description().to_owned(),
        };
        // The context was decided at dispatch; a status stored before contexts were kept gets
        // its rule's context from the rules as they are now.
        let context = payload["context"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let rule_index = usize::try_from(build.rule_index).unwrap_or(usize::MAX);
                context_for_rule(&repository.rules, rule_index)
            });
        let update = StatusUpdate {
            sha: build.commit.clone(),
            state,
            context,
            git_ref: Some(build.git_ref.clone()),
            target_url: format!("{}/builds/{}", self.settings.public_url, build.id),
            description,
        };
        // A forge API is held to the same address rules as a webhook receiver: a status URL
        // must not become a way to reach (and, through the kept answers, read) internal hosts.
        let request = status_request(&target, &update);
        match self.checked_target(&request.url).await {
            Ok((_, pinned)) => Ok(Prepared::Ready(request, pinned)),
            Err(prepared) => Ok(prepared),
        }
    }

    /// Checks a target URL and every address its host resolves to now, and returns the
    /// addresses to pin the connection to; the error is the notification's outcome.
    async fn checked_target(&self, url: &str) -> Result<(TargetUrl, Pinned), Prepared> {
        let policy = &self.settings.policy;
        let target = check_target_url(url, policy)
            .map_err(|reason| Prepared::Refused(format!("target refused: {reason}")))?;
        let Some(domain) = target.domain().map(str::to_owned) else {
            return Ok((target, None));
        };
        let port = target.port();
        let lookup = {
            let name = domain.clone();
            tokio::time::timeout(DNS_TIMEOUT, async move {
                tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map(|found| found.collect::<Vec<_>>())
            })
            .await
        };
        let addresses: Vec<IpAddr> = match lookup {
            Ok(Ok(found)) => found.iter().map(|address| address.ip()).collect(),
            Ok(Err(error)) => {
                return Err(Prepared::NotNow(format!(
                    "{domain} did not resolve: {error}"
                )));
            }
            Err(_) => {
                return Err(Prepared::NotNow(format!(
                    "{domain} did not resolve within {} s",
                    DNS_TIMEOUT.as_secs()
                )));
            }
        };
        let checked = check_resolved(&target, &addresses, policy)
            .map_err(|reason| Prepared::Refused(format!("target refused: {reason}")))?;
        Ok((target, Some((domain, checked))))
    }

    /// The signed webhook request of a notification, with the checked address to connect to.
    async fn webhook_request(
        &self,
        notification: &NotificationRecord,
    ) -> Result<Prepared, StoreError> {
        let Some(hook_id) = notification.hook_id else {
            return Ok(Prepared::Refused(
                "the notification names no webhook".to_owned(),
            ));
        };
        let (Some(hook), Some(secret)) = (
            self.store.hook(hook_id).await?,
            self.store.hook_secret(hook_id).await?,
        ) else {
            return Ok(Prepared::Refused("the webhook was removed".to_owned()));
        };
        let Some(repository) = self.store.repository(notification.repository_id).await? else {
            return Ok(Prepared::Refused(
                "the repository no longer exists".to_owned(),
            ));
        };
        // The target is checked again now: the rules or the name's addresses may have changed.
        let (target, pinned) = match self.checked_target(&hook.url).await {
            Ok(checked) => checked,
            Err(prepared) => return Ok(prepared),
        };
        let payload: Value =
            serde_json::from_str(&notification.payload_json).unwrap_or(Value::Null);
        let Ok(event) = notification.event.parse::<HookEvent>() else {
            return Ok(Prepared::Refused(format!(
                "unknown event {:?}",
                notification.event
            )));
        };
        let Ok(build_id) = notification.build_id.to_string().parse() else {
            return Ok(Prepared::Refused("the build id is not valid".to_owned()));
        };
        let info = BuildInfo {
            id: build_id,
            repository: repository.name.to_string(),
            git_ref: payload["ref"].as_str().unwrap_or_default().to_owned(),
            commit: payload["commit"].as_str().unwrap_or_default().to_owned(),
            image: payload["image"].as_str().unwrap_or_default().to_owned(),
            tags: payload["tags"]
                .as_array()
                .map(|tags| {
                    tags.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            status: payload["status"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(BuildStatus::Queued),
            error: payload["error"].as_str().map(str::to_owned),
            digest: payload["digest"].as_str().map(str::to_owned),
            trigger: payload["trigger"].as_str().unwrap_or_default().to_owned(),
            queued_at: time_of(payload["queued_at"].as_i64())
                .unwrap_or_else(OffsetDateTime::now_utc),
            started_at: time_of(payload["started_at"].as_i64()),
            finished_at: time_of(payload["finished_at"].as_i64()),
            url: format!(
                "{}/builds/{}",
                self.settings.public_url, notification.build_id
            ),
        };
        // The delivery id stays the same across retries (receivers can drop duplicates); the
        // timestamp is when this attempt is signed (receivers can drop replays).
        let delivery = Delivery {
            event,
            id: notification.redelivery_of.unwrap_or(notification.id),
            timestamp: OffsetDateTime::now_utc(),
        };
        let body = match (event, payload["tag"].as_str()) {
            (HookEvent::ImagePushed, Some(tag)) => {
                let pushed_at = info.finished_at.unwrap_or(delivery.timestamp);
                image_pushed_body(&delivery, &info, tag, pushed_at)
            }
            _ => build_event_body(&delivery, &info),
        };
        let request = crate::payload::webhook_request(target.as_str(), &secret, &delivery, body);
        Ok(Prepared::Ready(request, pinned))
    }
}

/// Sends one request (connecting only to `pinned` when given: the addresses that were checked,
/// tried in turn) and describes the attempt; `true` when the answer was 2xx.
async fn send(
    request: &HttpRequestSpec,
    pinned: Pinned,
    timeout: Duration,
    attempt: i64,
    at: i64,
) -> (NotificationAttempt, bool) {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        // A redirect would lead to an address nobody checked, and so would a proxy (which
        // resolves the name itself).
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some((domain, addresses)) = &pinned {
        // The client resolves the name to these addresses only, and its connector tries them
        // one after another: a checked address that does not answer does not fail a target
        // whose other checked addresses do.
        builder = builder.resolve_to_addrs(domain, addresses);
    }
    let started = Instant::now();
    let outcome = async {
        let client = builder.build().map_err(|e| e.to_string())?;
        let method =
            reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|e| e.to_string())?;
        let mut call = client
            .request(method, &request.url)
            .body(request.body.clone());
        for (name, value) in &request.headers {
            call = call.header(name, value);
        }
        let mut response = call.send().await.map_err(|e| describe(&e, timeout))?;
        let status = response.status();
        // Only the start of the answer is kept, and reading stops once it is there: a receiver
        // that streams without end costs no more than the one chunk the client had buffered.
        let mut start = Vec::with_capacity(EXCERPT_BYTES);
        while start.len() < EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = EXCERPT_BYTES - start.len();
                    start.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok::<_, String>((status, excerpt(&start)))
    }
    .await;
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match outcome {
        Ok((status, excerpt)) => {
            let delivered = status.is_success();
            (
                NotificationAttempt {
                    attempt,
                    at,
                    status_code: Some(i64::from(status.as_u16())),
                    duration_ms,
                    error: (!delivered).then(|| format!("answered {status}")),
                    response_excerpt: Some(excerpt),
                },
                delivered,
            )
        }
        Err(error) => (
            NotificationAttempt {
                attempt,
                at,
                status_code: None,
                duration_ms,
                error: Some(error),
                response_excerpt: None,
            },
            false,
        ),
    }
}

/// At most [`EXCERPT_BYTES`] of an answer as text: invalid UTF-8 is replaced, and a character
/// the cut went through is dropped rather than shown half.
fn excerpt(start: &[u8]) -> String {
    let start = &start[..start.len().min(EXCERPT_BYTES)];
    match std::str::from_utf8(start) {
        Ok(text) => text.to_owned(),
        Err(error) if error.error_len().is_none() => {
            String::from_utf8_lossy(&start[..error.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(start).into_owned(),
    }
}

/// The slot a commit status takes on the forge: the repository, the commit and the context.
/// A forge keeps one status per commit and context, so these are what must arrive in order.
fn status_key(repository_id: Uuid, commit: &str, context: &str) -> String {
    format!("{repository_id}:{commit}:{context}")
}

/// A request failure in words, without the URL (which may carry a token in its query).
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!("no answer within {} s", timeout.as_secs())
    } else if error.is_connect() {
        format!("could not connect: {}", without_url(error))
    } else {
        without_url(error)
    }
}

/// An error's words, and its sources', without the URL it names.
fn without_url(error: &reqwest::Error) -> String {
    let mut text = String::from(if error.is_request() {
        "the request failed"
    } else {
        "the exchange failed"
    });
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_stop_growing_at_an_hour() {
        let first = Duration::from_secs(5);
        assert_eq!(retry_delay(first, 1), Duration::from_secs(5));
        assert_eq!(retry_delay(first, 2), Duration::from_secs(30));
        assert_eq!(retry_delay(first, 3), Duration::from_secs(180));
        assert_eq!(retry_delay(first, 7), MAX_DELAY);
    }

    #[test]
    fn excerpts_are_bounded_and_never_cut_a_character() {
        assert_eq!(excerpt(b"ok"), "ok");
        let long = "é".repeat(EXCERPT_BYTES);
        let cut = excerpt(&long.as_bytes()[..EXCERPT_BYTES + 1]);
        assert_eq!(cut, "é".repeat(EXCERPT_BYTES / 2));
        let odd = excerpt(&[b'a', 0xff, b'b']);
        assert_eq!(odd, "a\u{fffd}b");
        let mut half = "x".repeat(EXCERPT_BYTES - 1).into_bytes();
        half.push(0xc3);
        assert_eq!(excerpt(&half), "x".repeat(EXCERPT_BYTES - 1));
    }

    #[test]
    fn status_slots_are_per_repository_commit_and_context() {
        let repository = Uuid::nil();
        assert_ne!(
            status_key(repository, "a", "slipway/latest"),
            status_key(repository, "b", "slipway/latest")
        );
        assert_ne!(
            status_key(repository, "a", "slipway/latest"),
            status_key(repository, "a", "slipway/rule-2")
        );
    }

    #[test]
    fn the_send_lease_outlasts_a_request() {
        let mut settings = NotifierSettings::new("https://slipway.example.com/");
        assert_eq!(settings.public_url, "https://slipway.example.com");
        settings.request_timeout = Duration::from_secs(120);
        let lease = Duration::from_millis(u64::try_from(settings.send_lease_ms()).unwrap_or(0));
        assert!(lease > settings.request_timeout + DNS_TIMEOUT, "{lease:?}");
    }

    #[test]
    fn default_api_urls_follow_the_forge() {
        assert_eq!(
            default_status_api_url(Provider::Github, "https://github.com/a/b.git").as_deref(),
            Some("https://api.github.com")
        );
        assert_eq!(
            default_status_api_url(Provider::Gitea, "https://bot@git.example:3000/a/b.git")
                .as_deref(),
            Some("https://git.example:3000")
        );
        assert_eq!(
            default_status_api_url(Provider::Gitlab, "ssh://git@gitlab.example/a/b.git").as_deref(),
            Some("https://gitlab.example")
        );
        assert_eq!(
            default_status_api_url(Provider::Gitlab, "https://GitLab.com/a/b.git").as_deref(),
            Some("https://gitlab.com")
        );
        assert_eq!(
            default_status_api_url(
                Provider::BitbucketServer,
                "http://10.0.0.5:7990/scm/p/r.git"
            )
            .as_deref(),
            Some("http://10.0.0.5:7990")
        );
        // The host is the one reqwest would connect to, never a string split's guess.
        assert_eq!(
            default_status_api_url(Provider::Gitea, "https://evil.example\\@git.example/a.git")
                .as_deref(),
            Some("https://evil.example")
        );
        assert_eq!(default_status_api_url(Provider::Gitea, "not a url"), None);
    }
}
