//! Starts the real `sluice-data-plane` binary on a free loopback port,
//! pointed at one or more control planes, and reads its health, metrics and
//! applied configuration over HTTP. Killed on drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use prost::Message;
use sluice_proto::config::v1::Snapshot;

use crate::control_plane::{DATA_PLANE_TOKEN, binary, free_port};

/// The workspace's own build of the data plane, next to the tests.
fn workspace_build() -> anyhow::Result<PathBuf> {
    binary("sluice-data-plane")
}

pub struct DataPlane {
    /// The executable: the workspace's build, or another build of it.
    program: PathBuf,
    child: Option<Child>,
    port: u16,
    node_id: String,
    control_planes: Vec<String>,
    cache: PathBuf,
    log: PathBuf,
    token: String,
    /// More command-line arguments, after the harness's own.
    args: Vec<String>,
    /// More environment variables.
    env: Vec<(String, String)>,
    http: reqwest::Client,
}

impl DataPlane {
    /// A data plane named `node_id` with its snapshot cache and log in `dir`.
    pub fn start(control_planes: &[String], node_id: &str, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with_token(control_planes, node_id, dir, DATA_PLANE_TOKEN)
    }

    /// Like [`DataPlane::start`], presenting `token` as its data-plane token.
    pub fn start_with_token(
        control_planes: &[String],
        node_id: &str,
        dir: &Path,
        token: &str,
    ) -> anyhow::Result<Self> {
        Self::launch(
            workspace_build()?,
            control_planes,
            node_id,
            dir,
            token,
            &[],
            &[],
        )
    }

    /// Like [`DataPlane::start_with_env`], running `program` instead of the
    /// workspace's build (an instrumented one, for profile-guided builds).
    pub fn start_program(
        program: &Path,
        control_planes: &[String],
        node_id: &str,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::launch(
            program.to_path_buf(),
            control_planes,
            node_id,
            dir,
            DATA_PLANE_TOKEN,
            &[],
            env,
        )
    }

    fn launch(
        program: PathBuf,
        control_planes: &[String],
        node_id: &str,
        dir: &Path,
        token: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut dp = Self {
            program,
            child: None,
            port: 0,
            node_id: node_id.to_string(),
            control_planes: control_planes.to_vec(),
            cache: dir.join(format!("{node_id}.snapshot.pb")),
            log: dir.join(format!("{node_id}.log")),
            token: token.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            http: crate::http_client(),
        };
        dp.restart()?;
        Ok(dp)
    }

    /// Like [`DataPlane::start`], with more command-line arguments
    /// (`["--idle-timeout-ms", "500"]`).
    pub fn start_with_args(
        control_planes: &[String],
        node_id: &str,
        dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_with_env(control_planes, node_id, dir, args, &[])
    }

    /// Like [`DataPlane::start_with_args`], with more environment variables
    /// (`[("HTTPS_PROXY", "http://proxy:3128")]`).
    pub fn start_with_env(
        control_planes: &[String],
        node_id: &str,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::launch(
            workspace_build()?,
            control_planes,
            node_id,
            dir,
            DATA_PLANE_TOKEN,
            args,
            env,
        )
    }

