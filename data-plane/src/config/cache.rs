//! The snapshot cache file (`--snapshot-cache`): the last applied config,
//! kept on disk so a data plane can start serving while the control plane is
//! unreachable (DESIGN §6, static stability).
//!
//! # Format
//!
//! ```text
//! offset  size  field
//!      0     8  magic "SLUICESC"
//!      8     4  format version, u32 little-endian (1)
//!     12     8  payload length in bytes, u64 little-endian
//!     20    32  SHA-256 of the payload
//!     52     …  payload: a protobuf-encoded sluice.config.v1.Snapshot
//! ```
//!
//! A file that fails any check (magic, version, length, checksum, decoding,
//! or the snapshot's own validation) is refused as a whole and never served.
//!
//! # Writing
//!
//! Written atomically: a temporary file in the same directory, fsynced,
//! renamed over the old one, then the directory fsynced, so a crash leaves
//! the old file or the new one, never a mix. The file is readable by its
//! owner only: it may hold provider keys. [`run_writer`] does this off the
//! update path, in the background, always writing the newest config and
//! skipping those a burst superseded.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use prost::Message;
use prost::bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::config::snapshot::{ApiKeys, Config};
use crate::config::wire::SnapshotWire;
use crate::metrics::Metrics;

pub const MAGIC: [u8; 8] = *b"SLUICESC";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// Why a cache file was refused. Each message says which check failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is not a Sluice snapshot cache (bad magic bytes)")]
    BadMagic { path: PathBuf },
    #[error(
        "{path} has cache format version {found}; this data plane reads version {FORMAT_VERSION}"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("{path} is truncated: {found} bytes where {expected} were expected")]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path} has {extra} bytes after the payload its header declares")]
    TrailingBytes { path: PathBuf, extra: u64 },
    #[error("{path} is corrupt: its payload does not match the header's SHA-256")]
    ChecksumMismatch { path: PathBuf },
    #[error("{path} passed its checksum but does not decode as a snapshot: {source}")]
    Decode {
        path: PathBuf,
        source: prost::DecodeError,
    },
}

/// A snapshot read back from the cache, and when it was written.
#[derive(Debug)]
pub struct Cached {
    pub snapshot: SnapshotWire,
    pub written_at: SystemTime,
}

/// Reads the cache at `path`: `Ok(None)` when there is no file yet.
pub fn read(path: &Path) -> Result<Option<Cached>, CacheError> {
    let read_err = |source| CacheError::Read {
        path: path.to_owned(),
        source,
    };
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let written_at = fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    let snapshot = decode(path, Bytes::from(bytes))?;
    Ok(Some(Cached {
        snapshot,
        written_at,
    }))
}

/// Checks the header and decodes the payload; keys are sliced out of
/// `bytes`, not copied.
fn decode(path: &Path, bytes: Bytes) -> Result<SnapshotWire, CacheError> {
    let path = || path.to_owned();
    let truncated = |expected: u64| CacheError::Truncated {
        path: path(),
        expected,
        found: bytes.len() as u64,
    };
    // Magic first: a short file that is not ours is "not a cache", not
    // "truncated".
    if bytes.len() < MAGIC.len() {
        if MAGIC.starts_with(&bytes) {
            return Err(truncated(HEADER_LEN as u64));
        }
        return Err(CacheError::BadMagic { path: path() });
    }
    let (magic, rest) = bytes.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(CacheError::BadMagic { path: path() });
    }
    if bytes.len() < HEADER_LEN {
        return Err(truncated(HEADER_LEN as u64));
    }
    let (version, rest) = rest.split_at(4);
    let version = u32::from_le_bytes(version.try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(CacheError::UnsupportedVersion {
            path: path(),
            found: version,
        });
    }
    let (len, rest) = rest.split_at(8);
    let len = u64::from_le_bytes(len.try_into().unwrap_or_default());
    let (checksum, payload) = rest.split_at(32);
    let payload_start = HEADER_LEN;
    let expected = (HEADER_LEN as u64).saturating_add(len);
    match (payload.len() as u64).cmp(&len) {
        std::cmp::Ordering::Less => return Err(truncated(expected)),
        std::cmp::Ordering::Greater => {
            return Err(CacheError::TrailingBytes {
                path: path(),
                extra: payload.len() as u64 - len,
            });
        }
        std::cmp::Ordering::Equal => {}
    }
    if Sha256::digest(payload).as_slice() != checksum {
        return Err(CacheError::ChecksumMismatch { path: path() });
    }
    SnapshotWire::decode(bytes.slice(payload_start..)).map_err(|source| CacheError::Decode {
        path: path(),
        source,
    })
}

/// Writes `config` to `path` atomically. Blocking; streams the payload, so a
/// large config is not copied into one buffer first.
pub fn write(path: &Path, config: &Config) -> Result<(), CacheError> {
    let write_err = |source| CacheError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        write_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the cache path names no file",
        ))
    })?;
    // The pid keeps two processes pointed at one path (a mistake, but a
    // possible one) from writing into each other's temporary file.
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = write_temp(&tmp, config).and_then(|()| {
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    });
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    Ok(())
}

