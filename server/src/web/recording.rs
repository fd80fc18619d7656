//! Session recordings (`[templates.NAME] record = true`): what the gateway
//! sent one browser tab, with when it sent it, kept for auditors to replay
//! in the portal (`replay.rs`).
//!
//! A recording is two files in `web.recordings` (DATA_DIR/recordings by
//! default; with several replicas, storage they share):
//! - `ID.rec`: `DAASREC1`, then frames: a kind (1 byte), the milliseconds
//!   since the recording started (u32, little-endian), a length (u32, LE)
//!   and that many bytes. Kind 1 is the RDCleanPath response the browser
//!   got (the first frame, once); kind 2 a piece of the RDP stream it got.
//!   What the browser sent (keys, the password the gateway gives xrdp) is
//!   never kept.
//! - `ID.json`: whose desktop, who had it open, its template, when the
//!   recording started and ended, and how many bytes it holds.
//!
//! `ID` is `STARTED_MS-RANDOM` (16 hex digits). Both files are 0600 in a
//! 0700 directory; recordings older than `web.recordings_keep` are deleted.

use std::{
    io,
    os::unix::fs::DirBuilderExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader, BufWriter};

use crate::domain::{catalog::Clipboard, time::now_ms};

/// The directory under DATA_DIR when `web.recordings` is not set.
pub const DIR_NAME: &str = "recordings";
/// How often recordings past `web.recordings_keep` are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// The first bytes of every `.rec` file.
const MAGIC: &[u8; 8] = b"DAASREC1";
/// A frame's kind: the RDCleanPath response the browser got.
pub const KIND_RESPONSE: u8 = 1;
/// A frame's kind: RDP bytes the browser got.
pub const KIND_RDP: u8 = 2;
/// The largest frame a reader takes (the gateway writes at most 32 KiB).
const MAX_FRAME: u32 = 1 << 20;

/// Why a recording cannot be made or read. The messages are for
/// administrators: they name the file or the setting to check.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot write the recording in {dir} (web.recordings): {source}")]
    Write {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the recordings in {dir} (web.recordings): {source}")]
    Read {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no recording {0}: it was deleted (web.recordings_keep) or is on another server's disk"
    )]
    Unknown(String),
    #[error("recording {id} is damaged: {why}")]
    Damaged { id: String, why: String },
}

/// What a recording is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub id: String,
    pub session_id: String,
    /// Whose desktop it is.
    pub owner: String,
    /// Who had it open in the tab.
    pub user: String,
    pub template: String,
    /// The template's clipboard policy then: the page's client had the
    /// clipboard's channel unless it was "off", and a replay's must too.
    #[serde(default)]
    pub clipboard: Clipboard,
    /// Whether the tab's client asked for the clipboard's channel (a
    /// changed page may have, under "off"); None: not known.
    #[serde(default)]
    pub client_clipboard: Option<bool>,
    pub started_ms: i64,
    /// None while it is being made, or when the server stopped before it
    /// could write the end.
    pub ended_ms: Option<i64>,
    /// RDP bytes it holds.
    pub bytes: u64,
}

/// Where recordings are kept, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recordings {
    dir: PathBuf,
    keep: Duration,
}

/// What the gateway records one relay for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub session_id: String,
    pub owner: String,
    pub user: String,
    pub template: String,
    pub clipboard: Clipboard,
}

/// Where and what the gateway records for one relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub to: std::sync::Arc<Recordings>,
    pub subject: Subject,
}

/// A recording being made.
pub struct Recorder {
    file: BufWriter<tokio::fs::File>,
    started: Instant,
    meta: Meta,
    dir: PathBuf,
}

/// One frame of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    /// Milliseconds since the recording started.
    pub at_ms: u32,
    pub bytes: Vec<u8>,
}

/// A recording being read, frame by frame.
pub struct Player {
    file: BufReader<tokio::fs::File>,
    id: String,
}

