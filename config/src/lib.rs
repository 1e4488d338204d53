//! placeholder until the config crate lands
