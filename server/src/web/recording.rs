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
//!
//! The same files, written as the stream goes (each frame flushed), let an
//! administrator watch a tab live (`[templates.NAME] shadow = true`): the
//! watch plays the file from its start, then follows it. A template that is
//! watched but not recorded has its file deleted when the tab closes
//! (`kept` false). While someone watches, `watching/SESSION.WATCHER` says
//! who (refreshed every [`MARK_EVERY`]), and the user's page shows it.

use std::{
    io,
    os::unix::fs::DirBuilderExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufWriter};

use crate::domain::{catalog::Clipboard, time::now_ms};

/// The directory under DATA_DIR when `web.recordings` is not set.
pub const DIR_NAME: &str = "recordings";
/// How often recordings past `web.recordings_keep` are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// How often a watch refreshes its mark; a mark older than three times
/// this is a watch that ended without removing it.
pub const MARK_EVERY: Duration = Duration::from_secs(5);
/// A file kept only for watching, untouched this long, was left by a
/// server that stopped: the sweep deletes it.
const SPOOL_LEFT: Duration = Duration::from_secs(3600);
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
    /// Kept after the tab closed (`record = true`); false: only for
    /// watching it live, deleted at its end.
    #[serde(default = "kept_by_default")]
    pub kept: bool,
}

fn kept_by_default() -> bool {
    true
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
    /// Kept after the tab closes (`record`); false: for watching only.
    pub kept: bool,
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

/// A recording being read, frame by frame; one being made can be read as
/// it grows.
pub struct Player {
    file: tokio::fs::File,
    /// Bytes read and not yet returned (from `at`).
    buf: Vec<u8>,
    at: usize,
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
            kept: subject.kept,
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
        file.flush().await.map_err(|e| self.write_error(e))?;
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
        let mut player = Player {
            file,
            buf: Vec::new(),
            at: 0,
            id: id.to_string(),
        };
        let damaged = |why: &str| RecordingError::Damaged {
            id: id.to_string(),
            why: why.to_string(),
        };
        if !player.fill(MAGIC.len()).await? {
            return Err(damaged("it is shorter than its header"));
        }
        if player.take(MAGIC.len()) != MAGIC {
            return Err(damaged("it is not a recording of this version"));
        }
        Ok((meta, player))
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
            let Some(started) = started else { continue };
            if started >= before && !self.left_spool(id, name).await {
                continue;
            }
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => deleted += usize::from(name.ends_with(".json")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.write_error(e)),
            }
        }
        self.sweep_marks().await;
        Ok(deleted)
    }

    /// Whether `name` (of recording `id`) belongs to a file kept only for
    /// watching that nothing wrote for [`SPOOL_LEFT`]: its server stopped.
    async fn left_spool(&self, id: &str, name: &str) -> bool {
        if !name.ends_with(".json") {
            // Its `.rec` goes with its `.json`, below.
            return false;
        }
        let Ok(meta) = self.meta(id).await else {
            return false;
        };
        let rec = self.dir.join(format!("{id}.rec"));
        let quiet = unchanged_for(&rec)
            .await
            .is_none_or(|quiet| quiet >= SPOOL_LEFT);
        if meta.kept || !quiet {
            return false;
        }
        let _ = tokio::fs::remove_file(&rec).await;
        true
    }

    fn marks(&self) -> PathBuf {
        self.dir.join("watching")
    }

    /// Deletes the marks of watches that ended without removing them.
    async fn sweep_marks(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(self.marks()).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let stale = unchanged_for(&entry.path())
                .await
                .is_none_or(|age| age > MARK_EVERY * 3);
            if stale {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    /// Marks `session_id` as watched by `watcher` until the mark is dropped
    /// (refresh it every [`MARK_EVERY`]).
    pub async fn mark_watched(
        &self,
        session_id: &str,
        watcher: &str,
    ) -> Result<WatchMark, RecordingError> {
        let dir = self.marks();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| self.write_error(e))?;
        // Names the server made, hex: nothing of a request is a path.
        let path = dir.join(format!(
            "{}.{}",
            hex::encode(session_id),
            hex::encode(watcher)
        ));
        let mark = WatchMark { path };
        mark.refresh().await.map_err(|e| self.write_error(e))?;
        Ok(mark)
    }

    /// Who is watching `session_id` now.
    pub async fn watchers(&self, session_id: &str) -> Vec<String> {
        let prefix = format!("{}.", hex::encode(session_id));
        let mut who = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(self.marks()).await else {
            return who;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name();
            let Some(watcher) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            let fresh = unchanged_for(&entry.path())
                .await
                .is_some_and(|age| age <= MARK_EVERY * 3);
            let decoded = hex::decode(watcher)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let (true, Some(watcher)) = (fresh, decoded)
                && !who.contains(&watcher)
            {
                who.push(watcher);
            }
        }
        who.sort();
        who
    }
}

