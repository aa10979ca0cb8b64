//! HTTP: `/metrics` (Prometheus text format, gzip when the scraper accepts it) and `/healthz`.
//!
//! Owns the routes and the graceful shutdown of the server. A scrape first publishes what the
//! publisher has merged, so it shows every flow the inputs have shipped, then renders the
//! registry. Both run on the blocking pool: rendering costs time proportional to the number of
//! series and must not stall the executor (or `/healthz`). Neither touches an input: a socket
//! thread never waits for a scrape.
//!
//! Compression: at the series bound the body is several megabytes of text that compresses about
//! tenfold; Prometheus always asks for gzip. The fastest level is used: the scrape's cost is the
//! render, not the bytes.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::aggregate::Publisher;
use crate::input::udp::KernelDrops;
use crate::sync::lock;
use crate::telemetry::Registry;

/// What the handlers and the publisher thread need.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub publisher: Arc<Publisher>,
    pub kernel_drops: Arc<Mutex<KernelDrops>>,
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

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let gzip = accepts_gzip(&headers);
    let rendered = tokio::task::spawn_blocking(move || {
        state.publish();
        state.publisher.rendering();
        let body = state.registry.render();
        if gzip {
            compress(&body)
        } else {
            Ok(body.into_bytes())
        }
    })
    .await;
    match rendered {
        Ok(Ok(body)) => {
            let mut response =
                (StatusCode::OK, [(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response();
            let h = response.headers_mut();
            h.insert(
                header::VARY,
                header::HeaderValue::from_static("accept-encoding"),
            );
            if gzip {
                h.insert(
                    header::CONTENT_ENCODING,
                    header::HeaderValue::from_static("gzip"),
                );
            }
            response
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "render failed\n",
        )
            .into_response(),
    }
}

/// Whether `Accept-Encoding` lists gzip with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let q = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
        })
}

fn compress(body: &str) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 8), Compression::fast());
    encoder.write_all(body.as_bytes())?;
    encoder.finish()
}

async fn healthz() -> &'static str {
    "ok\n"
}

impl AppState {
    /// Publishes merged values and the kernel's drop counts (scrape time and the one-second tick).
    pub fn publish(&self) {
        self.publisher.publish();
        lock(&self.kernel_drops).update();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_chosen_by_accept_encoding() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
            accepts_gzip(&h)
        };
        assert!(with("gzip"));
        assert!(with("deflate, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("identity"));
        assert!(!with("br, deflate"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn compressed_bodies_decompress_to_the_text() {
        use std::io::Read;
        let text = "goflow_flows_total{sampler_address=\"192.0.2.1\"} 1\n".repeat(1000);
        let gz = compress(&text).unwrap();
        assert!(gz.len() * 10 < text.len(), "{} bytes", gz.len());
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
    }
}
