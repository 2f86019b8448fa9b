//! Cluster mode: several `ochered serve --cluster` nodes on one PostgreSQL.
//!
//! Each authority has one writer at a time, the node holding its advisory lock (see
//! `ochered_store::cluster`); every other node keeps a read-only copy that follows the log
//! and serves reads. A write for an authority this node does not write is proxied to the
//! owner (method, path, query, headers with `Authorization` and `Idempotency-Key`, body), and
//! the owner's answer relayed. A redirect would make clients drop `Authorization` when the
//! port changes, so the node proxies. With no live owner known, the answer is 503 with
//! `Retry-After`; nothing was written and the client retries with the same key.
//!
//! A balancing loop (every [`TICK`]) checks the lock session, takes authorities nobody
//! holds (up to a fair share of the nodes alive), starts copies of the others and catches
//! them up. `LISTEN`/`NOTIFY` wakes a copy as soon as its authority commits (and starts the
//! copy of an authority created on another node a moment ago).
//!
//! A writer whose append is fenced (another node took its authority over while this one
//! still thought it wrote it) stops at once and becomes a copy (`Engine::hand_back`); this
//! node then releases the authority and learns the new owner at once, so the next write is
//! forwarded instead of refused. A write or read for an authority this node does not know
//! yet looks it up in the database before answering.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ochered_store::cluster::ClusterLink;
use ochered_store::{EventStore, PgStore};
use ochered_writer::{Engine, Ownership, WriterError};

use crate::config::ClusterOptions;
use crate::http::error::ApiError;

/// How often a node checks its lock session, takes unowned authorities and catches up.
pub const TICK: Duration = Duration::from_millis(500);

/// Marks a proxied request, so it is never proxied twice.
pub const FORWARDED_HEADER: &str = "x-ochered-forwarded";

/// Where to send a write for an authority this node does not write.
#[derive(Debug, Clone)]
struct Route {
    node_id: String,
    url: String,
    /// Whether the owner's lock is held now (a dead owner's row stays until a takeover).
    live: bool,
}

/// This node's part of the cluster.
pub struct Cluster {
    link: ClusterLink,
    engine: OnceLock<Arc<Engine>>,
    store: Arc<dyn EventStore>,
    routes: RwLock<HashMap<String, Route>>,
    client: reqwest::Client,
    body_limit: usize,
}

impl Ownership for Cluster {
    fn claim<'a>(
        &'a self,
        authority: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, WriterError>> + Send + 'a>>
    {
        Box::pin(async move {
            let taken = self.link.try_take(authority).await?;
            if let Some(epoch) = taken {
                tracing::info!(
                    authority,
                    epoch,
                    node = self.link.node_id(),
                    "took a new authority"
                );
            }
            Ok(taken.is_some())
        })
    }
}

impl Cluster {
    /// Joins the cluster on `store`'s PostgreSQL, builds the engine (no writer yet) and runs
    /// the first balancing round, so the node serves what it took from its first request.
    pub async fn start(
        store: Arc<PgStore>,
        options: &ClusterOptions,
        writer_config: ochered_writer::WriterConfig,
        request_timeout: Duration,
        body_limit: usize,
    ) -> anyhow::Result<(Arc<Cluster>, Arc<Engine>)> {
        let link = ClusterLink::join(&store, &options.node_id, &options.advertise_url).await?;
        let client = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        let cluster = Arc::new(Cluster {
            link,
            engine: OnceLock::new(),
            store: store.clone(),
            routes: RwLock::new(HashMap::new()),
            client,
            body_limit,
        });
        let engine = Engine::new_cluster(store, writer_config, cluster.clone());
        let _ = cluster.engine.set(engine.clone());
        cluster.tick().await;
        Ok((cluster, engine))
    }

    fn engine(&self) -> &Arc<Engine> {
        self.engine.get().expect("set at start")
    }

    pub fn node_id(&self) -> &str {
        self.link.node_id()
    }

