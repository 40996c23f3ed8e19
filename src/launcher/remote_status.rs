//! A command's exit status across ECS Exec. The session-manager-plugin exits 0 however
//! the remote command ended, so `shell --command CMD` runs CMD under a wrapper that
//! prints a marker with its status as the last line; the launcher passes the plugin's
//! output through unchanged except that line, and exits with the status. A random nonce
//! per session keeps the command's own output from forging the marker.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What the marker line starts with; the nonce and `:STATUS` follow.
const MARKER: &str = "everruns-admin-exit-status:";

/// A command wrapped so that its exit status comes back in its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wrapped {
    /// What ExecuteCommand runs: `/bin/sh`, running CMD with `sh -c`, then the marker.
    pub command: String,
    marker: String,
}

impl Wrapped {
    /// Wraps `command` with a fresh nonce.
    pub fn new(command: &str) -> Self {
        Self::with_nonce(command, fastrand::u64(..))
    }

    fn with_nonce(command: &str, nonce: u64) -> Self {
        let marker = format!("{MARKER}{nonce:016x}:");
        // CMD and the marker are arguments of the outer shell, never parsed by it, so
        // any quoting in CMD reaches the inner `sh -c` as the operator wrote it; the
        // SSM agent splits the whole line as a shell would, and the single quotes hold.
        let command = format!(
            "/bin/sh -c {} everruns-admin {} {}",
            quote(r#"/bin/sh -c "$1"; printf '%s%d\n' "$2" "$?""#),
            quote(command),
            quote(&marker)
        );
        Wrapped { command, marker }
    }

    /// A filter for the session's output that takes the marker out.
    pub fn filter(&self) -> StatusFilter {
        StatusFilter {
            marker: self.marker.clone().into_bytes(),
            matched: 0,
            state: State::Searching,
        }
    }
}

/// `text` in single quotes for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Before the marker; `matched` bytes of it are held back.
    Searching,
    /// After the marker, reading the status up to the end of its line.
    Reading(Vec<u8>),
    /// After the marker's line; the status, if it was one.
    Done(Option<u8>),
}

/// Passes a session's output on, minus the marker line, and keeps the status it
/// carried. Works on any chunking: a marker split across reads is still found.
#[derive(Debug)]
pub(crate) struct StatusFilter {
    marker: Vec<u8>,
    matched: usize,
    state: State,
}

impl StatusFilter {
    /// Appends to `out` what of `bytes` is the command's own output.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &byte in bytes {
            match &mut self.state {
                State::Done(_) => out.push(byte),
                State::Reading(digits) => match byte {
                    b'\n' => {
                        let status = std::str::from_utf8(digits)
                            .ok()
                            .and_then(|d| d.parse::<u8>().ok());
                        self.state = State::Done(status);
                    }
                    // The remote terminal ends lines with CRLF.
                    b'\r' => {}
                    _ => digits.push(byte),
                },
                State::Searching => self.search(byte, out),
            }
        }
    }

    fn search(&mut self, byte: u8, out: &mut Vec<u8>) {
        if self.marker[self.matched] == byte {
            self.matched += 1;
            if self.matched == self.marker.len() {
                self.matched = 0;
                self.state = State::Reading(Vec::new());
            }
            return;
        }
        // Not the marker after all: keep the longest tail of what was held plus this
        // byte that could still start it, and let the rest through.
        let mut seen = self.marker[..self.matched].to_vec();
        seen.push(byte);
        let keep = (1..=seen.len().min(self.marker.len() - 1))
            .rev()
            .find(|&n| seen[seen.len() - n..] == self.marker[..n])
            .unwrap_or(0);
        out.extend_from_slice(&seen[..seen.len() - keep]);
        self.matched = keep;
    }

    /// At the end of the output: releases anything held back, and returns the status,
    /// or `None` when the output ended without a complete marker line.
    pub fn finish(self, out: &mut Vec<u8>) -> Option<u8> {
        match self.state {
            State::Done(status) => status,
            State::Reading(_) => None,
            State::Searching => {
                out.extend_from_slice(&self.marker[..self.matched]);
                None
            }
        }
    }
}

/// Copies `from` to `to` through `filter` until `from` ends, and returns the status it
/// found. Output that cannot be written (a closed pipe) is dropped, but reading goes on:
/// the status comes last.
pub(crate) async fn relay(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut filter: StatusFilter,
) -> Option<u8> {
    let mut buffer = vec![0; 8192];
    let mut out = Vec::with_capacity(buffer.len());
    let mut writable = true;
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        out.clear();
        filter.push(&buffer[..read], &mut out);
        if writable && !out.is_empty() {
            writable = to.write_all(&out).await.is_ok() && to.flush().await.is_ok();
        }
    }
    out.clear();
    let status = filter.finish(&mut out);
    if writable && !out.is_empty() {
        let _ = to.write_all(&out).await;
        let _ = to.flush().await;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(wrapped: &Wrapped, chunks: &[&[u8]]) -> (Vec<u8>, Option<u8>) {
        let mut filter = wrapped.filter();
        let mut out = Vec::new();
        for chunk in chunks {
            filter.push(chunk, &mut out);
        }
        let status = filter.finish(&mut out);
        (out, status)
    }

    fn sh(line: &str) -> std::process::Output {
        // The agent splits the line as a shell would; `sh -c` does the same here.
        std::process::Command::new("/bin/sh")
            .args(["-c", line])
            .output()
            .unwrap()
    }

    #[test]
    fn the_wrapper_reports_the_status_and_keeps_the_output() {
        for (command, output, status) in [
            ("exit 3", "", 3),
            ("echo 'it'\"'\"'s'; false", "it's\n", 1),
            ("printf 'no newline'", "no newline", 0),
            ("echo abc | tr a-z A-Z; exit 0", "ABC\n", 0),
            ("kill -TERM $$", "", 143),
        ] {
            let wrapped = Wrapped::with_nonce(command, 0xfeed);
            let ran = sh(&wrapped.command);
            let (out, got) = through(&wrapped, &[&ran.stdout]);
            assert_eq!(got, Some(status), "{command}: {:?}", ran);
            assert_eq!(String::from_utf8(out).unwrap(), output, "{command}");
        }
    }

    #[test]
    fn a_marker_split_across_reads_is_found_and_removed() {
        let wrapped = Wrapped::with_nonce("x", 7);
        let text = format!("a\r\neeve{}42\r\nafter", wrapped.marker);
        let bytes = text.as_bytes();
        for split in 0..bytes.len() {
            let (out, status) = through(&wrapped, &[&bytes[..split], &bytes[split..]]);
            assert_eq!(status, Some(42), "split at {split}");
            assert_eq!(out, b"a\r\neeveafter", "split at {split}");
        }
        let byte_by_byte: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(through(&wrapped, &byte_by_byte).1, Some(42));
    }

    #[test]
    fn output_without_the_marker_has_no_status_and_loses_nothing() {
        let wrapped = Wrapped::with_nonce("x", 7);
        let partial = &wrapped.marker[..10];
        let text = format!("everruns-admin-exit-status:0000000000000008:1\nend {partial}");
        let (out, status) = through(&wrapped, &[text.as_bytes()]);
        assert_eq!(status, None, "another nonce is not the marker");
        assert_eq!(out, text.as_bytes());
        let cut = format!("{}12", wrapped.marker);
        assert_eq!(through(&wrapped, &[cut.as_bytes()]).1, None, "no line end");
    }
}
