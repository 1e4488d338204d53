//! Pushing the agent image to a registry, with the credentials the user already has.
//!
//! Credentials come from Docker's client config (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), as `docker push` would find them: a credential helper named for the
//! registry in `credHelpers`, else the `credsStore` helper, else the `auths` entry (base64
//! `user:password` in `auth`, or `username`/`password`); none is anonymous. A helper is the
//! program `docker-credential-NAME`, run with `get` and the registry on its standard input.
//!
//! The registry protocol is `oci-client`'s (token and basic auth, blob uploads); the manifest is
//! pushed as the bytes the image was built with, so its digest in the registry is the one
//! `tether agent-image build` prints. TLS always, unless `--plain-http` names the registry as one
//! without it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::str::FromStr;

use anyhow::{Context, bail};
use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::oci::Image;

/// Docker's client config file.
pub fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir).join("config.json")),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// The names a registry may have in `auths` (Docker Hub's historical key among them).
fn keys_for(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")];
    if registry == "docker.io" || registry == "index.docker.io" || registry == "registry-1.docker.io" {
        keys.push("https://index.docker.io/v1/".into());
    }
    keys
}

/// Where the credentials for `registry` come from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Helper(String),
    Auths,
    Anonymous,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Helper(h) => write!(f, "credential helper docker-credential-{h}"),
            Source::Auths => write!(f, "`auths` of the Docker config"),
            Source::Anonymous => write!(f, "no credentials"),
        }
    }
}

/// The credentials for `registry` from the Docker config `config` (its JSON text).
pub fn credentials_from(config: &serde_json::Value, registry: &str) -> anyhow::Result<(RegistryAuth, Source)> {
    let keys = keys_for(registry);
    let helper = keys
        .iter()
        .find_map(|k| config["credHelpers"][k].as_str())
        .or_else(|| config["credsStore"].as_str())
        .filter(|h| !h.is_empty());
    if let Some(h) = helper {
        return Ok((helper_get(h, registry)?, Source::Helper(h.to_string())));
    }
    for k in &keys {
        let entry = &config["auths"][k];
        if let Some(encoded) = entry["auth"].as_str().filter(|s| !s.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .with_context(|| format!("the `auth` of {k} in the Docker config is not base64"))?;
            let text = String::from_utf8(decoded).context("the Docker config's `auth` is not UTF-8")?;
            let Some((user, pass)) = text.split_once(':') else {
                bail!("the `auth` of {k} in the Docker config is not `user:password`");
            };
            return Ok((RegistryAuth::Basic(user.into(), pass.into()), Source::Auths));
        }
        if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
            return Ok((RegistryAuth::Basic(u.into(), p.into()), Source::Auths));
        }
        if let Some(t) = entry["registrytoken"].as_str() {
            return Ok((RegistryAuth::Bearer(t.into()), Source::Auths));
        }
    }
    Ok((RegistryAuth::Anonymous, Source::Anonymous))
}

