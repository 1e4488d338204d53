//! `tether exec`: run a program as if inside the target.
//!
//! The CLI asks the daemon for a session, joins it *itself* (the seccomp filter is installed on
//! this very process), then `execve`s the program, which inherits the filter: static binaries
//! and Go programs are covered without any library being loaded, and the exit code is the
//! program's own because the program replaces us. `--layer` instead launches the way an editor
//! does (`LD_PRELOAD` of the layer), which is what that path's tests use.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::json;
use tether_protocol::env as vars;

use crate::session::SessionInfo;

pub struct ExecArgs {
    pub target: Option<String>,
    pub config: Option<PathBuf>,
    pub layer: bool,
    pub program: Vec<OsString>,
}

/// Never returns on success: the process becomes the program.
pub fn run(args: ExecArgs) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let config = args.config.map(|c| if c.is_absolute() { c } else { cwd.join(c) });
    if let Some(c) = &config {
        if !c.exists() {
            bail!("config file {} does not exist", c.display());
        }
    }
    let mut stream = crate::client::connect()?;
    // The daemon may have been started from another terminal: say which cluster this one means.
    let kube = crate::kube::Source::from_env();
    let info = crate::client::request(
        &mut stream,
        "createSession",
        json!({"target": args.target, "config": config, "cwd": cwd, "kubeconfig": kube.kubeconfig, "kube_context": kube.context}),
    )?;
    drop(stream);
    let info: SessionInfo = serde_json::from_value(info).context("the daemon's session answer")?;

    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for k in &info.env_unset {
        env.remove(&OsString::from(k));
    }
    for (k, v) in &info.env {
        env.insert(k.into(), v.into());
    }
    let program = &args.program[0];
    let path = find_program(program, env.get(&OsString::from("PATH")))?;

    if args.layer {
        let mut preload = info.layer.clone().into_os_string();
        if let Some(old) = env.get(&OsString::from("LD_PRELOAD")).filter(|v| !v.is_empty()) {
            preload.push(":");
            preload.push(old);
        }
        env.insert("LD_PRELOAD".into(), preload);
        env.insert(vars::SOCKET.into(), info.socket.clone().into());
        env.insert(vars::SESSION.into(), info.session.clone().into());
        env.insert(vars::SESSION_TOKEN.into(), info.token.clone().into());
        env.insert(vars::REQUIRE.into(), if info.require { "1" } else { "0" }.into());
    } else {
        let socket = info.socket.to_string_lossy();
        match tether_bootstrap::attach(&socket, &info.session, &info.token) {
            Ok(outcome) => tracing::debug!(?outcome, "joined session {}", info.session),
            Err(e) if info.require => bail!("{e}"),
            Err(e) => eprintln!("{e}; running without tether because layer.require is false"),
        }
    }
    exec(&path, &args.program, &env)
}

fn find_program(program: &OsString, path_var: Option<&OsString>) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(program);
    if program.as_bytes().contains(&b'/') {
        return Ok(p);
    }
    let search = path_var.cloned().unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&search) {
        let candidate = dir.join(&p);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    bail!("{}: command not found in PATH", p.display())
}

fn is_executable(p: &std::path::Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else { return false };
    p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
}

fn exec(path: &std::path::Path, argv: &[OsString], env: &BTreeMap<OsString, OsString>) -> anyhow::Result<i32> {
    let c = |s: &[u8]| CString::new(s).context("an argument or variable contains a NUL byte");
    let cpath = c(path.as_os_str().as_bytes())?;
    let cargs = argv.iter().map(|a| c(a.as_bytes())).collect::<anyhow::Result<Vec<_>>>()?;
    let cenv =
        env.iter().map(|(k, v)| c(&[k.as_bytes(), b"=", v.as_bytes()].concat())).collect::<anyhow::Result<Vec<_>>>()?;
    let mut pargs: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    pargs.push(std::ptr::null());
    let mut penv: Vec<*const libc::c_char> = cenv.iter().map(|a| a.as_ptr()).collect();
    penv.push(std::ptr::null());
    unsafe { libc::execve(cpath.as_ptr(), pargs.as_ptr(), penv.as_ptr()) };
    let e = std::io::Error::last_os_error();
    eprintln!("tether: cannot run {}: {e}", path.display());
    Ok(if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 })
}