    /// Runs the balancing loop and the notification listener until the process ends.
    pub fn run(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.tick().await;
            }
        });
        let this = self.clone();
        tokio::spawn(async move { this.listen().await });
        if let Some(mut fenced) = self.engine().take_fenced() {
            let this = self.clone();
            tokio::spawn(async move {
                while let Some(authority) = fenced.recv().await {
                    this.handed_back(&authority).await;
                }
            });
        }
    }

    /// A writer of this node was fenced and handed back (`Engine::hand_back`): forget the
    /// stale epoch (or the balancing loop would start the writer again), make sure the copy
    /// runs and is current, and route writes to the new owner now.
    async fn handed_back(&self, authority: &str) {
        tracing::warn!(
            authority,
            node = self.node_id(),
            "another node took this authority over: following it now"
        );
        self.link.release(authority).await;
        match self.engine().follow(authority).await {
            Ok(Some(follower)) => {
                if let Err(e) = follower.catch_up().await {
                    tracing::warn!(authority, error = %e, "following the log failed");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(authority, error = %e, "cannot follow"),
        }
        if let Err(e) = self.refresh_route(authority).await {
            tracing::warn!(authority, error = %e, "cannot read the new owner");
        }
    }

    /// Reads an authority's owner from the database now (not waiting for the next round)
    /// and records it: `Ok(None)` when nobody ever took it.
    async fn refresh_route(&self, authority: &str) -> anyhow::Result<Option<Route>> {
        let Some(owner) = self.link.owner(authority).await? else {
            return Ok(None);
        };
        let live = self
            .link
            .locked(&[authority.to_owned()])
            .await?
            .contains(authority);
        let route = Route {
            node_id: owner.node_id,
            url: owner.url,
            live,
        };
        self.routes
            .write()
            .unwrap()
            .insert(authority.to_owned(), route.clone());
        Ok(Some(route))
    }

    /// Cluster mode, a read of an authority this node neither writes nor follows (created
    /// on another node since the last round): if the log has it, start the copy now, so the
    /// read is answered instead of a 404. `Ok(false)` when the log does not have it.
    async fn follow_if_logged(&self, authority: &str) -> anyhow::Result<bool> {
        if self.store.head(authority).await?.authority_seq == 0 {
            return Ok(false);
        }
        self.engine().follow(authority).await?;
        Ok(true)
    }

    /// One balancing round; errors are logged and the next round tries again.
    async fn tick(&self) {
        if let Err(e) = self.balance().await {
            tracing::warn!(error = %e, node = self.node_id(), "cluster round failed");
        }
        for (authority, follower) in self.engine().followers() {
            if let Err(e) = follower.catch_up().await {
                tracing::warn!(authority, error = %e, "following the log failed");
            }
        }
    }

    async fn balance(&self) -> anyhow::Result<()> {
        let engine = self.engine();
        for authority in self.link.check().await? {
            tracing::warn!(authority, "lost the lock session: no longer writing");
            engine.demote(&authority);
        }
        // Writers this node holds the lock of but has not started (a failed start).
        for authority in self.link.owned() {
            if !engine.owns(&authority) {
                self.start_writer(&authority).await;
            }
        }
        let owners = self.link.owners().await?;
        let mut known: BTreeSet<String> = self.store.authorities().await?.into_iter().collect();
        known.extend(owners.iter().map(|o| o.authority.clone()));
        let known: Vec<String> = known.into_iter().collect();
        let locked = self.link.locked(&known).await?;
        let alive = self.link.alive_nodes().await?;
        let fair_share = known.len().div_ceil(alive);
        let mut mine = self.link.owned().len();
        for authority in &known {
            if self.link.owns(authority) {
                continue;
            }
            if !locked.contains(authority) && mine < fair_share {
                if let Some(epoch) = self.link.try_take(authority).await? {
                    mine += 1;
                    tracing::info!(authority, epoch, node = self.node_id(), "took over");
                    self.start_writer(authority).await;
                    continue;
                }
            }
            if engine.writer(authority).is_none() {
                if let Err(e) = engine.follow(authority).await {
                    tracing::warn!(authority, error = %e, "cannot follow");
                }
            }
        }
        // Owners as seen now; those taken in this round are not locked in `locked` yet but
        // are this node's, which routing never needs.
        let routes = owners
            .into_iter()
            .map(|o| {
                let live = locked.contains(&o.authority);
                (
                    o.authority,
                    Route {
                        node_id: o.node_id,
                        url: o.url,
                        live,
                    },
                )
            })
            .collect();
        *self.routes.write().unwrap() = routes;
        Ok(())
    }

    /// Replays and starts the writer of an authority just taken; gives it back on failure.
    async fn start_writer(&self, authority: &str) {
        match self.engine().promote(authority).await {
            Ok((_, stats)) => tracing::info!(
                authority,
                events = stats.events,
                elapsed_ms = stats.elapsed.as_millis() as u64,
                "writing after a replay"
            ),
            Err(e) => {
                tracing::warn!(authority, error = %e, "cannot start the writer; releasing");
                self.link.release(authority).await;
            }
        }
    }

    /// Catches a copy up as soon as its authority commits (notifications are a hint; the
    /// balancing loop polls too).
    async fn listen(&self) {
        loop {
            let mut listener = match self.link.listen().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for commits; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                match listener.recv().await {
                    Ok(note) => {
                        let authority = note.payload();
                        let engine = self.engine();
                        if let Some(follower) = engine.follower(authority) {
                            let _ = follower.catch_up().await;
                        } else if engine.writer(authority).is_none() {
                            // Created on another node a moment ago: copy it now. (The
                            // channel is database-wide: the log of this schema decides.)
                            if let Err(e) = self.follow_if_logged(authority).await {
                                tracing::warn!(authority, error = %e, "cannot follow");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "commit notifications interrupted");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                }
            }
        }
    }

    /// [`Cluster::route`], asking the database when the table has no live owner.
    async fn route_now(&self, authority: &str) -> Option<Route> {
        if let Some(route) = self.route(authority) {
            return Some(route);
        }
        self.refresh_route(authority)
            .await
            .ok()
            .flatten()
            .filter(|r| r.live && r.node_id != self.node_id())
    }

    /// Stops routing `authority` to `node_id` (it did not answer).
    fn forget_route(&self, authority: &str, node_id: &str) {
        let mut routes = self.routes.write().unwrap();
        if routes.get(authority).is_some_and(|r| r.node_id == node_id) {
            routes.remove(authority);
        }
    }

    /// The live owner of an authority, if it is another node.
    fn route(&self, authority: &str) -> Option<Route> {
        self.routes
            .read()
            .unwrap()
            .get(authority)
            .filter(|r| r.live && r.node_id != self.node_id())
            .cloned()
    }
}

/// Adds the forwarding layer in front of the whole router.
pub fn layer(app: Router, cluster: Arc<Cluster>) -> Router {
    app.layer(middleware::from_fn(move |req, next| {
        forward(cluster.clone(), req, next)
    }))
}

/// The authority of an `/api/v1/authorities/{authority}…` path.
fn authority_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/v1/authorities/")?;
    let authority = rest.split('/').next()?;
    (!authority.is_empty()).then_some(authority)
}

fn no_owner(authority: &str) -> Response {
    ApiError::unavailable(format!(
        "no node writes {authority} right now (a failover is in progress); nothing was written, retry shortly with the same Idempotency-Key"
    ))
    .into_response()
}

/// The whole body of a request to forward, within the server's body limit.
async fn read_body(
    cluster: &Cluster,
    body: axum::body::Body,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, cluster.body_limit)
        .await
        .map_err(|_| ApiError::body_too_large("the request body is larger than the server accepts"))
}

