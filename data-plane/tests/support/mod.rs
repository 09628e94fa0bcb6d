//! Test support: a scriptable in-process control plane, an HTTP client, and
//! waiting with deadlines (never fixed sleeps).

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use sluice_proto::admin::v1::Key;
use sluice_proto::config::v1::config_discovery_server::{ConfigDiscovery, ConfigDiscoveryServer};
use sluice_proto::config::v1::{
    ControlPlaneMessage, DataPlaneMessage, Delta, Hello, Snapshot, control_plane_message,
    data_plane_message,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request as GrpcRequest, Response, Status, Streaming};

/// How long any wait in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test with `what` after [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

pub fn key(plaintext: &str) -> Key {
    Key {
        key_id: hex::encode(Sha256::digest(plaintext.as_bytes())),
        key_prefix: plaintext.chars().take(6).collect(),
        ..Default::default()
    }
}

pub fn snapshot(revision: i64, keys: &[&str]) -> Snapshot {
    Snapshot {
        revision,
        keys: keys.iter().map(|k| key(k)).collect(),
        ..Default::default()
    }
}

pub fn delta(from: i64, to: i64, keys: &[&str]) -> Delta {
    Delta {
        from_revision: from,
        to_revision: to,
        upserts: Some(snapshot(to, keys)),
        removals: vec![],
    }
}

/// One stream a data plane opened, as the fake control plane sees it.
pub struct Connection {
    pub hello: Hello,
    pub authorization: Option<String>,
    to_data_plane: mpsc::Sender<Result<ControlPlaneMessage, Status>>,
    from_data_plane: mpsc::UnboundedReceiver<DataPlaneMessage>,
}

impl Connection {
    pub async fn send_snapshot(&self, snapshot: Snapshot) {
        self.send(control_plane_message::Message::Snapshot(snapshot))
            .await;
    }

    pub async fn send_delta(&self, delta: Delta) {
        self.send(control_plane_message::Message::Delta(delta))
            .await;
    }

    async fn send(&self, message: control_plane_message::Message) {
        self.to_data_plane
            .send(Ok(ControlPlaneMessage {
                message: Some(message),
                control_plane_id: "fake-cp".into(),
            }))
            .await
            .expect("stream open");
    }

    /// Ends the stream with an error status, as a failing replica would.
    pub async fn fail(self, status: Status) {
        let _ = self.to_data_plane.send(Err(status)).await;
    }

    pub async fn reply(&mut self) -> data_plane_message::Message {
        within("the data plane's answer", self.from_data_plane.recv())
            .await
            .expect("stream open")
            .message
            .expect("a message")
    }

    pub async fn expect_ack(&mut self) -> i64 {
        match self.reply().await {
            data_plane_message::Message::Ack(ack) => ack.revision,
            other => panic!("expected an ACK, got {other:?}"),
        }
    }

    pub async fn expect_nack(&mut self) -> (i64, String) {
        match self.reply().await {
            data_plane_message::Message::Nack(nack) => (nack.revision, nack.reason),
            other => panic!("expected a NACK, got {other:?}"),
        }
    }
}

struct Service {
    connections: mpsc::UnboundedSender<Connection>,
    refuse: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl ConfigDiscovery for Service {
    type StreamConfigStream = ReceiverStream<Result<ControlPlaneMessage, Status>>;

    async fn stream_config(
        &self,
        request: GrpcRequest<Streaming<DataPlaneMessage>>,
    ) -> Result<Response<Self::StreamConfigStream>, Status> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Status::unauthenticated("invalid data-plane token"));
        }
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(DataPlaneMessage {
                message: Some(data_plane_message::Message::Hello(hello)),
            }) => hello,
            other => return Err(Status::invalid_argument(format!("no hello: {other:?}"))),
        };
        let (to_data_plane, outbound) = mpsc::channel(16);
        let (replies, from_data_plane) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                if replies.send(message).is_err() {
                    break;
                }
            }
        });
        let _ = self.connections.send(Connection {
            hello,
            authorization,
            to_data_plane,
            from_data_plane,
        });
        Ok(Response::new(ReceiverStream::new(outbound)))
    }
}

/// A `ConfigDiscovery` server on 127.0.0.1, scripted by the test.
pub struct FakeControlPlane {
    pub address: SocketAddr,
    connections: mpsc::UnboundedReceiver<Connection>,
    refuse: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl FakeControlPlane {
    pub async fn start() -> Self {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        FakeControlPlane::try_start_on(any).await.expect("bind")
    }

    /// On a given address: a control plane coming back where it was.
    pub async fn try_start_on(address: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (connections_tx, connections) = mpsc::unbounded_channel();
        let refuse = Arc::new(AtomicUsize::new(0));
        let attempts = Arc::new(AtomicUsize::new(0));
        let service = Service {
            connections: connections_tx,
            refuse: Arc::clone(&refuse),
            attempts: Arc::clone(&attempts),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(ConfigDiscoveryServer::new(service))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
        });
        Ok(FakeControlPlane {
            address,
            connections,
            refuse,
            attempts,
            stop: Some(stop),
            server: Some(server),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The next stream a data plane opens (its Hello already read).
    pub async fn next_connection(&mut self) -> Connection {
        within("a data plane to connect", self.connections.recv())
            .await
            .expect("server running")
    }

    /// Refuses the next `n` streams with UNAUTHENTICATED.
    pub fn refuse_next(&self, n: usize) {
        self.refuse.store(n, Ordering::SeqCst);
    }

    /// Streams opened or refused so far.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }
}

/// A port nothing listens on (bound, then released).
pub async fn unused_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address")
}

/// An HTTP/1.1 response, read whole.
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `method path` on `address`, with `Authorization: Bearer <bearer>` if given.
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let stream = TcpStream::connect(address).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", address.to_string());
    if let Some(token) = bearer {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(std::io::Error::other)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(HttpResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

pub async fn get(address: SocketAddr, path: &str, bearer: Option<&str>) -> HttpResponse {
    request(address, "GET", path, bearer)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}