/// How long since `path` was last written; None when that cannot be told.
async fn unchanged_for(path: &Path) -> Option<Duration> {
    let modified = tokio::fs::metadata(path).await.ok()?.modified().ok()?;
    modified.elapsed().ok()
}

/// Someone watching a session; the mark goes when this is dropped.
pub struct WatchMark {
    path: PathBuf,
}

impl WatchMark {
    /// Says again that the watch goes on.
    pub async fn refresh(&self) -> io::Result<()> {
        tokio::fs::write(&self.path, b"").await
    }
}

impl Drop for WatchMark {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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
        self.file.write_all(bytes).await?;
        // Whole frames on disk at once: a watch reads them as they come.
        self.file.flush().await
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

    /// Notes, once, whether the tab's client asked for the clipboard's
    /// channel, in the `.json` (a watch joining now needs it).
    pub async fn client_asked_for_clipboard(&mut self, asked: bool) {
        if self.meta.client_clipboard.is_some() {
            return;
        }
        self.meta.client_clipboard = Some(asked);
        if let Err(error) = write_meta(&self.dir, &self.meta).await {
            tracing::warn!(recording = %self.meta.id, %error, "a recording's description could not be written");
        }
    }

    /// Ends the recording: its bytes on disk, then its end in its `.json`,
    /// with whether the client asked for the clipboard's channel. One kept
    /// only for watching is deleted.
    pub async fn finish(mut self, client_clipboard: Option<bool>) -> io::Result<Meta> {
        self.file.flush().await?;
        if !self.meta.kept {
            self.meta.ended_ms = Some(now_ms());
            // Its end first: a watch following it stops.
            write_meta(&self.dir, &self.meta).await?;
            let id = &self.meta.id;
            tokio::fs::remove_file(self.dir.join(format!("{id}.rec"))).await?;
            tokio::fs::remove_file(self.dir.join(format!("{id}.json"))).await?;
            return Ok(self.meta);
        }
        self.file.get_ref().sync_all().await?;
        self.meta.ended_ms = Some(now_ms());
        self.meta.client_clipboard = client_clipboard.or(self.meta.client_clipboard);
        write_meta(&self.dir, &self.meta).await?;
        Ok(self.meta)
    }
}

