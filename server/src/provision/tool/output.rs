//! Follows a tool's output and turns it into the lines its events show. A
//! tool's output goes to unlinked files that the server tails, not to
//! pipes: if the server dies, the tool can still write (Terraform would
//! otherwise die of SIGPIPE in the middle of writing its state). Lines are
//! cut to [`MAX_LINE`]; Terraform's `-json` lines are shown by their
//! message, their error diagnostics noted for the failure's summary.

use std::time::Duration;

use daas_api::v1::OutputStream;
use tokio::{
    io::AsyncReadExt,
    sync::{mpsc, watch},
};

use super::failure::Summary;

/// Longest line kept in an event; longer lines are cut.
pub const MAX_LINE: usize = 4096;

/// A file the tool writes and the server reads, already unlinked: (the
/// tool's end, the server's end).
pub(super) fn output_file() -> std::io::Result<(std::fs::File, std::fs::File)> {
    let named = tempfile::NamedTempFile::new()?;
    let reader = named.reopen()?;
    let writer = named.into_file();
    Ok((writer, reader))
}

/// Follows a tool's output file, sending each line, until the tool has
/// exited and the file is read to its end.
pub(super) async fn tail_lines(
    file: std::fs::File,
    stream: OutputStream,
    tx: mpsc::Sender<(OutputStream, String)>,
    exited: watch::Receiver<bool>,
) {
    let mut file = tokio::fs::File::from_std(file);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut idle = Duration::from_millis(5);
    loop {
        // Read the flag before the file: an exit seen here means every byte
        // the tool wrote is already in the file.
        let done = *exited.borrow();
        let n = match file.read(&mut chunk).await {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            if done {
                if !line.is_empty() && !cut {
                    let _ = tx.send((stream, clean_line(&line))).await;
                }
                return;
            }
            tokio::time::sleep(idle).await;
            idle = (idle * 2).min(Duration::from_millis(100));
            continue;
        }
        idle = Duration::from_millis(5);
        for &byte in &chunk[..n] {
            if byte == b'\n' {
                if !cut && tx.send((stream, clean_line(&line))).await.is_err() {
                    return;
                }
                line.clear();
                cut = false;
            } else if !cut {
                line.push(byte);
                if line.len() > MAX_LINE {
                    // Sent now, cut; the rest of this line is skipped.
                    if tx.send((stream, clean_line(&line))).await.is_err() {
                        return;
                    }
                    line.clear();
                    cut = true;
                }
            }
        }
    }
}

/// A line as an event carries it: no end-of-line, valid UTF-8, at most
/// [`MAX_LINE`] bytes.
pub fn clean_line(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let mut text = String::from_utf8_lossy(raw).into_owned();
    if text.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The lines to show for one line of `terraform -json` output, noting its
/// error diagnostics for the failure's summary. A line that is not JSON is
/// shown as it is.
pub(super) fn terraform_lines(raw: &str, summary: &mut Summary) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(raw) else {
        summary.see(raw);
        return vec![raw.to_string()];
    };
    let message = value
        .get("@message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    let mut lines: Vec<String> = message.lines().map(str::to_string).collect();
    if let Some(diagnostic) = value.get("diagnostic") {
        let field = |name: &str| {
            diagnostic
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let detail = field("detail");
        lines.extend(detail.lines().map(|l| format!("  {l}")));
        if field("severity") == "error" {
            summary.diagnostic(&field("address"), &field("summary"), &detail);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cleaned_and_cut() {
        assert_eq!(clean_line(b"hello\r\n"), "hello");
        assert_eq!(clean_line(b"caf\xc3\xa9\n"), "café");
        assert_eq!(clean_line(b"bad \xff byte"), "bad \u{fffd} byte");
        let long = vec![b'x'; MAX_LINE + 10];
        assert_eq!(clean_line(&long).len(), MAX_LINE + '…'.len_utf8());
    }

    #[test]
    fn terraform_json_is_shown_as_text_and_failures_use_its_diagnostics() {
        let mut summary = Summary::default();
        let shown = terraform_lines(
            r#"{"@level":"info","@message":"terraform_data.vm: (local-exec): creating desktop-abc","type":"provision_progress"}"#,
            &mut summary,
        );
        assert_eq!(
            shown,
            ["terraform_data.vm: (local-exec): creating desktop-abc"]
        );
        let shown = terraform_lines(
            r#"{"@level":"error","@message":"Error: local-exec provisioner error","type":"diagnostic","diagnostic":{"severity":"error","summary":"local-exec provisioner error","detail":"Error running command 'exit 1': exit status 1. Output: Error: simulated hypervisor failure\n","address":"terraform_data.post_create"}}"#,
            &mut summary,
        );
        assert_eq!(shown.len(), 2, "{shown:?}");
        // A later error diagnostic does not replace the first.
        terraform_lines(
            r#"{"@level":"error","@message":"Error: other","type":"diagnostic","diagnostic":{"severity":"error","summary":"other","detail":""}}"#,
            &mut summary,
        );
        assert_eq!(
            summary.best().unwrap(),
            "terraform_data.post_create: local-exec provisioner error (Error running command \
             'exit 1': exit status 1. Output: Error: simulated hypervisor failure)"
        );
        let mut summary = Summary::default();
        assert_eq!(terraform_lines("not json", &mut summary), ["not json"]);
        assert_eq!(summary.best().unwrap(), "not json");
    }
}