    /// Starts (again) with the same node id, cache file and port when free.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        if self.port == 0 || std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err() {
            self.port = free_port()?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.program)
            .arg("--control-plane")
            .arg(self.control_planes.join(","))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--node-id")
            .arg(&self.node_id)
            .arg("--snapshot-cache")
            .arg(&self.cache)
            .arg("--label")
            .arg("env=test")
            .args(&self.args)
            .env("SLUICE_DATA_PLANE_TOKEN", &self.token)
            .env("SLUICE_LOG", "info,sluice_data_plane=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning sluice-data-plane")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("data plane exited with {status}:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("data plane not listening after 20s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory (current, peak) of the process, in bytes, from /proc.
    pub fn rss(&self) -> Option<(u64, u64)> {
        crate::control_plane::rss_of(self.pid()?)
    }

    /// How many times each of the process's threads (by id) has been
    /// switched in so far, voluntarily or not, from /proc: each wake-up is
    /// one.
    pub fn context_switches(&self) -> Option<BTreeMap<u32, u64>> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid()?)).ok()?;
        let mut switches = BTreeMap::new();
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread that ended since the listing counts no more.
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            let count = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
                .sum();
            switches.insert(tid, count);
        }
        Some(switches)
    }

    /// Restarts pointed at other control planes (same node id and cache).
    pub fn restart_with(&mut self, control_planes: &[String]) -> anyhow::Result<()> {
        self.control_planes = control_planes.to_vec();
        self.restart()
    }

    /// Stops the process as Kubernetes does (SIGTERM) and waits for it to
    /// exit: how it ended, or an error if it was still running after 10 s
    /// (then it is killed).
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("the data plane is not running")?;
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {} failed: {sent}", child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the data plane was still running 10 s after SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn cache_path(&self) -> &Path {
        &self.cache
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` followed by `path`: where clients call it.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET /health/readiness`: status code and body.
    pub async fn readiness(&self) -> anyhow::Result<(u16, String)> {
        let r = self.http.get(self.url("/health/readiness")).send().await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    /// Waits until ready (or fails with the last answer).
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let last = self.readiness().await;
            if matches!(last, Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not ready after {within:?}: {last:?}\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The value of a Prometheus metric (first sample whose line starts with `name`).
    /// `GET /metrics`: the Prometheus text exposition.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }

    /// The metrics once no API request is in flight: every request is
    /// recorded just after its answer is written, and the in-flight gauge
    /// goes down last, so a test reads its requests' counts here.
    pub async fn metrics_once_idle(&self) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.metrics().await?;
            if sample(&text, "sluice_requests_in_flight") == Some(0.0) {
                return Ok(text);
            }
            if Instant::now() > deadline {
                anyhow::bail!("requests still in flight after 10 s:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.metrics().await?;
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((metric, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let bare = metric.split('{').next().unwrap_or(metric);
            if bare == name {
                return Ok(value.trim().parse()?);
            }
        }
        bail!("metric {name} not found in:\n{text}")
    }

    /// The applied configuration, from `/debug/config`.
    pub async fn config(&self) -> anyhow::Result<Snapshot> {
        let r = self
            .http
            .get(self.url("/debug/config"))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("/debug/config answered {}", r.status());
        }
        Ok(Snapshot::decode(r.bytes().await?)?)
    }

    /// `GET /debug/routing`: each group's deployments with their routing
    /// state, as JSON.
    pub async fn routing(&self) -> anyhow::Result<serde_json::Value> {
        let r = self
            .http
            .get(self.url("/debug/routing"))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("/debug/routing answered {}", r.status());
        }
        Ok(serde_json::from_slice(&r.bytes().await?)?)
    }

    /// Waits until the applied revision is at least `revision`.
    pub async fn wait_for_revision(&self, revision: i64, within: Duration) -> anyhow::Result<()> {
        self.wait_for_metric("sluice_config_revision", revision, within)
            .await
            .map_err(|at| {
                anyhow::anyhow!(
                    "at revision {at}, not {revision}, after {within:?}:\n{}",
                    self.log()
                )
            })
    }

    /// Waits until the snapshot cache on disk (written in the background)
    /// holds at least `revision`.
    pub async fn wait_for_cache(&self, revision: i64, within: Duration) -> anyhow::Result<()> {
        self.wait_for_metric("sluice_config_cache_revision", revision, within)
            .await
            .map_err(|at| {
                anyhow::anyhow!("the cache holds revision {at}, not {revision}, after {within:?}")
            })
    }

    /// Polls the revision gauge `metric` until it reaches `revision`; on
    /// timeout, the revision it held.
    async fn wait_for_metric(
        &self,
        metric: &str,
        revision: i64,
        within: Duration,
    ) -> Result<(), i64> {
        let deadline = Instant::now() + within;
        loop {
            let at = self.metric(metric).await.unwrap_or(0.0) as i64;
            if at >= revision {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(at);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The first sample of metric `name` in a Prometheus text exposition.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(metric, _)| metric.split('{').next() == Some(name))
        .and_then(|(_, value)| value.trim().parse().ok())
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.kill();
    }
}