/// Whether `id` has the shape of a recording's name (nothing else is ever
/// joined to the directory).
fn valid_id(id: &str) -> bool {
    match id.split_once('-') {
        Some((ms, random)) => {
            !ms.is_empty()
                && ms.len() <= 19
                && ms.bytes().all(|b| b.is_ascii_digit())
                && random.len() == 16
                && random
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        None => false,
    }
}

impl Recordings {
    pub fn new(dir: PathBuf, keep: Duration) -> Recordings {
        Recordings { dir, keep }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write_error(&self, source: io::Error) -> RecordingError {
        RecordingError::Write {
            dir: self.dir.clone(),
            source,
        }
    }

    fn read_error(&self, source: io::Error) -> RecordingError {
        RecordingError::Read {
            dir: self.dir.clone(),
            source,
        }
    }

    /// Starts a recording of `subject`: its `.json` says it is being made.
    pub async fn start(&self, subject: &Subject) -> Result<Recorder, RecordingError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| self.write_error(e))?;
        let started_ms = now_ms();
        let id = format!("{started_ms}-{}", &super::signin::random_hex()[..16]);
        let meta = Meta {
            id: id.clone(),
            session_id: subject.session_id.clone(),
            owner: subject.owner.clone(),
            user: subject.user.clone(),
            template: subject.template.clone(),
            clipboard: subject.clipboard,
            client_clipboard: None,
            started_ms,
            ended_ms: None,
            bytes: 0,
        };
        write_meta(&self.dir, &meta)
            .await
            .map_err(|e| self.write_error(e))?;
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.dir.join(format!("{id}.rec")))
            .await
            .map_err(|e| self.write_error(e))?;
        let mut file = BufWriter::with_capacity(64 * 1024, file);
        file.write_all(MAGIC)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(Recorder {
            file,
            started: Instant::now(),
            meta,
            dir: self.dir.clone(),
        })
    }

    /// The recordings, newest first. A `.json` that cannot be read is
    /// skipped (and logged): one bad file hides no other.
    pub async fn list(&self) -> Result<Vec<Meta>, RecordingError> {
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.read_error(e)),
        };
        let mut all = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| self.read_error(e))? {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if !valid_id(id) {
                continue;
            }
            match self.meta(id).await {
                Ok(meta) => all.push(meta),
                Err(e) => tracing::warn!(error = %e, "a recording's description is unreadable"),
            }
        }
        all.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    /// Recording `id`'s description.
    pub async fn meta(&self, id: &str) -> Result<Meta, RecordingError> {
        if !valid_id(id) {
            return Err(RecordingError::Unknown(id.to_string()));
        }
        let text = match tokio::fs::read(self.dir.join(format!("{id}.json"))).await {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RecordingError::Unknown(id.to_string()));
            }
            Err(e) => return Err(self.read_error(e)),
        };
        let meta: Meta = serde_json::from_slice(&text).map_err(|e| RecordingError::Damaged {
            id: id.to_string(),
            why: e.to_string(),
        })?;
        if meta.id != id {
            return Err(RecordingError::Damaged {
                id: id.to_string(),
                why: format!("its description names {}", meta.id),
            });
        }
        Ok(meta)
    }

    /// Opens recording `id` to read its frames.
    pub async fn play(&self, id: &str) -> Result<(Meta, Player), RecordingError> {
        let meta = self.meta(id).await?;
        let file = match tokio::fs::File::open(self.dir.join(format!("{id}.rec"))).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RecordingError::Unknown(id.to_string()));
            }
            Err(e) => return Err(self.read_error(e)),
        };
        let mut file = BufReader::with_capacity(64 * 1024, file);
        let mut magic = [0u8; 8];
        let damaged = |why: &str| RecordingError::Damaged {
            id: id.to_string(),
            why: why.to_string(),
        };
        file.read_exact(&mut magic)
            .await
            .map_err(|_| damaged("it is shorter than its header"))?;
        if &magic != MAGIC {
            return Err(damaged("it is not a recording of this version"));
        }
        Ok((
            meta,
            Player {
                file,
                id: id.to_string(),
            },
        ))
    }

    /// Deletes the recordings that started more than `web.recordings_keep`
    /// before `now_ms`, and files left without their pair as long; returns
    /// the recordings deleted.
    pub async fn sweep(&self, now_ms: i64) -> Result<usize, RecordingError> {
        let keep_ms = i64::try_from(self.keep.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms.saturating_sub(keep_ms);
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.read_error(e)),
        };
        let mut deleted = 0;
        while let Some(entry) = entries.next_entry().await.map_err(|e| self.read_error(e))? {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(id) = name
                .strip_suffix(".json")
                .or_else(|| name.strip_suffix(".rec"))
            else {
                continue;
            };
            // The name says when it started: no need to read it.
            let started = id
                .split_once('-')
                .filter(|_| valid_id(id))
                .and_then(|(ms, _)| ms.parse::<i64>().ok());
            if started.is_none_or(|started| started >= before) {
                continue;
            }
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => deleted += usize::from(name.ends_with(".json")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.write_error(e)),
            }
        }
        Ok(deleted)
    }
}

