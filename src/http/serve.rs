//! The accept loop: HTTP/1.1 over each connection (TLS and HTTP/2 end at the load
//! balancer in front), with the bounds `axum::serve` does not offer — a deadline for
//! each request's headers (slowloris), which also closes kept-alive connections left
//! idle, and a cap on the connections one client address may hold open. Graceful:
//! on shutdown, requests in flight finish.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tower::Service;

pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    /// 0: no cap.
    pub per_address: u32,
    /// Load balancers carry many clients' connections: never capped.
    pub exempt: Vec<IpNet>,
}

/// Open connections by client address.
#[derive(Default)]
struct OpenConnections(Mutex<HashMap<IpAddr, u32>>);

/// One admitted connection; dropping it frees its place.
struct Admitted {
    open: Arc<OpenConnections>,
    ip: IpAddr,
}

impl OpenConnections {
    fn admit(self: &Arc<Self>, ip: IpAddr, cap: u32) -> Option<Admitted> {
        let mut open = sync::lock(&self.0);
        let n = open.entry(ip).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Admitted { open: self.clone(), ip })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = sync::lock(&self.open.0);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve(listener: TcpListener, app: Router, limits: ConnectionLimits, shutdown: impl Future<Output = ()>) {
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    let open = Arc::new(OpenConnections::default());
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A dual-stack listener sees IPv4 peers as IPv4-mapped addresses.
        let ip = peer.ip().to_canonical();
        let admitted = if limits.per_address == 0 || limits.exempt.iter().any(|net| net.contains(&ip)) {
            None
        } else {
            match open.admit(ip, limits.per_address) {
                Some(a) => Some(a),
                None => {
                    crate::telemetry::rate_limited("connections_per_address");
                    continue; // dropping the stream closes it
                }
            }
        };
        stream.set_nodelay(true).ok();
        let Ok(service) = make_service.call(peer).await;
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection closed with an error");
            }
            drop(admitted);
        });
    }
    graceful.shutdown().await;
}
