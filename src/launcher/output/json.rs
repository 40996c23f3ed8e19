//! `--output json`: stdout holds only the command's one document, kept here and printed
//! once when the command ends; every line, the container's included, goes to stderr
//! through the terminal sink underneath.

use std::sync::Mutex;

use super::sink::{Progress, Shard, Sink, Stream};
use super::terminal::Terminal;

/// The JSON sink: the document, over a terminal sink writing on stderr.
pub(crate) struct Json {
    lines: Terminal,
    document: Mutex<Option<String>>,
}

impl Json {
    /// `lines` for everything but the document.
    pub(crate) fn new(lines: Terminal) -> Self {
        Json {
            lines,
            document: Mutex::new(None),
        }
    }
}

impl Sink for Json {
    fn log_stream(&self) -> Stream {
        self.lines.log_stream()
    }

    fn line(&self, stream: Stream, line: &str) {
        self.lines.line(stream, line);
    }

    fn progress(&self, progress: &Progress, shard: Option<&Shard>) -> bool {
        self.lines.progress(progress, shard)
    }

    fn status(&self, line: &str, spinner: String) {
        self.lines.status(line, spinner);
    }

    /// The last document kept is the one printed.
    fn document(&self, render: &dyn Fn() -> String) {
        *self.document.lock().unwrap_or_else(|e| e.into_inner()) = Some(render());
    }

    fn take_document(&self) -> Option<String> {
        self.document
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn finish(&self) {
        self.lines.finish();
    }

    fn captured(&self) -> Vec<String> {
        self.lines.captured()
    }

    #[cfg(test)]
    fn live_bar(&self) -> Option<indicatif::ProgressBar> {
        self.lines.live_bar()
    }
}