/// Deletes old recordings now and every `every` until `stop`.
pub async fn sweep_until(
    recordings: std::sync::Arc<Recordings>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        match recordings.sweep(now_ms()).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "recordings past web.recordings_keep deleted"),
            Err(error) => tracing::warn!(%error, "old recordings could not be deleted"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Writes `meta` as `ID.json` (0600) through a temporary file renamed over it.
async fn write_meta(dir: &Path, meta: &Meta) -> io::Result<()> {
    let text = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    let path = dir.join(format!("{}.json", meta.id));
    let temp = dir.join(format!(".{}.json.tmp", meta.id));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .await?;
    file.write_all(&text).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&temp, &path).await
}

impl Recorder {
    pub fn id(&self) -> &str {
        &self.meta.id
    }

    async fn frame(&mut self, kind: u8, bytes: &[u8]) -> io::Result<()> {
        let at = u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|len| *len <= MAX_FRAME)
            .ok_or_else(|| io::Error::other("a frame larger than 1 MiB"))?;
        self.file.write_u8(kind).await?;
        self.file.write_all(&at.to_le_bytes()).await?;
        self.file.write_all(&len.to_le_bytes()).await?;
        self.file.write_all(bytes).await
    }

    /// Keeps the RDCleanPath response the browser is about to get.
    pub async fn response(&mut self, der: &[u8]) -> io::Result<()> {
        self.frame(KIND_RESPONSE, der).await
    }

    /// Keeps RDP bytes the browser is about to get.
    pub async fn to_browser(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.frame(KIND_RDP, bytes).await?;
        self.meta.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Ends the recording: its bytes on disk, then its end in its `.json`,
    /// with whether the client asked for the clipboard's channel.
    pub async fn finish(mut self, client_clipboard: Option<bool>) -> io::Result<Meta> {
        self.file.flush().await?;
        self.file.get_ref().sync_all().await?;
        self.meta.ended_ms = Some(now_ms());
        self.meta.client_clipboard = client_clipboard;
        write_meta(&self.dir, &self.meta).await?;
        Ok(self.meta)
    }
}

impl Player {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next frame; None at the end. A frame cut short (the server
    /// stopped while writing it) ends the recording there.
    pub async fn next(&mut self) -> Result<Option<Frame>, RecordingError> {
        let mut head = [0u8; 9];
        match self.file.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => {
                return Err(RecordingError::Damaged {
                    id: self.id.clone(),
                    why: e.to_string(),
                });
            }
        }
        let [kind, a0, a1, a2, a3, l0, l1, l2, l3] = head;
        let at_ms = u32::from_le_bytes([a0, a1, a2, a3]);
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        if !matches!(kind, KIND_RESPONSE | KIND_RDP) || len > MAX_FRAME {
            return Err(RecordingError::Damaged {
                id: self.id.clone(),
                why: format!("a frame of kind {kind} and {len} bytes"),
            });
        }
        let mut bytes = vec![0u8; len as usize];
        match self.file.read_exact(&mut bytes).await {
            Ok(_) => Ok(Some(Frame { kind, at_ms, bytes })),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(RecordingError::Damaged {
                id: self.id.clone(),
                why: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            session_id: "s-1".into(),
            owner: "alice".into(),
            user: "alice".into(),
            template: "debian".into(),
            clipboard: Clipboard::Both,
        }
    }

    #[tokio::test]
    async fn a_recording_reads_back_as_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let recordings = Recordings::new(dir.path().join("rec"), Duration::from_secs(3600));
        let mut recorder = recordings.start(&subject()).await.unwrap();
        let id = recorder.id().to_string();
        assert!(valid_id(&id), "{id}");
        // Listed while it is being made, without an end.
        let listed = recordings.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].ended_ms, None);
        recorder.response(b"response").await.unwrap();
        recorder.to_browser(b"first").await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        recorder.to_browser(&[7u8; 40_000]).await.unwrap();
        let meta = recorder.finish(None).await.unwrap();
        assert_eq!(meta.bytes, 40_005);
        assert!(meta.ended_ms.is_some_and(|end| end >= meta.started_ms));
        assert_eq!(recordings.list().await.unwrap(), vec![meta.clone()]);

