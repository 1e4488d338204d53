//! `tether`: the CLI and the daemon in one binary. See ARCHITECTURE.md for the map.

mod agent;
mod bridge;
mod cli;
mod client;
mod doctor;
mod editor;
mod image;
mod intercept;
mod kube;
mod logs;
mod paths;
mod server;
mod session;
mod target;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
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
        /// The target: pid:<PID>, pod/NAME, deployment/NAME, statefulset/NAME (each optionally
        /// /container/NAME) or targetless (default: `target.path` of the config file).
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
        /// A program the session runs (a path, or a name looked up on PATH): its installation
        /// stays local, as in a session (`/opt/x` for `/opt/x/bin/prog`). May be repeated.
        #[arg(long)]
        program: Vec<String>,
        path: String,
    },
    /// Check a launch configuration without starting anything (exit status 1 on errors).
    Doctor {
        /// The launch file, e.g. .vscode/launch.json.
        #[arg(long)]
        launch: PathBuf,
        /// The configuration's `name` in it.
        #[arg(long)]
        name: String,
        /// The config file (default: .tether/tether.json of the workspace).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
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
    /// List what can be targeted in Kubernetes: deployments, statefulsets and pods, with their
    /// containers (sidecars marked).
    Ls {
        /// The namespace (default: the kubeconfig context's).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Every namespace.
        #[arg(long, short = 'A', conflicts_with = "namespace")]
        all_namespaces: bool,
        #[arg(long)]
        json: bool,
    },
    /// List tether's agents in the cluster; --prune removes the leftover ones.
    Agents {
        #[arg(long)]
        prune: bool,
        /// Only this namespace (default: every namespace you may list).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The agent image: its default name, and building, pushing or loading it without Docker.
    AgentImage {
        #[command(subcommand)]
        action: cli::agent_image::Action,
    },
    /// List the daemon's sessions.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The stdio bridge an editor's language client runs: connects to the daemon, starting one
    /// when none runs.
    Lsp {
        /// Accepted for language clients that pass it; stdio is the only transport.
        #[arg(long)]
        stdio: bool,
    },
    /// Show the daemon's log.
    Logs {
        /// Keep printing new lines.
        #[arg(long, short)]
        follow: bool,
        /// How many of the last lines to print.
        #[arg(long, short = 'n', default_value_t = 200)]
        lines: usize,
    },
    /// Print a schema: the config file's JSON Schema, or with --editor the editor protocol's
    /// description (the files checked in under schemas/).
    Schema {
        #[arg(long)]
        editor: bool,
    },
    /// Measure the editor protocol (prepareLaunch, bridge latency, idle memory; needs root).
    #[command(hide = true)]
    BenchProtocol {
        /// Iterations per measurement.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.prints_to_a_pipe() {
        // Rust ignores SIGPIPE, so `tether status | head -1` would panic in `println!` once
        // `head` has gone. These commands only print: end quietly, as other Unix tools do.
        // SAFETY: setting a signal's disposition to its default touches no memory of ours; it
        // happens before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Exec { target, config, layer, program } => {
            init_cli_logging();
            cli::exec::run(cli::exec::ExecArgs { target, config, layer, program })
        }
        Command::ExplainPath { config, program, path } => explain_path(config, &program, &path),
        Command::Doctor { launch, name, config, json } => {
            cli::doctor::run(cli::doctor::DoctorArgs { launch, name, config, json })
        }
        Command::Daemon { action: Some(_) } => stop_daemon(),
        Command::Daemon { action: None } => run_daemon(),
        Command::Status { json } => status(json),
        Command::Ls { namespace, all_namespaces, json } => kube::list::run_ls(namespace, all_namespaces, json),
        Command::Agents { prune, namespace, json } => kube::list::run_agents(namespace, prune, json),
        Command::Demo { program } => cli::demo::run(program),
        Command::AgentImage { action } => {
            init_cli_logging();
            cli::agent_image::run(action)
        }
        Command::Lsp { stdio: _ } => {
            init_cli_logging();
            bridge::run()
        }
        Command::Schema { editor: true } => {
            print!("{}", editor::protocol::description_text());
            Ok(0)
        }
        Command::Schema { editor: false } => {
            print!("{}", tether_config::json_schema_text());
            Ok(0)
        }
        Command::Logs { follow, lines } => logs::show(lines, follow),
        Command::BenchProtocol { iterations } => editor::bench::run(iterations),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("tether: {e:#}");
            ExitCode::from(1)
        }
    }
}

