//! `tether`: the CLI and the daemon in one binary. See ARCHITECTURE.md for the map.

mod agent;
mod cli;
mod client;
mod intercept;
mod paths;
mod server;
mod session;
mod target;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tether", version, about = "Run local programs as if inside a target")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run PROGRAM locally as if it ran inside the target.
    Exec {
        /// The target: pid:<PID> (default: `target.path` of the config file).
        #[arg(long)]
        target: Option<String>,
        /// The config file (default: .tether/tether.json when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Bootstrap through LD_PRELOAD of the layer, as editor launches do (dynamic programs only).
        #[arg(long)]
        layer: bool,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        program: Vec<OsString>,
    },
    /// Say whether PATH would be read locally or from the target, and which rule decides.
    ExplainPath {
        #[arg(long)]
        config: Option<PathBuf>,
        path: String,
    },
    /// Run the daemon in the foreground (`tether daemon stop` stops a running one).
    Daemon {
        #[arg(value_parser = ["stop"])]
        action: Option<String>,
    },
    /// Show the main job on a built-in local demo target (needs root).
    Demo {
        /// A program to run instead of the built-in tour.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        program: Vec<OsString>,
    },
    /// List the daemon's sessions.
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Exec { target, config, layer, program } => {
            init_cli_logging();
            cli::exec::run(cli::exec::ExecArgs { target, config, layer, program })
        }
        Command::ExplainPath { config, path } => explain_path(config, &path),
        Command::Daemon { action: Some(_) } => stop_daemon(),
        Command::Daemon { action: None } => run_daemon(),
        Command::Status { json } => status(json),
        Command::Demo { program } => cli::demo::run(program),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("tether: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_cli_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn run_daemon() -> anyhow::Result<i32> {
    let dir = paths::state_dir();
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("daemon.log"))?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::sync::Mutex::new(log)).init();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(server::run())?;
    Ok(0)
}

fn stop_daemon() -> anyhow::Result<i32> {
    match std::os::unix::net::UnixStream::connect(paths::socket()) {
        Ok(mut s) => {
            client::request(&mut s, "stop", serde_json::Value::Null)?;
            println!("daemon stopping");
        }
        Err(_) => println!("no daemon is running"),
    }
    Ok(0)
}

fn status(json: bool) -> anyhow::Result<i32> {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(paths::socket()) else {
        println!("no daemon is running");
        return Ok(0);
    };
    let v = client::request(&mut s, "sessions", serde_json::Value::Null)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let sessions = v["sessions"].as_array().cloned().unwrap_or_default();
    println!("daemon {} — {} session(s)", v["version"].as_str().unwrap_or("?"), sessions.len());
    for s in sessions {
        println!(
            "  {}  {}  processes {}  connections {}  files {}  dns {}",
            s["id"].as_str().unwrap_or(""),
            s["target"].as_str().unwrap_or(""),
            s["processes"].as_array().map_or(0, Vec::len),
            s["connections"],
            s["files_read"],
            s["dns_lookups"]
        );
        for e in s["errors"].as_array().into_iter().flatten() {
            println!("    error: {}", e.as_str().unwrap_or(""));
        }
    }
    Ok(0)
}

fn explain_path(config: Option<PathBuf>, path: &str) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let (cfg, _) = match config {
        Some(p) => (tether_config::load(&p)?, Some(p)),
        None => tether_config::discover(&cwd)?,
    };
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let ctx = tether_config::fs::RuleContext { home, project_dirs: vec![cwd.clone()] };
    let rules = tether_config::fs::PathRules::new(&cfg.feature.fs, &ctx)?;
    let abs = if path.starts_with('/') { path.to_string() } else { format!("{}/{path}", cwd.display()) };
    println!("{}", rules.explain(&intercept::proc::normalize(&abs)));
    Ok(0)
}