/// The credentials for `registry` from the user's Docker config (anonymous without one).
pub fn credentials(registry: &str) -> anyhow::Result<(RegistryAuth, Source)> {
    let Some(path) = docker_config_path() else { return Ok((RegistryAuth::Anonymous, Source::Anonymous)) };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((RegistryAuth::Anonymous, Source::Anonymous)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    credentials_from(&config, registry).with_context(|| format!("credentials for {registry} from {}", path.display()))
}

/// `docker-credential-HELPER get` for `registry`.
fn helper_get(helper: &str, registry: &str) -> anyhow::Result<RegistryAuth> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program} (named by the Docker config); is it on PATH?"))?;
    child.stdin.take().expect("piped").write_all(registry.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let said =
            String::from_utf8_lossy(&out.stdout).trim().to_string() + String::from_utf8_lossy(&out.stderr).trim();
        if said.contains("credentials not found") {
            return Ok(RegistryAuth::Anonymous);
        }
        bail!("{program} get failed for {registry}: {said}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).with_context(|| format!("{program} get did not print JSON"))?;
    let (user, secret) = (v["Username"].as_str().unwrap_or(""), v["Secret"].as_str().unwrap_or(""));
    Ok(match user {
        // Docker's convention for an identity token.
        "<token>" => RegistryAuth::Bearer(secret.into()),
        "" if secret.is_empty() => RegistryAuth::Anonymous,
        _ => RegistryAuth::Basic(user.into(), secret.into()),
    })
}

/// A client for `reference`'s registry: HTTPS, or plain HTTP for that registry only.
fn client(reference: &Reference, plain_http: bool) -> Client {
    // rustls needs one process-wide crypto provider; ring, as the kube client's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if plain_http {
        ClientProtocol::HttpsExcept(vec![reference.resolve_registry().to_string()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig { protocol, ..Default::default() })
}

/// A registry failure in words, with the registry and what to do.
fn explain(e: OciDistributionError, reference: &Reference, source: &Source, plain_http: bool) -> anyhow::Error {
    let registry = reference.resolve_registry();
    let text = e.to_string();
    let login = match source {
        Source::Anonymous => format!("log in with `docker login {registry}` (tether reads ~/.docker/config.json)"),
        s => format!(
            "the {s} gave credentials that {registry} did not accept; log in again with `docker login {registry}`"
        ),
    };
    let lower = text.to_ascii_lowercase();
    match &e {
        OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. } => {
            anyhow::anyhow!("registry {registry} refused the push of {reference}: {text}; {login}")
        }
        _ if lower.contains("unauthorized")
            || lower.contains("denied")
            || lower.contains("401")
            || lower.contains("403") =>
        {
            anyhow::anyhow!(
                "registry {registry} refused the push of {reference}: {text}; {login}, and check that the repository \
                 `{}` exists and that you may push to it",
                reference.repository()
            )
        }
        _ if lower.contains("name_invalid") || lower.contains("name_unknown") => anyhow::anyhow!(
            "registry {registry} refused the name {reference}: {text}; choose a repository it accepts (REGISTRY/REPO:TAG)"
        ),
        OciDistributionError::RequestError(_)
            if !plain_http && (lower.contains("http") || lower.contains("tls") || lower.contains("certificate")) =>
        {
            anyhow::anyhow!(
                "cannot reach registry {registry} over HTTPS: {e:#}; if it serves plain HTTP (a local registry), pass --plain-http"
            )
        }
        OciDistributionError::RequestError(_) => {
            anyhow::anyhow!("cannot reach registry {registry}: {:#}", anyhow::Error::from(e))
        }
        _ => anyhow::anyhow!("pushing {reference} to {registry}: {text}"),
    }
}

/// What a push did.
#[derive(Debug)]
pub struct Pushed {
    pub reference: String,
    /// The manifest's digest as the registry reports it when asked back.
    pub digest: String,
    pub source: Source,
}

/// Pushes `image` as `target` (`REGISTRY/REPO:TAG`), then asks the registry for the manifest's
/// digest and checks it is the image's.
pub async fn push(image: &Image, target: &str, plain_http: bool) -> anyhow::Result<Pushed> {
    let reference = Reference::from_str(target)
        .map_err(|e| anyhow::anyhow!("`{target}` is not an image reference (REGISTRY/REPO:TAG): {e}"))?;
    let (auth, source) = credentials(reference.resolve_registry())?;
    let client = client(&reference, plain_http);
    let fail = |e| explain(e, &reference, &source, plain_http);
    client.auth(&reference, &auth, RegistryOperation::Push).await.map_err(fail)?;
    for blob in [&image.layer, &image.config] {
        if !client.blob_exists(&reference, &blob.digest).await.unwrap_or(false) {
            client.push_blob(&reference, blob.data.clone(), &blob.digest).await.map_err(fail)?;
        }
    }
    let content_type = http::HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json");
    client.push_manifest_raw(&reference, image.manifest.data.clone(), content_type).await.map_err(fail)?;
    let digest = client.fetch_manifest_digest(&reference, &auth).await.map_err(fail)?;
    if digest != image.manifest.digest {
        bail!(
            "registry {} stored {reference} with digest {digest}, not the image's {}",
            reference.resolve_registry(),
            image.manifest.digest
        );
    }
    Ok(Pushed { reference: reference.to_string(), digest, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn auths_entries_are_read_in_every_spelling() {
        let auth = base64::engine::general_purpose::STANDARD.encode("ann:s3cret");
        let config = json!({"auths": {"https://registry.test": {"auth": auth}, "other.test": {"username": "bo", "password": "pw"}}});
        let (a, s) = credentials_from(&config, "registry.test").unwrap();
        assert_eq!((a, s), (RegistryAuth::Basic("ann".into(), "s3cret".into()), Source::Auths));
        let (a, _) = credentials_from(&config, "other.test").unwrap();
        assert_eq!(a, RegistryAuth::Basic("bo".into(), "pw".into()));
        let (a, s) = credentials_from(&config, "elsewhere.test").unwrap();
        assert_eq!((a, s), (RegistryAuth::Anonymous, Source::Anonymous));
        let bad = json!({"auths": {"registry.test": {"auth": "bm9jb2xvbg=="}}}); // "nocolon"
        let e = credentials_from(&bad, "registry.test").unwrap_err().to_string();
        assert!(e.contains("user:password"), "{e}");
    }

    #[test]
    fn a_missing_credential_helper_is_named() {
        let config =
            json!({"credHelpers": {"registry.test": "tether-test-none"}, "auths": {"registry.test": {"auth": "eDp5"}}});
        let e = format!("{:#}", credentials_from(&config, "registry.test").unwrap_err());
        assert!(e.contains("docker-credential-tether-test-none") && e.contains("PATH"), "{e}");
    }
}