impl Command {
    /// Commands whose whole job is printing (never the daemon, the bridge or `exec`, which talk
    /// to sockets and run the user's program: they handle a closed pipe as an error).
    fn prints_to_a_pipe(&self) -> bool {
        matches!(
            self,
            Command::ExplainPath { .. }
                | Command::Doctor { .. }
                | Command::Status { .. }
                | Command::Ls { .. }
                | Command::Agents { .. }
                | Command::Logs { .. }
                | Command::Schema { .. }
        )
    }
}

fn init_cli_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn run_daemon() -> anyhow::Result<i32> {
    let _guard = logs::init_daemon()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = rt.block_on(server::run());
    if let Err(e) = &result {
        tracing::error!("the daemon failed: {e:#}");
    }
    result?;
    Ok(0)
}

fn stop_daemon() -> anyhow::Result<i32> {
    let Some(mut conn) = client::connect_existing()? else {
        println!("no daemon is running");
        return Ok(0);
    };
    conn.call("tether/stopDaemon", serde_json::Value::Null)?;
    drop(conn);
    client::wait_until_stopped(std::time::Duration::from_secs(10))?;
    println!("daemon stopped");
    Ok(0)
}

fn status(json: bool) -> anyhow::Result<i32> {
    let Some(mut conn) = client::connect_existing()? else {
        if json {
            println!("{}", serde_json::json!({"running": false, "sessions": []}));
        } else {
            println!("no daemon is running");
        }
        return Ok(0);
    };
    let v = conn.call("tether/sessions", serde_json::Value::Null)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let r: editor::protocol::SessionsResult = serde_json::from_value(v).context("the daemon's sessions")?;
    println!("daemon {} — {} session(s)", r.version, r.sessions.len());
    for s in r.sessions {
        let c = &s.counters;
        println!(
            "  {}  {:<8} {}  processes {}  connections {}  files {}  dns {}{}",
            s.id,
            format!("{:?}", s.state).to_lowercase(),
            s.target,
            s.processes.len(),
            c.connections_total,
            c.files_read,
            c.dns_lookups,
            s.launch_name.map(|n| format!("  ({n})")).unwrap_or_default(),
        );
        for p in &s.processes {
            println!("    pid {} {}{}", p.pid, p.executable, if p.skipped { " (skipped)" } else { "" });
        }
        if let Some(r) = &s.end_reason {
            println!("    ended: {r}");
        }
        for e in &s.last_errors {
            println!("    error: {e}");
        }
    }
    Ok(0)
}

fn explain_path(config: Option<PathBuf>, programs: &[String], path: &str) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let (cfg, _) = match config {
        Some(p) => (tether_config::load(&p)?, Some(p)),
        None => tether_config::discover(&cwd)?,
    };
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let ctx = tether_config::fs::RuleContext { home, project_dirs: vec![cwd.clone()] };
    let rules = tether_config::fs::PathRules::new(&cfg.feature.fs, &ctx)?;
    for p in programs {
        rules.add_program(&program_path(p)?);
    }
    let abs = if path.starts_with('/') { path.to_string() } else { format!("{}/{path}", cwd.display()) };
    println!("{}", rules.explain(&intercept::proc::normalize(&abs)));
    Ok(0)
}

/// The executable a session would see for `program` (`/proc/PID/exe`: symlinks resolved), a
/// path or a name looked up on `PATH`.
fn program_path(program: &str) -> anyhow::Result<String> {
    let found = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    };
    let found = found.with_context(|| format!("--program {program}: not found on PATH; give its path"))?;
    let real = std::fs::canonicalize(&found).with_context(|| format!("--program {}", found.display()))?;
    Ok(real.to_string_lossy().into_owned())
}