async fn forward(cluster: Arc<Cluster>, req: Request, next: Next) -> Response {
    let is_write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let engine = cluster.engine().clone();
    let path = req.uri().path().to_owned();
    // Creating an authority: whoever holds it answers; nobody yet: this node claims it.
    if is_write && path == "/api/v1/authorities" {
        let (parts, body) = req.into_parts();
        let bytes = match read_body(&cluster, body).await {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        };
        let id = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned));
        let route = match id.as_deref().filter(|id| !engine.owns(id)) {
            Some(id) => cluster.route_now(id).await,
            None => None,
        };
        if let Some(route) = route {
            if parts.headers.contains_key(FORWARDED_HEADER) {
                return no_owner(id.as_deref().unwrap_or(""));
            }
            let id = id.unwrap_or_default();
            return proxy(&cluster, &id, &route, parts, bytes).await;
        }
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    let Some(authority) = authority_of(&path) else {
        return next.run(req).await;
    };
    if engine.owns(authority) || (!is_write && engine.writer(authority).is_some()) {
        return next.run(req).await;
    }
    if !is_write {
        // Not followed yet (created on another node since the last round): copy it now if
        // the log has it; otherwise the handler answers 404.
        if let Err(e) = cluster.follow_if_logged(authority).await {
            tracing::warn!(authority, error = %e, "cannot follow");
            return ApiError::unavailable(format!(
                "the copy of {authority} on this node is being started; retry shortly"
            ))
            .into_response();
        }
        return next.run(req).await;
    }
    if req.headers().contains_key(FORWARDED_HEADER) {
        // The sender thought this node writes it: ownership moved meanwhile.
        return no_owner(authority);
    }
    let route = match cluster.route(authority) {
        Some(route) => route,
        // A new authority or a takeover since the last round: ask the database now.
        None => match cluster.refresh_route(authority).await {
            Ok(Some(route)) if route.live && route.node_id != cluster.node_id() => route,
            // Never taken by any node: no such authority (unless in the log), the handler
            // answers 404.
            Ok(None) if engine.writer(authority).is_none() => return next.run(req).await,
            Ok(_) => return no_owner(authority),
            Err(e) => {
                tracing::warn!(authority, error = %e, "cannot read the owner");
                return no_owner(authority);
            }
        },
    };
    let (parts, body) = req.into_parts();
    let bytes = match read_body(&cluster, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    proxy(&cluster, authority, &route, parts, bytes).await
}

