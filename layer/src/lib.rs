//! `libtether_layer.so`: the bootstrap a dynamically linked program loads with `LD_PRELOAD`.
//!
//! Editors launch programs through their debuggers, so tether cannot run code before `execve`
//! as `tether exec` does. Instead the launch's environment preloads this library, whose
//! constructor joins the session named by `TETHER_SESSION` before `main` runs. All real work
//! happens in the daemon; this library only bootstraps (see `tether_bootstrap`).
//!
//! A process that cannot be intercepted must not run unseen: the constructor prints one line
//! and exits with status 1, unless `TETHER_REQUIRE=0` (from `layer.require: false`).

use tether_bootstrap::Outcome;

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    let (Ok(socket), Ok(session), Ok(token)) =
        (std::env::var("TETHER_SOCKET"), std::env::var("TETHER_SESSION"), std::env::var("TETHER_SESSION_TOKEN"))
    else {
        return; // not launched by tether
    };
    match tether_bootstrap::attach(&socket, &session, &token) {
        Ok(Outcome::Attached | Outcome::AlreadyAttached | Outcome::Skipped) => {}
        Err(e) => {
            if std::env::var("TETHER_REQUIRE").as_deref() == Ok("0") {
                eprintln!("{e}; running without tether because layer.require is false");
            } else {
                eprintln!("{e}");
                unsafe { libc::_exit(1) };
            }
        }
    }
}
