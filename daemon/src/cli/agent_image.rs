//! `tether agent-image`: name, build, push or load the agent image (`daemon/src/image/`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use crate::image::{self, Platform, load, oci, registry};

#[derive(Subcommand)]
pub enum Action {
    /// Print the image this version uses by default (`agent.image`).
    Name,
    /// Write the agent image as an OCI archive (FILE.tar) or an OCI layout directory.
    Build {
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        source: Source,
    },
    /// Push the agent image to a registry (credentials from ~/.docker/config.json).
    Push {
        /// Where to push: REGISTRY/REPO:TAG; then set `agent.image` to it.
        reference: String,
        /// The registry serves plain HTTP (a local registry); never assumed.
        #[arg(long)]
        plain_http: bool,
        #[command(flatten)]
        source: Source,
    },
    /// Load the agent image into a local cluster's nodes, without a registry.
    Load {
        #[arg(long, value_enum)]
        into: Cluster,
        /// containerd: the `ctr` program.
        #[arg(long, default_value = "ctr")]
        ctr: PathBuf,
        /// containerd: its socket (default: ctr's, /run/containerd/containerd.sock).
        #[arg(long)]
        address: Option<PathBuf>,
        /// kind: the cluster name; minikube: the profile.
        #[arg(long)]
        cluster: Option<String>,
        #[command(flatten)]
        source: Source,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Cluster {
    Containerd,
    Kind,
    Minikube,
}

/// What goes into the image.
#[derive(clap::Args)]
pub struct Source {
    /// linux/amd64 or linux/arm64.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// The static agent to put in (default: the one of this build, beside `tether`).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// The name the image carries (default: `tether agent-image name`).
    #[arg(long)]
    name: Option<String>,
}

impl Source {
    fn build(&self) -> anyhow::Result<oci::Image> {
        let platform = Platform::parse(&self.platform)?;
        let (path, bytes) = image::find_agent(self.agent.as_deref(), platform)?;
        let reference = self.name.clone().unwrap_or_else(image::default_reference);
        tracing::info!(agent = %path.display(), %reference, "building the agent image");
        oci::build(&bytes, platform, &reference)
    }
}

pub fn run(action: Action) -> anyhow::Result<i32> {
    match action {
        Action::Name => println!("{}", image::default_reference()),
        Action::Build { output, source } => {
            let img = source.build()?;
            img.write(&output)?;
            println!("{} {} ({}) -> {}", img.reference, img.manifest.digest, img.platform, output.display());
        }
        Action::Push { reference, plain_http, source } => {
            let img = source.build()?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let pushed = rt.block_on(registry::push(&img, &reference, plain_http))?;
            println!("pushed {} {} ({})", pushed.reference, pushed.digest, pushed.source);
            println!("set \"agent\": {{\"image\": \"{reference}\"}} in .tether/tether.json to use it");
        }
        Action::Load { into, ctr, address, cluster, source } => {
            let img = source.build()?;
            let dir = tempdir()?;
            let archive = dir.join("tether-agent.tar");
            img.write_archive(&archive)?;
            let target = match into {
                Cluster::Containerd => load::Target::Containerd { ctr, address },
                Cluster::Kind => load::Target::Kind { name: cluster },
                Cluster::Minikube => load::Target::Minikube { profile: cluster },
            };
            let result = load::run(&target, &archive);
            let _ = std::fs::remove_dir_all(&dir);
            let said = result?;
            print!("{said}");
            println!("loaded {} {}", img.reference, img.manifest.digest);
        }
    }
    Ok(0)
}

/// A private directory for the archive handed to the loading tool.
fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "tether-agent-image-{}-{}",
        std::process::id(),
        crate::session::random_hex(4)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
