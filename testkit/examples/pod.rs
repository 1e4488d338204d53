//! A local pod for tests that drive tether from outside Rust (the VS Code end-to-end test).
//!
//! `cargo run -p tether-testkit --example pod -- [NAME]` (root) starts a pod whose target has
//! `POD_GREETING` in its environment and `/app/message.txt` in its files, and whose network has
//! `web.svc.cluster.local` (HTTP). It prints one line, `ready pid=PID netns=NAME root=DIR`, then
//! reads commands on stdin: `stats` prints `stats http=N dns=N`. End of input, SIGINT, SIGTERM
//! or SIGHUP tear the pod down (it prints `stopped`).

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tether_testkit::PodSpec;

/// The variable only the target has.
const GREETING: &str = "hello from inside the e2e pod";
/// The file only the target has.
const MESSAGE: &str = "this file exists only in the pod";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> anyhow::Result<()> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "e2e".to_string());
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
    let pod = PodSpec::new(&name).env("POD_GREETING", GREETING).file("/app/message.txt", MESSAGE).start()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready pid={} netns={} root={}", pod.pid, pod.netns, pod.root.display())?;
    out.flush()?;

    let (tx, rx) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });
    while !STOP.load(Ordering::SeqCst) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(cmd)) if cmd.trim() == "stats" => {
                writeln!(out, "stats http={} dns={}", pod.http_hits(), pod.dns_queries())?;
                out.flush()?;
            }
            Ok(Some(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    pod.stop()?;
    writeln!(out, "stopped")?;
    Ok(())
}
