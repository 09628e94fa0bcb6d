//! A real etcd for tests: one member on free loopback ports, with its data
//! directory and log (`etcd.log`) in a temporary directory that goes away
//! with it.
//!
//! The binary is `$SLUICE_ETCD_BIN`, else `etcd` on `PATH` (Debian's
//! `etcd-server` package installs `/usr/bin/etcd`). The server is killed when
//! the [`EtcdServer`] is dropped, also when a test panics.
//!
//! [`EtcdServer::start_tls`] serves clients over TLS with [`TestCerts`]; its
//! `/health` and `/metrics` then move to a third, plain-HTTP port
//! (`--listen-metrics-urls`), since etcd with `--client-cert-auth` answers
//! them on the client port only to clients with a certificate.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::certs::TestCerts;

/// How long etcd may take to answer after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often readiness and exit are checked while etcd starts.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Spawns tried when the free ports we picked were taken before etcd bound them.
const START_ATTEMPTS: usize = 5;

const MEMBER_NAME: &str = "sluice-test";

/// etcd's copies of the TLS files, in its temporary directory.
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server-key.pem";
const TRUSTED_CA: &str = "ca.pem";

/// A running etcd; see the module documentation.
pub struct EtcdServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    /// `/health` and `/metrics` over plain HTTP; used only with TLS.
    metrics_port: u16,
    tls: Option<ClientAuth>,
    child: Option<Child>,
}

/// Whom a TLS etcd serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Any client: TLS only proves etcd's identity and encrypts.
    None,
    /// Only clients with a certificate from the test CA (mutual TLS:
    /// `--client-cert-auth --trusted-ca-file`).
    Required,
}

/// Why a spawn did not give a ready server.
enum SpawnError {
    /// Another process bound one of our ports first: retry.
    PortTaken(anyhow::Error),
    Failed(anyhow::Error),
}

impl EtcdServer {
    /// Starts etcd on two free loopback ports and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// Starts etcd serving its clients `https://` with `certs`' server
    /// certificate, asking for client certificates as `client_auth` says;
    /// peers stay plain HTTP. The files are copied, so `certs` may go first.
    pub async fn start_tls(certs: &TestCerts, client_auth: ClientAuth) -> anyhow::Result<Self> {
        Self::start_with(Some((certs, client_auth))).await
    }