fn write_temp(tmp: &Path, config: &Config) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(tmp)?;
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        len: 0,
    };
    // The header is known only after the payload: write a placeholder,
    // stream the payload, then come back.
    out.inner.write_all(&[0; HEADER_LEN])?;
    config.encode_snapshot(ApiKeys::AsReceived, &mut out)?;
    let HashingWriter { inner, hasher, len } = out;
    let mut file = inner.into_inner().map_err(|e| e.into_error())?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&hasher.finalize());
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&header)?;
    file.sync_all()
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    // Makes the rename itself durable.
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Persists each config published on `configs` to `path`, in the background.
/// While one write runs, newer configs replace each other in the `watch`, so
/// a burst of deltas costs one more write, of the newest. Returns when
/// `shutdown` resolves, after writing a config that is still pending, or
/// when the sender is gone.
pub async fn run_writer(
    path: PathBuf,
    mut configs: watch::Receiver<Option<Arc<Config>>>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stop = tokio::select! {
            changed = configs.changed() => changed.is_err(),
            () = &mut shutdown => true,
        };
        if stop && !configs.has_changed().unwrap_or(false) {
            return;
        }
        let Some(config) = configs.borrow_and_update().clone() else {
            continue;
        };
        let path = path.clone();
        let started = Instant::now();
        let revision = config.revision();
        let result = tokio::task::spawn_blocking(move || write(&path, &config)).await;
        match result {
            Ok(Ok(())) => {
                metrics.cache_written(revision);
                tracing::debug!(
                    revision,
                    took_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "snapshot cache written"
                )
            }
            Ok(Err(e)) => {
                metrics.cache_write_failed();
                tracing::error!(revision, error = %e, "snapshot cache not written; the config in memory is unaffected");
            }
            Err(e) => {
                metrics.cache_write_failed();
                tracing::error!(revision, error = %e, "snapshot cache writer failed");
            }
        }
        if stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sluice_proto::admin::v1::{Deployment, Key};
    use sluice_proto::config::v1::Snapshot;

    use super::*;

    fn config(revision: i64) -> Config {
        Config::load(
            Snapshot {
                revision,
                deployments: vec![Deployment {
                    id: "d1".into(),
                    model_name: "gpt-4o".into(),
                    api_key: "sk-literal-kept-in-the-cache".into(),
                    ..Default::default()
                }],
                keys: (0..100)
                    .map(|i| Key {
                        key_id: hex::encode(Sha256::digest(format!("sk-{i}"))),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            &HashMap::new(),
        )
        .expect("valid")
    }

    fn written(dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("snapshot.pb");
        write(&path, &config(7)).expect("written");
        path
    }

    #[test]
    fn round_trip_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = written(&dir);
        write(&path, &config(8)).expect("overwritten");
        let cached = read(&path).expect("valid").expect("present");
        assert_eq!(cached.snapshot.revision, 8);
        assert_eq!(cached.snapshot.keys.len(), 100);
        assert_eq!(
            cached.snapshot.deployments[0].api_key,
            "sk-literal-kept-in-the-cache"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["snapshot.pb"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn missing_file_is_not_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read(&dir.path().join("none.pb")).expect("ok").is_none());
    }

    #[test]
    fn corrupt_byte_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = written(&dir);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&path, &bytes).expect("write");
        let err = read(&path).expect_err("refused");
        assert!(matches!(err, CacheError::ChecksumMismatch { .. }), "{err}");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn truncated_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = written(&dir);
        let bytes = fs::read(&path).expect("read");
        for len in [bytes.len() - 1, HEADER_LEN + 3, HEADER_LEN - 1, 3, 0] {
            fs::write(&path, &bytes[..len]).expect("write");
            let err = read(&path).expect_err("refused");
            assert!(matches!(err, CacheError::Truncated { .. }), "{len}: {err}");
        }
    }

    #[test]
    fn wrong_version_magic_or_trailing_bytes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = written(&dir);
        let bytes = fs::read(&path).expect("read");

        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&2u32.to_le_bytes());
        fs::write(&path, &other).expect("write");
        let err = read(&path).expect_err("refused");
        assert!(
            matches!(err, CacheError::UnsupportedVersion { found: 2, .. }),
            "{err}"
        );

        let mut other = bytes.clone();
        other[0] = b'X';
        fs::write(&path, &other).expect("write");
        assert!(matches!(
            read(&path).expect_err("refused"),
            CacheError::BadMagic { .. }
        ));

        let mut other = bytes;
        other.push(0);
        fs::write(&path, &other).expect("write");
        assert!(matches!(
            read(&path).expect_err("refused"),
            CacheError::TrailingBytes { extra: 1, .. }
        ));
    }

    #[test]
    fn checksummed_garbage_is_refused_as_undecodable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot.pb");
        let payload = [0xff_u8; 16];
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&Sha256::digest(payload));
        bytes.extend_from_slice(&payload);
        fs::write(&path, &bytes).expect("write");
        assert!(matches!(
            read(&path).expect_err("refused"),
            CacheError::Decode { .. }
        ));
    }

    #[tokio::test]
    async fn writer_persists_the_newest_config_and_flushes_on_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot.pb");
        let (tx, rx) = watch::channel(None);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(run_writer(
            path.clone(),
            rx,
            Arc::new(Metrics::new()),
            async move {
                let _ = stop_rx.await;
            },
        ));
        for r in 1..=20 {
            tx.send_replace(Some(Arc::new(config(r))));
        }
        let _ = stop_tx.send(());
        writer.await.expect("writer");
        let cached = read(&path).expect("valid").expect("present");
        assert_eq!(cached.snapshot.revision, 20);
    }
}
