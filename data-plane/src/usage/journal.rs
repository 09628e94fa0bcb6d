//! The usage journal (DESIGN §7): every answered request's usage, on disk
//! before it is reported, so that a data plane killed and restarted with the
//! same files loses nothing it had answered.
//!
//! One append-only file: a magic line, then frames, each `[length: u32 LE]
//! [first 8 bytes of the payload's SHA-256][payload: a protobuf `Frame`]`.
//! A frame holds the records written together (a flush every few
//! milliseconds, not one per request), a record being the journal's id (its
//! first record, written once), one request's usage with its number, or a
//! mark: every record up to a number has been counted by the control plane.
//! A frame that is short or fails its checksum ends the journal there (the
//! process died mid-write): what follows it was never acknowledged to
//! anyone, since a record is reported only after its frame is written.
//!
//! The file is rewritten (to a temporary file, synced, renamed) when it is
//! opened and when it has grown past [`COMPACT_BYTES`], keeping the id, the
//! mark and the records after it.
//!
//! Writes reach the kernel at each flush, which is what survives a killed
//! process; they are synced to the disk about once a second, which is what
//! survives a crashed machine.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use sha2::{Digest, Sha256};
use sluice_proto::config::v1::UsageEntry;

const MAGIC: &[u8] = b"sluice usage journal v1\n";

/// A journal this big is rewritten without its counted records.
pub const COMPACT_BYTES: u64 = 8 << 20;

/// The most bytes one frame may claim: anything larger is damage.
const MAX_FRAME: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("usage journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a usage journal (its first line is not {:?})", String::from_utf8_lossy(MAGIC).trim_end())]
    NotAJournal { path: PathBuf },
}

#[derive(Clone, PartialEq, Message)]
struct Frame {
    #[prost(message, repeated, tag = "1")]
    records: Vec<Record>,
}

#[derive(Clone, PartialEq, Message)]
struct Record {
    #[prost(oneof = "Kind", tags = "1, 2, 3")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(string, tag = "1")]
    JournalId(String),
    #[prost(message, tag = "2")]
    Usage(Numbered),
    #[prost(uint64, tag = "3")]
    CountedThrough(u64),
}

#[derive(Clone, PartialEq, Message)]
struct Numbered {
    #[prost(uint64, tag = "1")]
    number: u64,
    #[prost(message, optional, tag = "2")]
    entry: Option<UsageEntry>,
}

/// What a journal held when it was opened.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Replayed {
    pub journal_id: String,
    /// Every record up to here was counted.
    pub counted_through: u64,
    /// The records after it, in order.
    pub pending: Vec<(u64, UsageEntry)>,
    /// The number of the last record written (counted or not).
    pub last_number: u64,
    /// A damaged tail was cut off (bytes dropped).
    pub truncated: u64,
}

/// The open journal.
pub struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
    /// Records waiting for the next flush.
    buffer: Vec<Record>,
    dirty: bool,
}

impl Journal {
    /// Opens the journal at `path` (made with a new id when absent), replays
    /// it, and rewrites it clean.
    pub fn open(
        path: &Path,
        new_id: impl FnOnce() -> String,
    ) -> Result<(Journal, Replayed), JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let replayed = match fs::read(path) {
            Ok(bytes) => replay(&bytes).ok_or_else(|| JournalError::NotAJournal {
                path: path.to_owned(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Replayed::default(),
            Err(e) => return Err(io(e)),
        };
        let mut replayed = replayed;
        if replayed.journal_id.is_empty() {
            replayed.journal_id = new_id();
        }
        let journal = rewrite(path, &replayed).map_err(io)?;
        Ok((journal, replayed))
    }

    /// Queues a request's usage for the next flush.
    pub fn append(&mut self, number: u64, entry: UsageEntry) {
        self.buffer.push(Record {
            kind: Some(Kind::Usage(Numbered {
                number,
                entry: Some(entry),
            })),
        });
    }

    /// Queues a mark: everything up to `number` was counted.
    pub fn counted_through(&mut self, number: u64) {
        self.buffer.push(Record {
            kind: Some(Kind::CountedThrough(number)),
        });
    }

    /// Writes what is queued, as one frame, to the kernel.
    pub fn flush(&mut self) -> Result<(), JournalError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let frame = Frame {
            records: std::mem::take(&mut self.buffer),
        };
        let bytes = encode_frame(&frame);
        self.file
            .write_all(&bytes)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.len += bytes.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Syncs what was written to the disk, if anything was since last time.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if !self.dirty {
            return Ok(());
        }
        self.file.sync_data().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.dirty = false;
        Ok(())
    }

    /// Whether something was written since the last sync.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// The file's size.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Rewrites the file with only what is still needed.
    pub fn compact(&mut self, state: &Replayed) -> Result<(), JournalError> {
        self.flush()?;
        *self = rewrite(&self.path, state).map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(())
    }
}

fn encode_frame(frame: &Frame) -> Vec<u8> {
    let payload = frame.encode_to_vec();
    let mut out = Vec::with_capacity(payload.len() + 12);
    // A frame over 4 GiB cannot be made: flushes are milliseconds apart.
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&Sha256::digest(&payload)[..8]);
    out.extend_from_slice(&payload);
    out
}

