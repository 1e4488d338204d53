//! Config files in the editor, over the daemon's socket: diagnostics with exact ranges for open
//! documents and for files changed on disk, completion and hover from the schema.

mod common;
mod protocol_client;

use std::time::Duration;

use common::World;
use protocol_client::{Client, start_daemon};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn uri(path: &std::path::Path) -> String {
    format!("file://{}", path.display())
}

/// The LSP range of the first occurrence of `needle` in `text` (ASCII texts: characters are
/// UTF-16 units).
fn range_of(text: &str, needle: &str) -> Value {
    for (line, l) in text.lines().enumerate() {
        if let Some(col) = l.find(needle) {
            return json!({"start": {"line": line, "character": col}, "end": {"line": line, "character": col + needle.len()}});
        }
    }
    panic!("{needle} not in {text}")
}

/// Waits for diagnostics of `uri` whose list `pred` accepts.
fn diagnostics_for(c: &mut Client, uri: &str, pred: impl Fn(&Value) -> bool) -> Value {
    c.wait_for("textDocument/publishDiagnostics", WAIT, |p| p["uri"] == uri && pred(&p["diagnostics"]))["params"]
        .clone()
}

fn versioned(c: &mut Client, uri: &str, version: i64) -> Value {
    c.wait_for("textDocument/publishDiagnostics", WAIT, |p| p["uri"] == uri && p["version"] == version)["params"]
        .clone()
}

#[test]
fn open_and_changed_config_documents_get_exact_diagnostics() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut c = Client::connect(&world);
    c.initialize(json!({}));
    let path = world.project.join(".tether/tether.json");
    let u = uri(&path);

    let unknown_key = "{\n  \"feature\": {\n    \"fs\": {\n      \"mod\": \"read\"\n    }\n  }\n}\n";
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": u, "languageId": "json", "version": 1, "text": unknown_key}}),
    );
    let p = versioned(&mut c, &u, 1);
    let d = &p["diagnostics"][0];
    assert_eq!(d["range"], range_of(unknown_key, "\"mod\""));
    assert_eq!(d["range"], json!({"start": {"line": 3, "character": 6}, "end": {"line": 3, "character": 11}}));
    assert_eq!(d["severity"], 1);
    assert_eq!(d["source"], "tether");
    assert_eq!(d["code"], "config-invalid");
    assert_eq!(d["message"], "feature.fs.mod: unknown key; did you mean `mode`?");

    let bad_regex = "{\n  \"feature\": {\n    \"fs\": {\n      \"read_only\": [\"^/app\", \"([a-z\"]\n    }\n  }\n}\n";
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 2}, "contentChanges": [{"text": bad_regex}]}),
    );
    let p = versioned(&mut c, &u, 2);
    assert_eq!(p["version"], 2);
    let d = &p["diagnostics"][0];
    assert_eq!(d["range"], range_of(bad_regex, "\"([a-z\""));
    assert!(d["message"].as_str().unwrap().starts_with("feature.fs.read_only[1]: "), "{d}");

    let bad_value = "{\"feature\": {\"network\": {\"incoming\": {\"mode\": \"stael\"}}}}";
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 3}, "contentChanges": [{"text": bad_value}]}),
    );
    let p = versioned(&mut c, &u, 3);
    assert_eq!(p["diagnostics"][0]["range"], range_of(bad_value, "\"stael\""));
    assert!(p["diagnostics"][0]["message"].as_str().unwrap().contains("did you mean `steal`?"));

    let syntax = "{\n  \"agent\": {\"ttl\": 1,}\n}\n";
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 4}, "contentChanges": [{"text": syntax}]}),
    );
    let p = versioned(&mut c, &u, 4);
    let start = &p["diagnostics"][0]["range"]["start"];
    assert_eq!(start["line"], 1, "{p}");
    assert_eq!(
        start["character"],
        range_of(syntax, ",}")["start"]["character"].as_u64().unwrap() + 1,
        "at the `}}` after the comma: {p}"
    );

    let good = "{\"feature\": {\"fs\": {\"mode\": \"read\"}}}";
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 5}, "contentChanges": [{"text": good}]}),
    );
    let p = versioned(&mut c, &u, 5);
    assert_eq!(p["diagnostics"], json!([]));

    // Documents that are not config files are left alone.
    let other = uri(&world.project.join("src/main.go"));
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": other, "languageId": "go", "version": 1, "text": "{"}}),
    );
    c.ok("tether/sessions", Value::Null);
    assert!(!c.inbox.iter().any(|m| m["params"]["uri"] == other.as_str()), "{:#?}", c.inbox);
}

