//! `tether doctor`: check a launch configuration without starting anything.

use std::path::PathBuf;

use tether_doctor::Severity;

pub struct DoctorArgs {
    pub launch: PathBuf,
    pub name: String,
    pub config: Option<PathBuf>,
    pub json: bool,
}

/// Prints the diagnostics; exits 1 when one of them is an error (the launch would not start).
pub fn run(args: DoctorArgs) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    // The workspace folder is the one holding `.vscode/launch.json`, else the current directory.
    let launch_path = if args.launch.is_absolute() { args.launch.clone() } else { cwd.join(&args.launch) };
    let workspace = launch_path
        .parent()
        .filter(|p| p.ends_with(".vscode"))
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| cwd.clone());
    let config = match &args.config {
        Some(p) => tether_config::load(p)?,
        None => tether_config::discover(&workspace)?.0,
    };
    let launch = crate::doctor::launch_entry(&launch_path, &args.name)?;
    let facts = crate::doctor::facts(&config, &workspace, None);
    let patched = tether_doctor::check_launch(&launch, &facts);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&patched)?);
    } else {
        if patched.diagnostics.is_empty() {
            println!("{}: no problems found", args.name);
        }
        for d in &patched.diagnostics {
            let sev = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            println!("{sev}[{}]: {}", d.id, d.message);
            if let Some(fix) = &d.fix {
                let how = if fix.applied { "fixed" } else { "fix" };
                println!("  {how}: {}", fix.description);
            }
        }
        if patched.launch != launch {
            println!("\npatched launch configuration:\n{}", serde_json::to_string_pretty(&patched.launch)?);
        }
    }
    Ok(if tether_doctor::has_errors(&patched.diagnostics) { 1 } else { 0 })
}