/// Reads a journal's bytes; `None` when they are not a journal at all.
fn replay(bytes: &[u8]) -> Option<Replayed> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let mut out = Replayed::default();
    loop {
        if rest.is_empty() {
            break;
        }
        let Some((payload, after)) = next_frame(rest) else {
            out.truncated = rest.len() as u64;
            break;
        };
        let Ok(frame) = Frame::decode(payload) else {
            out.truncated = rest.len() as u64;
            break;
        };
        rest = after;
        for record in frame.records {
            match record.kind {
                Some(Kind::JournalId(id)) => out.journal_id = id,
                Some(Kind::Usage(Numbered {
                    number,
                    entry: Some(entry),
                })) => {
                    out.last_number = out.last_number.max(number);
                    if number > out.counted_through {
                        out.pending.push((number, entry));
                    }
                }
                Some(Kind::CountedThrough(n)) => {
                    out.counted_through = out.counted_through.max(n);
                    out.last_number = out.last_number.max(n);
                    out.pending.retain(|(number, _)| *number > n);
                }
                Some(Kind::Usage(_)) | None => {}
            }
        }
    }
    Some(out)
}

/// The next whole, intact frame's payload and what follows it.
fn next_frame(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if len > MAX_FRAME {
        return None;
    }
    let sum = bytes.get(4..12)?;
    let payload = bytes.get(12..12 + len)?;
    (Sha256::digest(payload)[..8] == *sum).then(|| (payload, &bytes[12 + len..]))
}

/// Writes a fresh journal holding `state`, atomically replacing `path`.
fn rewrite(path: &Path, state: &Replayed) -> io::Result<Journal> {
    let mut records = vec![
        Record {
            kind: Some(Kind::JournalId(state.journal_id.clone())),
        },
        Record {
            kind: Some(Kind::CountedThrough(state.counted_through)),
        },
    ];
    records.extend(state.pending.iter().map(|(number, entry)| Record {
        kind: Some(Kind::Usage(Numbered {
            number: *number,
            entry: Some(entry.clone()),
        })),
    }));
    let mut bytes = MAGIC.to_vec();
    bytes.extend(encode_frame(&Frame { records }));
    let temporary = path.with_extension("tmp");
    {
        let mut f = File::create(&temporary)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let file = OpenOptions::new().append(true).open(path)?;
    Ok(Journal {
        path: path.to_owned(),
        file,
        len: bytes.len() as u64,
        buffer: Vec::new(),
        dirty: false,
    })
}

/// Reads a journal file's records without opening it for writing (tests,
/// tools).
pub fn read(path: &Path) -> Result<Replayed, JournalError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| JournalError::Io {
            path: path.to_owned(),
            source,
        })?;
    replay(&bytes).ok_or_else(|| JournalError::NotAJournal {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, requests: u64) -> UsageEntry {
        UsageEntry {
            key_id: key.into(),
            requests,
            prompt_tokens: 3,
            completion_tokens: 4,
            spend: 5,
            ..Default::default()
        }
    }

    #[test]
    fn records_survive_reopening_and_counted_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.journal");
        let (mut j, first) = Journal::open(&path, || "j1".into()).unwrap();
        assert_eq!(first.journal_id, "j1");
        assert!(first.pending.is_empty());
        for n in 1..=5 {
            j.append(n, entry("k", n));
        }
        j.flush().unwrap();
        j.counted_through(2);
        j.flush().unwrap();
        // Queued but never flushed: lost with the process, and never reported.
        j.append(6, entry("k", 6));
        drop(j);
        let (_, again) = Journal::open(&path, || unreachable!("it has an id")).unwrap();
        assert_eq!(again.journal_id, "j1");
        assert_eq!(again.counted_through, 2);
        assert_eq!(again.last_number, 5);
        let numbers: Vec<u64> = again.pending.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [3, 4, 5]);
        assert_eq!(again.pending[0].1, entry("k", 3));
        // Reopening rewrote it: the same state, and the file is small again.
        assert_eq!(read(&path).unwrap().pending, again.pending);
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_whole_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.journal");
        let (mut j, _) = Journal::open(&path, || "j1".into()).unwrap();
        j.append(1, entry("k", 1));
        j.flush().unwrap();
        j.append(2, entry("k", 2));
        j.flush().unwrap();
        drop(j);
        let whole = fs::read(&path).unwrap();
        for cut in 1..20 {
            fs::write(&path, &whole[..whole.len() - cut]).unwrap();
            let got = read(&path).unwrap();
            let numbers: Vec<u64> = got.pending.iter().map(|(n, _)| *n).collect();
            assert_eq!(numbers, [1], "cut {cut}");
            assert!(got.truncated > 0);
        }
        // A flipped byte inside the last frame: the same.
        let mut flipped = whole.clone();
        let at = flipped.len() - 3;
        flipped[at] ^= 0xff;
        fs::write(&path, &flipped).unwrap();
        assert_eq!(read(&path).unwrap().pending.len(), 1);
    }

    #[test]
    fn something_else_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.journal");
        fs::write(&path, b"{\"not\": \"a journal\"}").unwrap();
        assert!(matches!(
            Journal::open(&path, || "j".into()),
            Err(JournalError::NotAJournal { .. })
        ));
        assert_eq!(fs::read(&path).unwrap(), b"{\"not\": \"a journal\"}");
    }

    #[test]
    fn compaction_keeps_only_what_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.journal");
        let (mut j, mut state) = Journal::open(&path, || "j1".into()).unwrap();
        for n in 1..=1000 {
            j.append(n, entry("k", n));
        }
        j.counted_through(990);
        j.flush().unwrap();
        let big = j.bytes();
        state.counted_through = 990;
        state.pending = (991..=1000).map(|n| (n, entry("k", n))).collect();
        j.compact(&state).unwrap();
        assert!(j.bytes() < big / 10, "{} vs {big}", j.bytes());
        j.append(1001, entry("k", 1001));
        j.flush().unwrap();
        let got = read(&path).unwrap();
        assert_eq!(got.pending.len(), 11);
        assert_eq!(got.counted_through, 990);
    }
}
