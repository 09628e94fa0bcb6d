//! The `sluice.config.v1.ConfigDiscovery` gRPC service, written out by hand
//! rather than generated: the generated one would make every stream send a
//! `ControlPlaneMessage` struct, so a million-key snapshot would be cloned
//! and encoded once per data plane. This one sends
//! [`EncodedMessage`]s, whose snapshot or delta the hub encoded once; the
//! bytes on the wire are the same. Everything else (framing, compression,
//! status) is tonic's.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use sluice_proto::config::v1::DataPlaneMessage;
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use super::stream::{Discovery, EncodedMessage, Outgoing};
use crate::shutdown::{ends_at_shutdown, unless_shutdown};

/// The one method's path.
const STREAM_CONFIG: &str = "/sluice.config.v1.ConfigDiscovery/StreamConfig";

/// The service, for `tonic::transport::Server::add_service`.
#[derive(Clone)]
pub struct ConfigDiscoveryService {
    discovery: Arc<Discovery>,
}

impl ConfigDiscoveryService {
    pub fn new(discovery: Discovery) -> Self {
        ConfigDiscoveryService {
            discovery: Arc::new(discovery),
        }
    }
}

impl NamedService for ConfigDiscoveryService {
    const NAME: &'static str = "sluice.config.v1.ConfigDiscovery";
}

/// `StreamConfig` as tonic's server calls it.
struct StreamConfig(Arc<Discovery>);

impl StreamingService<DataPlaneMessage> for StreamConfig {
    type Response = EncodedMessage;
    type ResponseStream = Outgoing;
    type Future = BoxFuture<Response<Outgoing>, Status>;

    fn call(&mut self, request: Request<Streaming<DataPlaneMessage>>) -> Self::Future {
        let discovery = Arc::clone(&self.0);
        Box::pin(async move {
            let shutdown = discovery.shutdown.clone();
            let opened = unless_shutdown(&shutdown, discovery.stream_config(request)).await?;
            Ok(opened.map(|out| ends_at_shutdown(out, shutdown)))
        })
    }
}

impl<B> Service<http::Request<B>> for ConfigDiscoveryService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != STREAM_CONFIG {
            let status = Status::unimplemented(format!("no method {}", req.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = StreamConfig(Arc::clone(&self.discovery));
        Box::pin(async move {
            let codec = ProstCodec::<EncodedMessage, DataPlaneMessage>::default();
            Ok(Grpc::new(codec).streaming(method, req).await)
        })
    }
}