    async fn start_with(tls: Option<(&TestCerts, ClientAuth)>) -> anyhow::Result<Self> {
        let binary = find_etcd()?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-etcd-")
            .tempdir()
            .context("creating etcd's temporary directory")?;
        let mut server = Self {
            binary,
            dir,
            client_port: 0,
            peer_port: 0,
            metrics_port: 0,
            tls: tls.map(|(_, client_auth)| client_auth),
            child: None,
        };
        if let Some((certs, _)) = tls {
            for (from, to) in [
                (certs.server_cert_file(), server.tls_file(SERVER_CERT)),
                (certs.server_key_file(), server.tls_file(SERVER_KEY)),
                (certs.ca_file(), server.tls_file(TRUSTED_CA)),
            ] {
                std::fs::copy(&from, &to)
                    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            }
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            (server.client_port, server.peer_port, server.metrics_port) = free_ports()?;
            match server.spawn().await {
                Ok(()) => return Ok(server),
                Err(SpawnError::PortTaken(error)) => {
                    // The member's data records its peer URL: start clean on new ports.
                    let data = server.data_dir();
                    if data.exists() {
                        std::fs::remove_dir_all(&data)
                            .with_context(|| format!("removing {}", data.display()))?;
                    }
                    last_error = Some(error);
                }
                Err(SpawnError::Failed(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("etcd did not start")))
            .context(format!("etcd did not start in {START_ATTEMPTS} attempts"))
    }

    /// The client URL, e.g. `http://127.0.0.1:40123` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// etcd's log, for a failing test to point at.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Kills etcd (like a crash: no graceful shutdown) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Both fail only when the process is already gone and reaped.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops etcd if it runs, then starts it again on the same ports with the
    /// same data, and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn().await {
                Ok(()) => return Ok(()),
                // The old process's sockets may linger for a moment.
                Err(SpawnError::PortTaken(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL * 5).await;
                }
                Err(SpawnError::PortTaken(error) | SpawnError::Failed(error)) => {
                    return Err(error.context("restarting etcd"));
                }
            }
        }
    }

    /// Freezes etcd (SIGSTOP): connections stay open, nothing answers. This is
    /// what a hung or partitioned etcd looks like to a client.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("STOP")
    }

    /// Undoes [`Self::pause`] (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("CONT")
    }

    /// The sum of a Prometheus metric's samples from etcd's `/metrics`, e.g.
    /// `etcd_debugging_mvcc_watcher_total`.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let body = http_get(self.http_port(), "/metrics").await?;
        let mut total = 0.0;
        let mut found = false;
        for line in body.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            let value = rest
                .rsplit(' ')
                .next()
                .ok_or_else(|| anyhow!("metric line without value: {line}"))?;
            total += value
                .parse::<f64>()
                .with_context(|| format!("metric line {line:?}"))?;
            found = true;
        }
        if !found {
            bail!("etcd does not report metric {name}");
        }
        Ok(total)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn tls_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where `/health` and `/metrics` are served over plain HTTP.
    fn http_port(&self) -> u16 {
        if self.tls.is_some() {
            self.metrics_port
        } else {
            self.client_port
        }
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("etcd is not running"))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {} failed: {status}", child.id());
        }
        Ok(())
    }

    async fn spawn(&mut self) -> Result<(), SpawnError> {
        let log_path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))
            .map_err(SpawnError::Failed)?;
        // Only this run's lines tell why this run failed.
        let log_start = log
            .seek(SeekFrom::End(0))
            .context("seeking etcd's log")
            .map_err(SpawnError::Failed)?;
        let stdout = log
            .try_clone()
            .context("cloning etcd's log handle")
            .map_err(SpawnError::Failed)?;
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(&self.binary);
        if let Some(client_auth) = self.tls {
            command
                .arg("--cert-file")
                .arg(self.tls_file(SERVER_CERT))
                .arg("--key-file")
                .arg(self.tls_file(SERVER_KEY))
                .arg("--listen-metrics-urls")
                .arg(format!("http://127.0.0.1:{}", self.metrics_port));
            if client_auth == ClientAuth::Required {
                // etcd 3.4 already requires client certificates once it has
                // --trusted-ca-file; --client-cert-auth says so explicitly.
                command
                    .arg("--trusted-ca-file")
                    .arg(self.tls_file(TRUSTED_CA))
                    .arg("--client-cert-auth");
            }
        }
        let child = command
            .arg("--name")
            .arg(MEMBER_NAME)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("{MEMBER_NAME}={peer_url}"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))
            .map_err(SpawnError::Failed)?;
        self.child = Some(child);
        let outcome = self.wait_ready(&log_path, log_start).await;
        if outcome.is_err() {
            self.stop();
        }
        outcome
    }

    async fn wait_ready(&mut self, log_path: &Path, log_start: u64) -> Result<(), SpawnError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child
                    .try_wait()
                    .context("checking on etcd")
                    .map_err(SpawnError::Failed)?,
                None => return Err(SpawnError::Failed(anyhow!("etcd is not running"))),
            };
            if let Some(status) = exited {
                self.child = None;
                let log = read_from(log_path, log_start);
                let error = anyhow!(
                    "etcd exited with {status} before answering; its log ({}):\n{}",
                    log_path.display(),
                    tail(&log)
                );
                return Err(if log.contains("address already in use") {
                    SpawnError::PortTaken(error)
                } else {
                    SpawnError::Failed(error)
                });
            }
            if is_healthy(self.http_port()).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SpawnError::Failed(anyhow!(
                    "etcd did not answer within {READY_TIMEOUT:?}; its log ({}):\n{}",
                    log_path.display(),
                    tail(&read_from(log_path, log_start))
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_etcd() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_ETCD_BIN") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            anyhow!(
                "etcd is not installed: these tests start a real etcd. Run the tests with the \
                 README's test command, which installs it (Debian/Ubuntu: `apt-get install \
                 etcd-server`), or point SLUICE_ETCD_BIN at an etcd binary"
            )
        })
}

/// Three distinct ports (client, peer, metrics) that were free a moment ago.
/// Another process may still take them before etcd binds them;
/// [`EtcdServer::start`] retries then.
fn free_ports() -> anyhow::Result<(u16, u16, u16)> {
    let client = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    let peer = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    let metrics = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok((
        client.local_addr()?.port(),
        peer.local_addr()?.port(),
        metrics.local_addr()?.port(),
    ))
}

/// etcd's `/health` says true only once it has a leader and serves reads.
async fn is_healthy(port: u16) -> bool {
    match http_get(port, "/health").await {
        Ok(body) => body.contains(r#""health":"true""#),
        Err(_) => false,
    }
}

/// A minimal HTTP GET on loopback (etcd serves HTTP next to gRPC on its
/// client port), so the harness needs no HTTP client crate. HTTP/1.0, so the
/// body comes whole rather than in chunks (`/metrics` is large enough for
/// etcd to chunk an HTTP/1.1 answer, which would split lines).
async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| anyhow!("GET {path} on port {port}: no answer"))?
        .with_context(|| format!("GET {path} on port {port}"))
}

fn read_from(path: &Path, start: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path)
        && file.seek(SeekFrom::Start(start)).is_ok()
    {
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Writes `items` (store key, encoded value) into etcd in transactions of
/// 100 puts, eight at a time: how the benchmarks fill a store with a million
/// objects before a control plane lists it.
pub async fn put_all(
    store: &sluice_control_plane::store::etcd::EtcdStore,
    items: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    use sluice_control_plane::store::{Store, Txn};
    let batches: Vec<Vec<(String, Vec<u8>)>> = items.chunks(100).map(|c| c.to_vec()).collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(batches)
        .map(|batch| async move {
            let mut txn = Txn::new();
            for (k, v) in batch {
                txn = txn.put(k, v);
            }
            store.txn(txn).await?;
            Ok(())
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}
