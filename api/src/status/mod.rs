//! Status updates of applications: Server-Sent Events for the parent's page
//! (`sse`), webhooks for the portal (`webhooks`), and what both share (`changes`).

pub mod changes;
pub mod sse;
pub mod webhooks;

use axum::{Extension, Router};
use tokio::sync::{oneshot, watch};

use self::changes::Stopping;
use crate::state::AppState;

/// Starts the status updates of a server: the webhook outbox (when configured) and the
/// shutdown of event streams. Takes the server's stop signal and returns the one the server
/// should wait for: it fires after the streams and the outbox were told to stop.
pub fn start(
    app: Router,
    server_stop: oneshot::Receiver<()>,
    state: &AppState,
) -> anyhow::Result<(Router, oneshot::Receiver<()>)> {
    let (stop_tx, stop_rx) = watch::channel(false);
    webhooks::spawn(state, stop_rx.clone())?;
    let (relay_tx, relay_rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = server_stop.await;
        let _ = stop_tx.send(true);
        let _ = relay_tx.send(());
    });
    Ok((app.layer(Extension(Stopping(stop_rx))), relay_rx))
}
