//! The agent image as OCI content: one layer, its config and its manifest, written as an OCI
//! image layout (a directory, or the same files in a tar archive).
//!
//! The layer is a gzipped tar holding `/tether-agent` (mode 0755, owner root, time 0); the agent
//! makes no TLS connection of its own, so no CA certificates are added. The config's entrypoint
//! is `/tether-agent` (the daemon passes only arguments). Everything is deterministic (no
//! timestamps, gzip without a name or time), so the same agent always gives the same digests.
//!
//! The layout's `index.json` names the image twice, for the tools that read it:
//! `org.opencontainers.image.ref.name` (the OCI layout's own tag annotation; skopeo, podman) and
//! `io.containerd.image.name` (`ctr images import`, and so `kind load image-archive`). A Docker
//! `manifest.json` is added too, so `docker load` (and minikube's Docker runtime) take the
//! archive as well.

use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, bail};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, Digest, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, Os, PlatformBuilder, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};

use super::Platform;

/// Where the agent sits in the image, and the entrypoint.
pub const AGENT_PATH: &str = "/tether-agent";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// `sha256:HEX` of `data`.
pub fn sha256(data: &[u8]) -> String {
    let sum = Sha256::digest(data);
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256:");
    for b in sum.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// Content addressed by its digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: MediaType,
    /// `sha256:HEX`.
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    fn new(media_type: MediaType, data: Vec<u8>) -> Blob {
        Blob { media_type, digest: sha256(&data), data }
    }

    fn descriptor(&self) -> anyhow::Result<Descriptor> {
        let digest = Digest::from_str(&self.digest).context("a sha256 digest")?;
        Ok(Descriptor::new(self.media_type.clone(), self.data.len() as u64, digest))
    }

    /// Its path in an OCI layout: `blobs/sha256/HEX`.
    pub fn path(&self) -> String {
        format!("blobs/{}", self.digest.replacen(':', "/", 1))
    }
}

/// The built image.
#[derive(Clone, Debug)]
pub struct Image {
    /// The name it carries (`ghcr.io/tether-dev/tether-agent:0.1.0`).
    pub reference: String,
    pub platform: Platform,
    pub layer: Blob,
    pub config: Blob,
    pub manifest: Blob,
}

/// The layer: a tar with the agent at [`AGENT_PATH`], gzipped.
fn layer(agent: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(agent.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, AGENT_PATH.trim_start_matches('/'), agent).context("writing the layer's tar")?;
    let plain = tar.into_inner().context("finishing the layer's tar")?;
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    gz.write_all(&plain).context("compressing the layer")?;
    Ok((plain.clone(), gz.finish().context("compressing the layer")?))
}

/// Builds the image of `agent` (a static executable of `platform`) named `reference`.
pub fn build(agent: &[u8], platform: Platform, reference: &str) -> anyhow::Result<Image> {
    if let Some(why) = super::unfit_agent(agent, platform) {
        bail!("the agent cannot go into a {platform} image: {why}");
    }
    let (plain, gz) = layer(agent)?;
    let diff_id = sha256(&plain);
    let layer = Blob::new(MediaType::ImageLayerGzip, gz);

    let arch = match platform {
        Platform::Amd64 => Arch::Amd64,
        Platform::Arm64 => Arch::ARM64,
    };
    let config = ImageConfigurationBuilder::default()
        .architecture(arch.clone())
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .entrypoint(vec![AGENT_PATH.to_string()])
                .env(vec!["PATH=/".to_string()])
                .user("0".to_string())
                .build()?,
        )
        .rootfs(RootFsBuilder::default().typ("layers".to_string()).diff_ids(vec![diff_id]).build()?)
        .build()?;
    let config = Blob::new(MediaType::ImageConfig, config.to_string()?.into_bytes());

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor()?)
        .layers(vec![layer.descriptor()?])
        .build()?;
    let manifest = Blob::new(MediaType::ImageManifest, manifest.to_string()?.into_bytes());
    Ok(Image { reference: reference.to_string(), platform, layer, config, manifest })
}

