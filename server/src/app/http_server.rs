//! The HTTP server: actix-server with actix-http's HTTP/1 service rather than actix-web's
//! `HttpServer`, so that WebSocket upgrades are handed over with their raw connection
//! (`crate::ws`).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_service::{IntoServiceFactory as _, ServiceFactory, ServiceFactoryExt as _};
use actix_web::{web, App};
use anyhow::Context as _;
use tokio::net::TcpStream;

use super::AppState;

/// Builds the server on `listener`. It serves nothing until [`serve`] runs it: actix-server
/// starts its workers on the first poll.
pub(super) fn build(
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<AppState>,
) -> std::io::Result<actix_server::Server> {
    let settings = &state.settings;
    let max_body = settings.limits.max_frame_bytes;
    let http_metrics = state.metrics.http_request_duration.clone();
    let shutdown_timeout_secs = settings.server.shutdown_timeout_ms.div_ceil(1000);
    let workers = http_workers(settings.server.workers, available_cores());
    let server = actix_server::Server::build()
        .listen("parley-http", listener, move || {
            let http_metrics = http_metrics.clone();
            let app = App::new()
                .app_data(web::Data::new(state.clone()))
                .wrap_fn(move |request, service| {
                    use actix_web::dev::Service as _;
                    let started = std::time::Instant::now();
                    let route = request
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_owned());
                    let http_metrics = http_metrics.clone();
                    let response = service.call(request);
                    async move {
                        let response = response.await?;
                        http_metrics
                            .with_label_values(&[&route, response.status().as_str()])
                            .observe(started.elapsed().as_secs_f64());
                        Ok(response)
                    }
                })
                .configure(|config| crate::web_chat::configure(config, &state.settings))
                .configure(|config| crate::http::configure(config, max_body));
            let app = app.into_factory().map_err(|error| error.error_response());
            actix_http::HttpService::build()
                // actix-web's defaults.
                .keep_alive(actix_http::KeepAlive::default())
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                // Small frames must leave at once: without TCP_NODELAY, Nagle's algorithm
                // and delayed ACKs hold replies and events back by up to ~40 ms.
                .tcp_nodelay(true)
                .local_addr(local_addr)
                .upgrade(websocket_upgrade(state.clone()))
                .finish(actix_service::map_config(app, |()| {
                    actix_web::dev::AppConfig::default()
                }))
                .tcp()
        })?
        .disable_signals()
        .shutdown_timeout(shutdown_timeout_secs);
    Ok(server.workers(workers).run())
}

/// The cores this process may run on (1 when unknown).
fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `server.workers`, or for 0 one per core but one (at least one): the log writer, ingest and
/// search get a core, and a message wakes fewer threads. On two cores one worker spent 13 %
/// less CPU per one-to-one send than two, with no worse latency up to 10 000 sends/s
/// (docs/benchmarks.md, "One HTTP worker on two cores").
fn http_workers(configured: usize, cores: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        cores.saturating_sub(1).max(1)
    }
}

/// Hands an upgrade request and its raw connection to the WebSocket session (`crate::ws`).
fn websocket_upgrade(
    state: Arc<AppState>,
) -> impl ServiceFactory<
    (
        actix_http::Request,
        actix_codec::Framed<TcpStream, actix_http::h1::Codec>,
    ),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
> + Clone {
    actix_service::fn_service(
        move |(request, framed): (
            actix_http::Request,
            actix_codec::Framed<TcpStream, actix_http::h1::Codec>,
        )| {
            let served = crate::ws::serve_upgrade(state.clone(), request, framed);
            async move {
                served.await;
                Ok::<(), actix_web::Error>(())
            }
        },
    )
}

/// The HTTP server running on the actix runtime.
pub(super) struct ServingHttp {
    handle: actix_server::ServerHandle,
    task: actix_rt::task::JoinHandle<std::io::Result<()>>,
}

/// Runs `server` (accepting connections) until [`ServingHttp::stop`].
pub(super) fn serve(server: actix_server::Server) -> ServingHttp {
    ServingHttp {
        handle: server.handle(),
        task: actix_rt::spawn(server),
    }
}

impl ServingHttp {
    /// Stops accepting and waits (until `deadline`) for the HTTP connections, then for the
    /// server to end; its result is the server's.
    pub(super) async fn stop(self, deadline: Instant) -> anyhow::Result<()> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(remaining, self.handle.stop(true))
            .await
            .is_err()
        {
            tracing::warn!("connections still open at the stop deadline");
        }
        match self.task.await {
            Ok(served) => served.context("http server failed"),
            Err(panicked) => Err(anyhow::Error::new(panicked).context("http server failed")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::http_workers;

    #[test]
    fn zero_workers_means_one_per_core_but_one() {
        assert_eq!(http_workers(0, 1), 1);
        assert_eq!(http_workers(0, 2), 1);
        assert_eq!(http_workers(0, 8), 7);
        assert_eq!(http_workers(3, 8), 3, "a configured count is kept");
        assert_eq!(http_workers(4, 1), 4);
    }
}
