//! The config file's JSON Schema, generated from the model so it cannot drift from what the
//! loader accepts. Editors validate and complete `.tether/tether.json` with it; the checked-in
//! copy is `schemas/tether.schema.json`.
//!
//! Draft-07 because it is the draft every editor's JSON support (VS Code, JetBrains) handles
//! completely.

use schemars::generate::SchemaSettings;

use crate::model::Config;

/// The JSON Schema of the config file.
pub fn json_schema() -> serde_json::Value {
    let schema = SchemaSettings::draft07().for_deserialize().into_generator().into_root_schema_for::<Config>();
    let mut value = schema.to_value();
    unwrap_descriptions(&mut value);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("title".into(), "tether configuration (.tether/tether.json)".into());
    }
    value
}

/// Doc comments are wrapped at 100 columns; an editor's hover wraps by itself, so join the
/// lines of each paragraph.
fn unwrap_descriptions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    serde_json::Value::String(s) if key == "description" => {
                        let paragraphs: Vec<String> = s.split("\n\n").map(|p| p.replace('\n', " ")).collect();
                        *s = paragraphs.join("\n\n");
                    }
                    _ => unwrap_descriptions(value),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// The schema as it is checked in: pretty JSON with a trailing newline.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/tether.schema.json");

    #[test]
    fn schema_file_is_current() {
        let want = json_schema_text();
        if std::env::var_os("TETHER_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(FILE, &want).expect("write schemas/tether.schema.json");
            return;
        }
        let have = std::fs::read_to_string(FILE).unwrap_or_default();
        assert!(
            have == want,
            "schemas/tether.schema.json is not the schema the code generates; \
             regenerate it with `TETHER_BLESS=1 cargo test -p tether-config schema_file_is_current`"
        );
    }

    #[test]
    fn schema_describes_keys_and_denies_unknown_ones() {
        let s = json_schema();
        let text = s.to_string();
        assert_eq!(s["additionalProperties"], false);
        let props = s["properties"].as_object().unwrap();
        for key in ["$schema", "target", "agent", "feature", "skip_processes", "layer"] {
            assert!(props.contains_key(key), "missing {key}");
            assert!(props[key].get("description").is_some(), "{key} has no description");
        }
        // Field docs become descriptions (editor hover), deep in the tree too.
        assert!(text.contains("Seconds to wait for the agent to start"));
        assert!(text.contains("\"override\""));
        assert!(text.contains("\"localwithoverrides\""));
        assert!(!text.contains("r#override"));
        // Descriptions are unwrapped.
        assert!(!s["properties"]["target"]["description"].as_str().unwrap().contains('\n'));
    }

    #[test]
    fn schema_accepts_short_forms() {
        let s = json_schema();
        let defs = &s["definitions"];
        let fs = &defs["FeatureConfig"]["properties"]["fs"];
        assert_eq!(fs["anyOf"].as_array().map(Vec::len), Some(2), "{fs}");
        let outgoing = &defs["NetworkConfig"]["properties"]["outgoing"];
        assert!(outgoing.to_string().contains("boolean"), "{outgoing}");
    }

    #[test]
    fn target_path_pattern_agrees_with_the_parser() {
        let s = json_schema();
        let pattern = s["definitions"]["TargetPathString"]["pattern"].as_str().unwrap();
        let re = regex::Regex::new(pattern).unwrap();
        for good in ["pid:1", "targetless", "pod/a", "deployment/a-b.c/container/main", "rollout/x9"] {
            assert!(re.is_match(good), "{good}");
            assert!(crate::target::parse_target(good).is_ok(), "{good}");
        }
        for bad in ["pid:0", "pid:x", "pod/A", "pod/-a", "gizmo/a", "pod/a/b/c", "pod", "pod/a/container/"] {
            assert!(!re.is_match(bad), "{bad}");
            assert!(crate::target::parse_target(bad).is_err(), "{bad}");
        }
    }
}
