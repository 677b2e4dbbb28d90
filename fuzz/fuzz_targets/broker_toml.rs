//! broker.toml over arbitrary text: `Config::from_toml`, then `validate`, and for a valid
//! config the derived values (`configured_topics`, `default_topic_config`, `api_keys`). None
//! may panic, and every validation message must name its key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut config) = Config::from_toml(text, "fuzz.toml") else {
        return;
    };
    // `validate` resolves `server.bind`; keep the fuzzer off DNS (and the network).
    if config.server.bind.parse::<std::net::SocketAddr>().is_err() {
        config.server.bind = "127.0.0.1:0".to_owned();
    }
    // ...and reads the files named by `key_file` and `[server.tls]`: a mutated path could be
    // /dev/stdin or /dev/zero. Point them at a missing file, which keeps the "cannot read"
    // path covered (these files are the operator's, not a client's input).
    let missing = std::path::PathBuf::from("/nonexistent/rill-fuzz");
    for entry in &mut config.auth.api_keys {
        if entry.key_file.is_some() {
            entry.key_file = Some(missing.clone());
        }
    }
    if let Some(tls) = &mut config.server.tls {
        tls.cert = missing.clone();
        tls.key = missing.clone();
    }
    match config.validate() {
        Ok(()) => {
            let _ = config.configured_topics();
            let _ = config.default_topic_config();
            let _ = config.api_keys();
            assert!(config.server.workers() >= 1);
        }
        Err(ConfigError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty());
            for problem in problems {
                assert!(
                    !problem.key.is_empty(),
                    "a problem without a key: {problem}"
                );
            }
        }
        Err(e) => panic!("validate returned a non-validation error: {e}"),
    }
});
