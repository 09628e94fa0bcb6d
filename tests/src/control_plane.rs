//! Starts the real `sluice-control-plane` binary on a free loopback port,
//! waits until it serves, and kills it on drop (even when a test panics).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

/// The master key every harness-started control plane uses.
pub const MASTER_KEY: &str = "sk-test-master-key-0123456789";
/// The data-plane token every harness-started control plane accepts
/// (as `SLUICE_DATA_PLANE_TOKEN`).
pub const DATA_PLANE_TOKEN: &str = "sdp-test-data-plane-token-0123456789";

/// A built binary of this workspace, next to the test executable.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>, and from one
    // of this crate's own binaries, target/<profile>/<bin> -> the same.
    let dir = exe
        .parent()
        .map(|dir| match dir.file_name() {
            Some(deps) if deps == "deps" => dir.parent().unwrap_or(dir),
            _ => dir,
        })
        .context("test executable has no target directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is not built; run the whole suite with `cargo test --workspace` (the README's test command)",
            path.display()
        );
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Resident memory (current, peak) of a process, in bytes (Linux /proc).
pub fn rss_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    Some((kib("VmRSS:")?, kib("VmHWM:")?))
}

pub struct ControlPlane {
    child: Option<Child>,
    port: u16,
    metrics_port: u16,
    args: Vec<String>,
    /// More environment variables (`SLUICE_ETCD_PASSWORD`).
    env: Vec<(String, String)>,
    dir: TempDir,
}

impl ControlPlane {
    /// On the embedded store in a fresh temp dir.
    pub fn start_embedded() -> anyhow::Result<Self> {
        Self::start(Vec::new())
    }

    /// On the etcd at `endpoint`.
    pub fn start_etcd(endpoint: &str) -> anyhow::Result<Self> {
        Self::start_etcd_with(endpoint, Vec::<String>::new())
    }

    /// On the etcd at `endpoint`, with more flags (e.g. `--etcd-ca-file`).
    pub fn start_etcd_with(
        endpoint: &str,
        extra: impl IntoIterator<Item = impl Into<String>>,
    ) -> anyhow::Result<Self> {
        Self::start(etcd_args(endpoint, extra))
    }

    /// Like [`ControlPlane::start_etcd_with`], with more environment
    /// variables.
    pub fn start_etcd_with_env(
        endpoint: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::launch(
            etcd_args(endpoint, extra.iter().copied()),
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn start(extra: Vec<String>) -> anyhow::Result<Self> {
        Self::launch(extra, Vec::new())
    }

    fn launch(extra: Vec<String>, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        // A free port can be taken by someone else before we bind it: retry.
        let mut last_err = None;
        for _ in 0..5 {
            let mut cp = Self {
                child: None,
                port: free_port()?,
                metrics_port: free_port()?,
                args: extra.clone(),
                env: env.clone(),
                dir: tempfile::tempdir()?,
            };
            match cp.spawn() {
                Ok(()) => return Ok(cp),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("control plane did not start")))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join("control-plane.log"))?;
        let mut cmd = Command::new(binary("sluice-control-plane")?);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("SLUICE_MASTER_KEY", MASTER_KEY)
            .env("SLUICE_DATA_PLANE_TOKEN", DATA_PLANE_TOKEN)
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(cmd.spawn().context("spawning sluice-control-plane")?);
        self.wait_ready(Duration::from_secs(30))
    }

    fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("control plane exited with {status}:\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "control plane not listening after {within:?}:\n{}",
            self.log()
        )
    }

    /// `127.0.0.1:PORT`, as grpcurl takes it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`, as tonic takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// A Prometheus metric's value from `--metrics-listen`.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let text = crate::http_client().get(url).send().await?.text().await?;
        crate::data_plane::sample(&text, name)
            .with_context(|| format!("metric {name} not found in:\n{text}"))
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("control-plane.log")).unwrap_or_default()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory (current, peak) of the process, in bytes, from /proc.
    pub fn rss(&self) -> Option<(u64, u64)> {
        crate::control_plane::rss_of(self.pid()?)
    }

    /// Stops the process as Kubernetes does (SIGTERM) and waits up to
    /// `within` for it to exit: how it ended and how long that took, or an
    /// error if it was still running (then it is killed).
    pub fn stop(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
        let mut child = self
            .child
            .take()
            .context("the control plane is not running")?;
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {} failed: {sent}", child.id());
        }
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, started.elapsed()));
            }
            if started.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the control plane was still running {within:?} after SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts it again (after [`ControlPlane::kill`] or while running: then
    /// killed first), on the same port and data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Starts it again like [`ControlPlane::restart`], with `env` in place of
    /// the environment variables it had.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.restart()
    }

    /// Whether the process has exited (it is then reaped).
    pub fn exited(&mut self) -> bool {
        matches!(
            self.child.as_mut().map(|c| c.try_wait()),
            Some(Ok(Some(_))) | None
        )
    }

    /// Stops the process with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The flags of a control plane on the etcd at `endpoint`: short store
/// deadlines and health probes, so tests see outages quickly; then `extra`.
fn etcd_args(endpoint: &str, extra: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--etcd".into(),
        endpoint.into(),
        "--store-timeout-ms".into(),
        "2000".into(),
        "--health-interval-ms".into(),
        "200".into(),
    ];
    args.extend(extra.into_iter().map(Into::into));
    args
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}