impl Image {
    /// `index.json`: the one manifest, with its platform and the names of the image.
    fn index(&self) -> anyhow::Result<Vec<u8>> {
        let mut desc = self.manifest.descriptor()?;
        let arch = match self.platform {
            Platform::Amd64 => Arch::Amd64,
            Platform::Arm64 => Arch::ARM64,
        };
        desc.set_platform(Some(PlatformBuilder::default().architecture(arch).os(Os::Linux).build()?));
        desc.set_annotations(Some(
            [
                (ANNOTATION_REF_NAME.to_string(), self.reference.clone()),
                (ANNOTATION_CONTAINERD_NAME.to_string(), self.reference.clone()),
            ]
            .into_iter()
            .collect(),
        ));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![desc])
            .build()?;
        Ok(index.to_string()?.into_bytes())
    }

    /// Every file of the layout: `(path, content)`.
    pub fn files(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let docker = serde_json::json!([{
            "Config": self.config.path(),
            "RepoTags": [self.reference],
            "Layers": [self.layer.path()],
        }]);
        Ok(vec![
            ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json".into(), self.index()?),
            ("manifest.json".into(), serde_json::to_vec(&docker)?),
            (self.layer.path(), self.layer.data.clone()),
            (self.config.path(), self.config.data.clone()),
            (self.manifest.path(), self.manifest.data.clone()),
        ])
    }

    /// Writes the layout into the directory `dir` (created).
    pub fn write_layout(&self, dir: &Path) -> anyhow::Result<()> {
        for (name, data) in self.files()? {
            let path = dir.join(&name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// Writes the layout as a tar archive at `path` (written beside it, then renamed).
    pub fn write_archive(&self, path: &Path) -> anyhow::Result<()> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut dirs = std::collections::BTreeSet::new();
        for (name, _) in self.files()? {
            let mut parent = Path::new(&name).parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(p.to_path_buf());
                parent = p.parent();
            }
        }
        for d in dirs {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            tar.append_data(&mut h, format!("{}/", d.display()), std::io::empty())?;
        }
        for (name, data) in self.files()? {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            tar.append_data(&mut h, &name, data.as_slice())?;
        }
        let bytes = tar.into_inner()?;
        let tmp = path.with_extension("tar.part");
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(())
    }

    /// Writes an archive when `output` ends in `.tar`, else a layout directory.
    pub fn write(&self, output: &Path) -> anyhow::Result<()> {
        if output.extension().is_some_and(|e| e == "tar") {
            self.write_archive(output)
        } else {
            self.write_layout(output)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal static x86-64 ELF header (no program interpreter): enough for the checks.
    pub fn fake_static_agent() -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little endian
        b[6] = 1;
        b[16] = 2; // ET_EXEC
        b[18] = 62; // x86-64
        b[20] = 1;
        b[52] = 64; // e_ehsize
        b[54] = 56; // e_phentsize
        b.extend_from_slice(b"the rest of an agent");
        b
    }

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        // The well-known digest of the empty string.
        assert_eq!(sha256(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn the_image_is_one_layer_with_the_agent_and_an_entrypoint() {
        let agent = fake_static_agent();
        let img = build(&agent, Platform::Amd64, "registry.test/tether-agent:9").unwrap();
        // The layer holds exactly the agent, executable, at /tether-agent.
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(img.layer.data.as_slice()));
        let entries: Vec<(String, u32, Vec<u8>)> = tar
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (e.path().unwrap().display().to_string(), e.header().mode().unwrap(), data)
            })
            .collect();
        assert_eq!(entries, [("tether-agent".to_string(), 0o755, agent.clone())]);

        let config: serde_json::Value = serde_json::from_slice(&img.config.data).unwrap();
        assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/tether-agent"]));
        assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some("amd64")));
        let plain = {
            let mut d = flate2::read::GzDecoder::new(img.layer.data.as_slice());
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut d, &mut v).unwrap();
            v
        };
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256(&plain));

        let manifest: serde_json::Value = serde_json::from_slice(&img.manifest.data).unwrap();
        assert_eq!(manifest["config"]["digest"], img.config.digest);
        assert_eq!(manifest["layers"][0]["digest"], img.layer.digest);
        assert_eq!(manifest["layers"][0]["size"], img.layer.data.len());
        assert_eq!(manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");

        // The same agent gives the same image.
        let again = build(&agent, Platform::Amd64, "registry.test/tether-agent:9").unwrap();
        assert_eq!(again.manifest.digest, img.manifest.digest);
    }

    #[test]
    fn the_archive_is_an_oci_layout_naming_the_image() {
        let img = build(&fake_static_agent(), Platform::Amd64, "registry.test/tether-agent:9").unwrap();
        let dir = std::env::temp_dir().join(format!("tether-oci-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.tar");
        img.write(&path).unwrap();
        let mut files = std::collections::BTreeMap::new();
        for e in tar::Archive::new(std::fs::File::open(&path).unwrap()).entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.insert(e.path().unwrap().display().to_string(), data);
        }
        assert_eq!(files["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["digest"], img.manifest.digest);
        assert_eq!(m["annotations"][ANNOTATION_REF_NAME], "registry.test/tether-agent:9");
        assert_eq!(m["annotations"][ANNOTATION_CONTAINERD_NAME], "registry.test/tether-agent:9");
        assert_eq!(m["platform"]["architecture"], "amd64");
        // Every blob is stored under its own digest.
        for blob in [&img.layer, &img.config, &img.manifest] {
            assert_eq!(sha256(&files[&blob.path()]), blob.digest);
        }
        let docker: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert_eq!(docker[0]["RepoTags"][0], "registry.test/tether-agent:9");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_agent_of_another_platform_is_refused() {
        let mut agent = fake_static_agent();
        agent[18] = 183;
        let e = build(&agent, Platform::Amd64, "x:1").unwrap_err().to_string();
        assert!(e.contains("not a linux/amd64 executable"), "{e}");
    }
}
