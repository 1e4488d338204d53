//! `tether lsp`: the stdio bridge an editor's language client spawns, in the style of
//! `gopls -remote=auto`. It connects to the user's daemon (starting one when none runs, and
//! applying the version policy of [`crate::client`]), then copies bytes both ways without
//! parsing them, so it adds no more than two pipe hops to each message.

use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

pub fn run() -> anyhow::Result<i32> {
    // A first connection starts the daemon if needed and settles the version; the editor's own
    // `initialize` then goes through a fresh one.
    let probe = crate::client::connect()?;
    let mine = env!("CARGO_PKG_VERSION");
    let warning = (!probe.same_build()).then(|| {
        format!(
            "tether: the running daemon is {} and still serves sessions; this editor uses it \
             until they end (this tether {mine} takes over then; restart the language server to switch)",
            probe.daemon_description()
        )
    });
    drop(probe);
    let socket = crate::paths::socket();
    let stream = UnixStream::connect(&socket).with_context(|| format!("connecting to {}", socket.display()))?;
    // SAFETY: fd 1 is this process's stdout and stays open for its whole life.
    let mut stdout = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    if let Some(w) = warning {
        eprintln!("{w}");
        // window/showMessage may precede the answer to `initialize` (LSP 3.17).
        let msg =
            serde_json::json!({"jsonrpc": "2.0", "method": "window/showMessage", "params": {"type": 2, "message": w}});
        stdout.write_all(&crate::editor::framing::encode(msg.to_string().as_bytes()))?;
    }

    let editor_done = Arc::new(AtomicBool::new(false));
    let mut up = stream.try_clone().context("cloning the daemon socket")?;
    let done = editor_done.clone();
    std::thread::Builder::new().name("stdin".into()).spawn(move || {
        // SAFETY: fd 0 is this process's stdin.
        let mut stdin = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if up.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        done.store(true, Ordering::SeqCst);
        let _ = up.shutdown(std::net::Shutdown::Write);
    })?;

    let mut down = stream;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match down.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stdout.write_all(&buf[..n]).is_err() {
                    return Ok(0);
                }
            }
        }
    }
    // The daemon closed this connection. After the editor's `exit` (or when the editor left)
    // that is the normal end; when the daemon itself is gone, say so.
    if editor_done.load(Ordering::SeqCst) || UnixStream::connect(&socket).is_ok() {
        Ok(0)
    } else {
        eprintln!("tether lsp: the daemon closed the connection; see {}", crate::client::log_hint());
        Ok(1)
    }
}
