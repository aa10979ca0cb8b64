//! HTTP: `/metrics` (Prometheus text format) and `/healthz`.
//!
//! Owns the routes and the graceful shutdown of the server. A scrape first publishes the
//! aggregator's pending deltas, so it shows every flow recorded so far, then renders the registry.
//! Both run on the blocking pool: rendering costs time proportional to the number of series and
//! must not stall the executor (or `/healthz`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Registry;
use crate::{Clock, SharedAggregator};

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub aggregator: SharedAggregator,
    pub clock: Clock,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let rendered = tokio::task::spawn_blocking(move || {
        state.publish();
        state.registry.render()
    })
    .await;
    match rendered {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "render failed\n".to_string(),
        ),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

impl AppState {
    /// Publishes pending deltas (scrape time and the background ticker).
    pub fn publish(&self) {
        let now = self.clock.now_secs();
        crate::lock(&self.aggregator).publish(now);
        self.registry.keepalive();
    }
}