/// Headers that belong to one connection, never relayed.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

async fn proxy(
    cluster: &Cluster,
    authority: &str,
    route: &Route,
    parts: axum::http::request::Parts,
    body: axum::body::Bytes,
) -> Response {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{path}", route.url.trim_end_matches('/'));
    let mut request = cluster.client.request(parts.method.clone(), url);
    for (name, value) in parts.headers.iter() {
        if !hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    request = request
        .header(FORWARDED_HEADER, cluster.node_id())
        .body(body);
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(owner = %route.node_id, error = %e, "forwarding failed");
            // Until the next round, the next write asks the database for the owner instead
            // of trying this one again.
            cluster.forget_route(authority, &route.node_id);
            // The owner may have died with the request: it may or may not have committed,
            // and a retry with the same Idempotency-Key gets the first answer either way.
            return ApiError::unavailable(
                "the node that writes this authority did not answer; retry shortly with the same Idempotency-Key",
            )
            .into_response();
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(owner = %route.node_id, error = %e, "forwarded answer cut off");
            return ApiError::unavailable(
                "the answer of the node that writes this authority was cut off; retry shortly with the same Idempotency-Key",
            )
            .into_response();
        }
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in headers.iter() {
        if !hop_by_hop(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_read_from_api_paths_only() {
        assert_eq!(
            authority_of("/api/v1/authorities/msk/applications"),
            Some("msk")
        );
        assert_eq!(authority_of("/api/v1/authorities/msk"), Some("msk"));
        assert_eq!(authority_of("/api/v1/authorities"), None);
        assert_eq!(authority_of("/api/v1/authorities/"), None);
        assert_eq!(authority_of("/health"), None);
    }
}