impl Player {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reads until `n` bytes are buffered; false when the file has fewer
    /// now (a later call may find more, when it is being written).
    async fn fill(&mut self, n: usize) -> Result<bool, RecordingError> {
        while self.buf.len() - self.at < n {
            if self.at > 0 {
                self.buf.drain(..self.at);
                self.at = 0;
            }
            let had = self.buf.len();
            self.buf.resize(had + 64 * 1024, 0);
            let read = self.file.read(&mut self.buf[had..]).await;
            let got = *read.as_ref().unwrap_or(&0);
            self.buf.truncate(had + got);
            match read {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) => {
                    return Err(RecordingError::Damaged {
                        id: self.id.clone(),
                        why: e.to_string(),
                    });
                }
            }
        }
        Ok(true)
    }

    /// The next `n` buffered bytes (`fill(n)` said they are there).
    fn take(&mut self, n: usize) -> &[u8] {
        let start = self.at;
        self.at += n;
        &self.buf[start..self.at]
    }

    /// The next frame; None at the end of what is written. A frame not
    /// whole yet is not read: the next call, once the file has grown, reads
    /// it (a recording the server stopped while writing ends there).
    pub async fn next(&mut self) -> Result<Option<Frame>, RecordingError> {
        if !self.fill(9).await? {
            return Ok(None);
        }
        let head = &self.buf[self.at..self.at + 9];
        let kind = head[0];
        let at_ms = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        let len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
        if !matches!(kind, KIND_RESPONSE | KIND_RDP) || len > MAX_FRAME {
            return Err(RecordingError::Damaged {
                id: self.id.clone(),
                why: format!("a frame of kind {kind} and {len} bytes"),
            });
        }
        if !self.fill(9 + len as usize).await? {
            return Ok(None);
        }
        let bytes = self.take(9 + len as usize)[9..].to_vec();
        Ok(Some(Frame { kind, at_ms, bytes }))
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
            kept: true,
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
    async fn a_recording_being_made_is_read_as_it_grows_and_a_watch_only_one_goes_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let recordings = Recordings::new(dir.path().to_path_buf(), Duration::from_secs(3600));
        let mut recorder = recordings
            .start(&Subject {
                kept: false,
                ..subject()
            })
            .await
            .unwrap();
        let id = recorder.id().to_string();
        recorder.response(b"response").await.unwrap();
        let (meta, mut player) = recordings.play(&id).await.unwrap();
        assert!(!meta.kept);
        assert_eq!(player.next().await.unwrap().unwrap().bytes, b"response");
        assert_eq!(player.next().await.unwrap(), None);
        recorder.to_browser(b"more").await.unwrap();
        assert_eq!(player.next().await.unwrap().unwrap().bytes, b"more");
        // Half a frame on disk is not read until it is whole.
        let rec = dir.path().join(format!("{id}.rec"));
        let whole = {
            recorder.to_browser(b"split frame").await.unwrap();
            std::fs::read(&rec).unwrap()
        };
        // A copy cut inside the last frame, as a watch may find the file.
        let cut = whole.len() - 4;
        std::fs::write(dir.path().join("half"), &whole[..cut]).unwrap();
        let mut half = Player {
            file: tokio::fs::File::open(dir.path().join("half"))
                .await
                .unwrap(),
            buf: Vec::new(),
            at: 0,
            id: id.clone(),
        };
        assert!(half.fill(8).await.unwrap());
        half.take(8);
        for expected in [&b"response"[..], b"more"] {
            assert_eq!(half.next().await.unwrap().unwrap().bytes, expected);
        }
        assert_eq!(half.next().await.unwrap(), None);
        {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.path().join("half"))
                .unwrap();
            file.write_all(&whole[cut..]).unwrap();
        }
        assert_eq!(half.next().await.unwrap().unwrap().bytes, b"split frame");
        // Kept for watching only: gone at its end.
        let ended = recorder.finish(Some(true)).await.unwrap();
        assert!(ended.ended_ms.is_some());
        assert!(!rec.exists());
        assert!(recordings.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_watch_marks_its_session_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let recordings = Recordings::new(dir.path().to_path_buf(), Duration::from_secs(3600));
        assert!(recordings.watchers("s-1").await.is_empty());
        let carol = recordings.mark_watched("s-1", "carol").await.unwrap();
        let dave = recordings.mark_watched("s-1", "dave/../x").await.unwrap();
        let other = recordings.mark_watched("s-2", "erin").await.unwrap();
        assert_eq!(recordings.watchers("s-1").await, ["carol", "dave/../x"]);
        carol.refresh().await.unwrap();
        drop(dave);
        assert_eq!(recordings.watchers("s-1").await, ["carol"]);
        drop((carol, other));
        assert!(recordings.watchers("s-1").await.is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("watching"))
                .unwrap()
                .count(),
            0
        );
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