        let (read, mut player) = recordings.play(&id).await.unwrap();
        assert_eq!(read, meta);
        let mut frames = Vec::new();
        while let Some(frame) = player.next().await.unwrap() {
            frames.push(frame);
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(
            (frames[0].kind, &frames[0].bytes[..]),
            (KIND_RESPONSE, &b"response"[..])
        );
        assert_eq!(
            (frames[1].kind, &frames[1].bytes[..]),
            (KIND_RDP, &b"first"[..])
        );
        assert_eq!(frames[2].bytes, vec![7u8; 40_000]);
        assert!(frames[2].at_ms >= frames[1].at_ms + 30);

        for (file, mode) in [
            (dir.path().join("rec"), 0o700),
            (dir.path().join(format!("rec/{id}.rec")), 0o600),
            (dir.path().join(format!("rec/{id}.json")), 0o600),
        ] {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::metadata(&file).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o777,
                mode,
                "{}",
                file.display()
            );
        }
    }

    #[tokio::test]
    async fn a_cut_recording_plays_up_to_the_cut_and_a_foreign_name_opens_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let recordings = Recordings::new(dir.path().to_path_buf(), Duration::from_secs(3600));
        let mut recorder = recordings.start(&subject()).await.unwrap();
        let id = recorder.id().to_string();
        recorder.to_browser(b"whole").await.unwrap();
        recorder.to_browser(b"cut short").await.unwrap();
        recorder.file.flush().await.unwrap();
        drop(recorder);
        let path = dir.path().join(format!("{id}.rec"));
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        let (meta, mut player) = recordings.play(&id).await.unwrap();
        assert_eq!(meta.ended_ms, None);
        assert_eq!(player.next().await.unwrap().unwrap().bytes, b"whole");
        assert_eq!(player.next().await.unwrap(), None);

        for id in ["../etc/passwd", "1-abc", "x-0123456789abcdef", ""] {
            assert!(matches!(
                recordings.play(id).await,
                Err(RecordingError::Unknown(_))
            ));
        }
        std::fs::write(dir.path().join(format!("{id}.rec")), b"NOTAREC!").unwrap();
        assert!(matches!(
            recordings.play(&id).await,
            Err(RecordingError::Damaged { .. })
        ));
    }

    #[tokio::test]
    async fn the_sweep_deletes_what_is_older_than_the_keep() {
        let dir = tempfile::tempdir().unwrap();
        let recordings = Recordings::new(dir.path().to_path_buf(), Duration::from_secs(10));
        let old = recordings.start(&subject()).await.unwrap();
        let old = old.finish(None).await.unwrap();
        let young = recordings
            .start(&subject())
            .await
            .unwrap()
            .finish(None)
            .await
            .unwrap();
        // Someone else's file is never touched.
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        assert_eq!(recordings.sweep(young.started_ms + 5_000).await.unwrap(), 0);
        assert_eq!(recordings.list().await.unwrap().len(), 2);
        // 10 s after the first started, only it goes (both share a
        // millisecond at worst: then both).
        let swept = recordings.sweep(old.started_ms + 10_001).await.unwrap();
        let left = recordings.list().await.unwrap();
        assert_eq!(swept + left.len(), 2);
        assert!(left.iter().all(|m| m.started_ms > old.started_ms));
        assert!(!dir.path().join(format!("{}.rec", old.id)).exists());
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(
            recordings.sweep(young.started_ms + 60_000).await.unwrap(),
            left.len()
        );
        assert!(recordings.list().await.unwrap().is_empty());
    }
}
