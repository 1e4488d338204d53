//! The daemon's log: `daemon.log` in the user's state directory, rolled over by size
//! (`daemon.log.1`, `.2`, `.3` keep the older parts), written off the async threads through
//! `tracing-appender`'s non-blocking writer. `tether logs` prints it.
//!
//! Size, not date, decides the roll: an idle daemon writes little and a busy one much, and the
//! current file keeps one stable name for `tail -f` and for error hints.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// A log file rolls over when it would exceed this.
pub const MAX_BYTES: u64 = 8 << 20;
/// Older parts kept.
pub const KEEP: usize = 3;

fn part(dir: &Path, i: usize) -> PathBuf {
    if i == 0 { dir.join("daemon.log") } else { dir.join(format!("daemon.log.{i}")) }
}

/// A file writer that rolls `daemon.log` over by size.
pub struct Rolling {
    dir: PathBuf,
    file: File,
    written: u64,
}

impl Rolling {
    pub fn open(dir: &Path) -> std::io::Result<Rolling> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new().create(true).append(true).open(part(dir, 0))?;
        let written = file.metadata()?.len();
        Ok(Rolling { dir: dir.to_path_buf(), file, written })
    }

    fn roll(&mut self) -> std::io::Result<()> {
        for i in (0..KEEP).rev() {
            let _ = std::fs::rename(part(&self.dir, i), part(&self.dir, i + 1));
        }
        self.file = OpenOptions::new().create(true).append(true).open(part(&self.dir, 0))?;
        self.written = 0;
        Ok(())
    }
}

impl Write for Rolling {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > MAX_BYTES {
            self.roll()?;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Sets up the daemon's logging; keep the guard alive (it flushes on drop). Also to stderr
/// when that is a terminal (`tether daemon` run by hand).
pub fn init_daemon() -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let dir = crate::paths::state_dir();
    let file = Rolling::open(&dir).with_context(|| format!("opening the log in {}", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG").unwrap_or_else(|_| "info".into());
    let tty = unsafe { libc::isatty(2) } == 1;
    // A failed write (the terminal of `tether daemon` closed) must not panic the logging
    // thread: the subscriber would report it with `eprintln!`, which panics.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).log_internal_errors(false);
    if tty {
        builder.with_writer(writer.and(std::io::stderr)).init();
    } else {
        builder.with_writer(writer).init();
    }
    Ok(guard)
}

/// `tether logs`: the last `lines` lines (across a roll-over), then new ones with `follow`.
pub fn show(lines: usize, follow: bool) -> anyhow::Result<i32> {
    let dir = crate::paths::state_dir();
    let mut all: Vec<String> = Vec::new();
    for i in (0..=KEEP).rev() {
        if let Ok(f) = File::open(part(&dir, i)) {
            all.extend(std::io::BufReader::new(f).lines().map_while(Result::ok));
        }
    }
    if all.is_empty() && !follow {
        println!("no daemon log yet at {}", part(&dir, 0).display());
        return Ok(0);
    }
    let start = all.len().saturating_sub(lines);
    let mut out = std::io::stdout().lock();
    for l in &all[start..] {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(0);
    }
    let path = part(&dir, 0);
    let mut pos = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(mut f) = File::open(&path) else { continue };
        let len = f.metadata()?.len();
        if len < pos {
            pos = 0; // rolled over
        }
        if len > pos {
            f.seek(std::io::SeekFrom::Start(pos))?;
            let mut chunk = Vec::new();
            f.read_to_end(&mut chunk)?;
            out.write_all(&chunk)?;
            out.flush()?;
            pos = len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rolls_over_by_size_and_keeps_three_parts() {
        let dir = std::env::temp_dir().join(format!("tether-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = Rolling::open(&dir).unwrap();
        let line = vec![b'x'; (MAX_BYTES / 2) as usize];
        for _ in 0..9 {
            log.write_all(&line).unwrap();
        }
        assert!(part(&dir, 1).exists() && part(&dir, 3).exists());
        assert!(!part(&dir, 4).exists());
        for i in 0..=KEEP {
            assert!(std::fs::metadata(part(&dir, i)).unwrap().len() <= MAX_BYTES);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_roll_keeps_the_parts_contiguous_and_in_order() {
        let dir = std::env::temp_dir().join(format!("tether-logs-order-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = Rolling::open(&dir).unwrap();
        // Lines of 1 MiB: 8 per part, so 40 lines roll over 4 times.
        let line = |n: usize| format!("{n:08} {}\n", "x".repeat((1 << 20) - 10));
        for n in 0..40 {
            log.write_all(line(n).as_bytes()).unwrap();
            let rolls = n / 8;
            for i in 1..=rolls.min(KEEP) {
                assert!(part(&dir, i).exists(), "after line {n} ({rolls} rolls) daemon.log.{i} is missing");
            }
        }
        drop(log);
        let mut seen = Vec::new();
        for i in (0..=KEEP).rev() {
            let text = std::fs::read_to_string(part(&dir, i)).unwrap();
            seen.extend(text.lines().map(|l| l[..8].parse::<usize>().unwrap()));
        }
        assert_eq!(seen, (8..40).collect::<Vec<_>>(), "the last 4 parts, oldest first, nothing skipped");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
