//! The tether config file (`.tether/tether.json`): its model, loading with precise errors,
//! the rules derived from it (file paths, environment, outgoing traffic), and its JSON Schema.
//!
//! Everything that interprets the user's configuration lives here, so that the daemon, the
//! CLI's `explain-path` and the editors' validation agree on one meaning.
//!
//! - [`model`]: the types, with short forms (`"fs": "write"`, `"outgoing": false`).
//! - [`load()`], [`parse()`], [`discover()`]: reading, with [`ConfigError`]s that name file, line,
//!   column and key, and "did you mean" hints for unknown keys and values.
//! - [`fs`], [`env`](mod@env), [`net`]: the decisions the daemon makes per open, per launch, per connect.
//! - [`target`]: target paths (`pod/NAME`, `pid:1234`).
//! - [`json_schema()`]: the schema checked in as `schemas/tether.schema.json`.

// ConfigError is large on purpose (the editor needs every field) and errors happen at load
// time, not on hot paths.
#![allow(clippy::result_large_err)]

mod de;
pub mod env;
mod error;
pub mod fs;
mod glob;
mod load;
pub mod model;
pub mod net;
mod schema;
pub mod target;

pub use error::{ConfigError, closest};
pub use glob::glob_match;
pub use load::{DEFAULT_CONFIG_PATH, discover, load, parse};
pub use model::*;
pub use schema::{json_schema, json_schema_text};

#[cfg(test)]
mod tests;
