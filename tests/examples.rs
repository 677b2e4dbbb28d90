//! The examples stay runnable: the curl walk-through (every endpoint) runs to completion against
//! a real broker, with auth off and on.

mod common;

use std::process::Command;

use common::spawn_broker;

fn run_walkthrough(url: &str, api_key: Option<&str>) {
    let mut command = Command::new("bash");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/curl-walkthrough.sh"
        ))
        .env("RILL", url);
    if let Some(key) = api_key {
        command.env("RILL_API_KEY", key);
    }
    let output = command.output().expect("bash runs");
    assert!(
        output.status.success(),
        "walkthrough failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn curl_walkthrough_runs_against_a_real_broker() {
    let broker = spawn_broker("");
    run_walkthrough(&broker.url, None);
}

#[test]
fn curl_walkthrough_runs_with_auth_on() {
    let broker = spawn_broker("[auth]\nenabled = true\napi_keys = [{ key = \"walk-key-123\" }]\n");
    run_walkthrough(&broker.url, Some("walk-key-123"));
}