#[test]
fn completion_and_hover_come_from_the_schema() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    let mut c = Client::connect(&world);
    c.initialize(json!({}));
    let u = uri(&world.project.join(".tether/tether.json"));
    let text = "{\n  \"feature\": {\n    \"network\": {\n      \"incoming\": {\"mode\": \"\"}\n    }\n  },\n  \"agent\": {\"startup_timeout\": 5}\n}\n";
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": u, "languageId": "json", "version": 1, "text": text}}),
    );

    // Values of incoming.mode, with the cursor between the quotes.
    let quotes = range_of(text, "\"mode\": \"\"")["start"]["character"].as_u64().unwrap() + 9;
    let r = c.ok(
        "textDocument/completion",
        json!({"textDocument": {"uri": u}, "position": {"line": 3, "character": quotes}}),
    );
    let labels: Vec<&str> = r.as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["mirror", "steal", "off"], "{r}");

    // Keys of `agent`, right after its `{`.
    let brace = range_of(text, "{\"startup_timeout\"")["start"]["character"].as_u64().unwrap() + 1;
    let r = c.ok(
        "textDocument/completion",
        json!({"textDocument": {"uri": u}, "position": {"line": 6, "character": brace}}),
    );
    let keys: Vec<&str> = r.as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap()).collect();
    for k in ["image", "ttl", "privileged", "port", "startup_timeout", "idle_timeout"] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    let ttl = r.as_array().unwrap().iter().find(|i| i["label"] == "ttl").unwrap();
    assert!(ttl["documentation"]["value"].as_str().unwrap().contains("Job"), "{ttl}");

    let on_key = range_of(text, "startup_timeout")["start"]["character"].as_u64().unwrap() + 3;
    let h =
        c.ok("textDocument/hover", json!({"textDocument": {"uri": u}, "position": {"line": 6, "character": on_key}}));
    let md = h["contents"]["value"].as_str().unwrap();
    assert!(md.starts_with("**startup_timeout**"), "{md}");
    assert!(md.contains("Seconds to wait for the agent to start"), "{md}");
    let nowhere =
        c.ok("textDocument/hover", json!({"textDocument": {"uri": u}, "position": {"line": 0, "character": 0}}));
    assert_eq!(nowhere, Value::Null);
}

#[test]
fn config_files_changed_on_disk_are_revalidated() {
    let world = World::new();
    let _daemon = start_daemon(&world, &[]);
    // A second folder whose config is already broken when the editor connects.
    let other = world.dir.join("other");
    std::fs::create_dir_all(other.join(".tether")).unwrap();
    let broken = "{\"skip_processes\": 5}";
    std::fs::write(other.join(".tether/tether.json"), broken).unwrap();

    let mut c = Client::connect(&world);
    c.initialize(json!({"workspaceFolders": [
        {"uri": uri(&world.project), "name": "project"},
        {"uri": uri(&other), "name": "other"},
    ]}));
    let u_other = uri(&other.join(".tether/tether.json"));
    let p = diagnostics_for(&mut c, &u_other, |d| !d.as_array().unwrap().is_empty());
    assert_eq!(p["diagnostics"][0]["range"], range_of(broken, "5"));

    // `.tether` does not exist yet in the project: it appears, then a broken file in it.
    let path = world.project.join(".tether/tether.json");
    let u = uri(&path);
    std::fs::create_dir_all(world.project.join(".tether")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let text = "{\n  \"agent\": {\"tll\": 3}\n}\n";
    std::fs::write(&path, text).unwrap();
    let p = diagnostics_for(&mut c, &u, |d| !d.as_array().unwrap().is_empty());
    assert_eq!(p["diagnostics"][0]["range"], range_of(text, "\"tll\""));
    assert!(p["diagnostics"][0]["message"].as_str().unwrap().contains("did you mean `ttl`?"));

    // Fixed on disk: the diagnostics clear.
    std::fs::write(&path, "{\"agent\": {\"ttl\": 3}}").unwrap();
    diagnostics_for(&mut c, &u, |d| d.as_array().unwrap().is_empty());

    // While the file is open in the editor, the editor's text wins over the disk's.
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": u, "languageId": "json", "version": 1, "text": "{}"}}),
    );
    diagnostics_for(&mut c, &u, |d| d.as_array().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(200));
    c.ok("tether/sessions", Value::Null);
    c.inbox.clear();
    std::fs::write(&path, "{\"agent\": {\"tll\": 3}}").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.ok("tether/sessions", Value::Null);
    assert!(
        !c.inbox
            .iter()
            .any(|m| m["params"]["uri"] == u.as_str() && !m["params"]["diagnostics"].as_array().unwrap().is_empty()),
        "an open document is not re-validated from disk: {:#?}",
        c.inbox
    );
    // Closed again: what counts is the disk.
    c.notify("textDocument/didClose", json!({"textDocument": {"uri": u}}));
    diagnostics_for(&mut c, &u, |d| !d.as_array().unwrap().is_empty());
}
