//! Reading the config file: from a path, from text, or discovered under a directory.

use std::path::{Path, PathBuf};

use crate::error::{ConfigError, segments};
use crate::model::Config;

/// Where the config file lives, relative to the project directory.
pub const DEFAULT_CONFIG_PATH: &str = ".tether/tether.json";

/// Reads and validates the config file at `path`. A missing file is an error: the caller named
/// it explicitly.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ConfigError::new(path, "", "config file not found")
            .with_hint("check the path, or omit it to use `.tether/tether.json` or the defaults"),
        _ => ConfigError::new(path, "", format!("cannot read the config file: {e}")),
    })?;
    parse(&text, path)
}

/// Loads `.tether/tether.json` under `cwd` when it exists; otherwise the defaults and `None`.
pub fn discover(cwd: &Path) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let path = cwd.join(DEFAULT_CONFIG_PATH);
    if path.exists() {
        let config = load(&path)?;
        Ok((config, Some(path)))
    } else {
        Ok((Config::default(), None))
    }
}

/// Parses config text; `origin` is the file name used in errors.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let config: Config = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ConfigError::from_json(text, origin, &segments(e.path()), e.inner()))?;
    de.end().map_err(|e| ConfigError::from_json(text, origin, &[], &e))?;
    Ok(config)
}
