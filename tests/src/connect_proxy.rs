//! A forward proxy that only tunnels, as egress proxies do for HTTPS: it
//! answers `CONNECT host:port` by connecting there and relaying bytes both
//! ways, and records each tunnel's target. It never sees inside the TLS it
//! carries.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The longest request head the proxy reads before giving up on a client.
const MAX_HEAD: usize = 16 * 1024;

pub struct ConnectProxy {
    addr: SocketAddr,
    tunnels: Arc<Mutex<Vec<String>>>,
    accept: JoinHandle<()>,
}

impl ConnectProxy {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&tunnels);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    if let Err(e) = tunnel(client, &seen).await {
                        eprintln!("connect proxy: {e:#}");
                    }
                });
            }
        });
        Ok(ConnectProxy {
            addr,
            tunnels,
            accept,
        })
    }

    /// The proxy's URL, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The targets (`host:port`) of the tunnels opened so far.
    pub fn tunnels(&self) -> Vec<String> {
        self.tunnels.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn tunnel(mut client: TcpStream, seen: &Mutex<Vec<String>>) -> anyhow::Result<()> {
    let mut head = Vec::new();
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        anyhow::ensure!(head.len() < MAX_HEAD, "request head too large");
        let mut chunk = [0; 1024];
        let n = client.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "client closed before the request head ended");
        head.extend_from_slice(&chunk[..n]);
    };
    let line = std::str::from_utf8(&head[..end])?
        .lines()
        .next()
        .unwrap_or_default();
    let mut words = line.split(' ');
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await?;
        anyhow::bail!("not a CONNECT request: {line}");
    };
    let target = target.to_owned();
    seen.lock().unwrap().push(target.clone());
    let mut upstream = TcpStream::connect(&target)
        .await
        .with_context(|| format!("connecting to {target}"))?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    // Whatever the client sent after the head already belongs to the tunnel.
    upstream.write_all(&head[end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
