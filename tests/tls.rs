//! HTTPS via rustls (`[server.tls] cert`, `key`), over real sockets with a certificate made
//! for the test (rcgen):
//!
//! - a TLS 1.2-only and a TLS 1.3-only client both complete the handshake, and produce and
//!   read work over each;
//! - a TLS 1.1 or 1.0 ClientHello is refused (an alert, no ServerHello), and so is SSL 3;
//! - plain HTTP to the TLS port gets no HTTP answer;
//! - a key that does not belong to the certificate stops start-up with a message naming
//!   `server.tls`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{prepare_dir, start_logged, Broker, StderrLog};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

fn assert_no_panic(log: &StderrLog) {
    let panics = log.lines_with("panicked");
    assert!(panics.is_empty(), "broker panicked:\n{}", log.tail(40));
}

/// A self-signed certificate for localhost and 127.0.0.1, written as PEM into `dir`; returns
/// the certificate (DER, for the client's trust store) and the two paths.
fn make_cert(
    dir: &Path,
) -> (
    CertificateDer<'static>,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("certificate generated");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    (generated.cert.der().clone(), cert, key)
}

fn start_tls_broker() -> (Broker, StderrLog, CertificateDer<'static>) {
    start_tls_broker_with("")
}

/// A TLS broker with `server` extra lines in its `[server]` table.
fn start_tls_broker_with(server: &str) -> (Broker, StderrLog, CertificateDer<'static>) {
    let certs = tempfile::tempdir().unwrap();
    let (der, cert, key) = make_cert(certs.path());
    let (dir, config, data) = prepare_dir(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\n{server}[server.tls]\ncert = {cert:?}\nkey = {key:?}\n[[topics]]\nname = \"t\"\npartitions = 1\n"
    ));
    let (mut broker, log) = start_logged(&[], &config, &data);
    // The certificate files may go once the broker has loaded them.
    drop(certs);
    broker.keep_dir(dir);
    assert!(broker.url.starts_with("https://"), "{}", broker.url);
    (broker, log, der)
}

/// A rustls client that trusts only `cert` and speaks only `version`.
fn client_config(
    cert: &CertificateDer<'static>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// One HTTP/1.1 request over a fresh TLS connection; returns the negotiated version, the
/// status and the JSON body.
fn https_request(
    broker: &Broker,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (rustls::ProtocolVersion, u16, Value) {
    let addr = broker.url.trim_start_matches("https://");
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes())
        .expect("TLS handshake and write");
    let mut answer = Vec::new();
    // The server closes after `connection: close`; an unclean close (no close_notify) after
    // the whole answer is fine.
    let _ = tls.read_to_end(&mut answer);
    let version = tls.conn.protocol_version().expect("handshake done");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (version, status, json)
}

#[test]
fn tls_1_2_and_1_3_handshake_and_produce_and_read_work_over_https() {
    let (mut broker, log, cert) = start_tls_broker();
    for (version, expect) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config(&cert, version);
        let (negotiated, status, body) = https_request(
            &broker,
            Arc::clone(&config),
            "POST",
            "/api/topics/t/produce",
            Some(&json!({"records": [{"value": {"over": format!("{expect:?}")}}]})),
        );
        assert_eq!(negotiated, expect);
        assert_eq!(status, 200, "{body}");
        let offset = body["offsets"][0]["offset"].as_i64().expect("an offset");
        let (_, status, body) = https_request(
            &broker,
            config,
            "GET",
            &format!("/api/topics/t/partitions/0/records?offset={offset}&limit=1"),
            None,
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["records"][0]["value"]["over"], format!("{expect:?}"));
        eprintln!("{expect:?}: handshake, produce (offset {offset}) and read over https");
    }
    assert!(broker.is_running());
    assert_no_panic(&log);
}

/// A minimal ClientHello offering only `version` (no supported_versions extension, so it
/// cannot negotiate 1.3).
fn legacy_client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut hello = Vec::new();
    hello.extend_from_slice(&version); // client_version
    hello.extend_from_slice(&[7u8; 32]); // random
    hello.push(0); // session id
                   // ECDHE-ECDSA (the test certificate is ECDSA) and ECDHE-RSA, GCM, ChaCha20 and CBC.
    let suites: [u16; 9] = [
        0xc02b, 0xc02c, 0xcca9, 0xc02f, 0xc030, 0xc013, 0xc014, 0x002f, 0x0035,
    ];
    hello.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null
                                      // Extensions: supported_groups (x25519, secp256r1), ec_point_formats, signature_algorithms.
    let extensions: Vec<u8> = [
        &[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17][..],
        &[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00],
        &[0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x01, 0x04, 0x03],
    ]
    .concat();
    hello.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    hello.extend_from_slice(&extensions);
    let mut handshake = vec![1u8]; // client_hello
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, legacy record version
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Sends `bytes` and returns what comes back until the server closes (at most 5 s).
fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

#[test]
fn old_protocols_and_plain_http_are_refused_on_the_tls_port() {
    let (mut broker, log, cert) = start_tls_broker();
    let addr = broker.url.trim_start_matches("https://").to_string();

    for (name, version) in [
        ("TLS 1.1", [3, 2]),
        ("TLS 1.0", [3, 1]),
        ("SSL 3.0", [3, 0]),
    ] {
        let answer = exchange(&addr, &legacy_client_hello(version));
        eprintln!(
            "{name} ClientHello: answered {:02x?}",
            &answer[..answer.len().min(7)]
        );
        // Either an alert record (content type 21) or nothing; never a handshake record
        // (22, which would carry a ServerHello).
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "{name} was answered with a handshake: {answer:02x?}"
        );
        assert!(!answer.contains(&0x16), "{name}: {answer:02x?}");
    }
    // The same hello offering 1.2 is answered with a ServerHello: the crafted hello is sound.
    let answer = exchange(&addr, &legacy_client_hello([3, 3]));
    assert_eq!(answer.first(), Some(&0x16), "TLS 1.2 hello: {answer:02x?}");

    let answer = exchange(&addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
    let text = String::from_utf8_lossy(&answer);
    eprintln!("plain HTTP to the TLS port: {} bytes back", answer.len());
    assert!(!text.contains("HTTP/1.1 200"), "plain HTTP served: {text}");
    assert!(!text.contains("\"status\""), "plain HTTP served: {text}");

    // The port still serves TLS afterwards.
    let config = client_config(&cert, &rustls::version::TLS13);
    let (_, status, _) = https_request(&broker, config, "GET", "/healthz", None);
    assert_eq!(status, 200);
    assert!(broker.is_running());
    assert_no_panic(&log);
}

#[test]
fn a_key_that_does_not_match_the_certificate_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = make_cert(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (_, _, other_key) = make_cert(other.path());
    let (_dir, config, data) = prepare_dir(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\n[server.tls]\ncert = {cert:?}\nkey = {other_key:?}\n"
    ));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rill"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("rill runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started with a mismatched key");
    assert!(stderr.contains("server.tls"), "{stderr}");
    assert!(
        !stderr.contains("PRIVATE KEY"),
        "key material in the message: {stderr}"
    );
}

#[test]
fn a_tls_connection_trickling_its_second_request_is_shut_by_the_idle_watchdog() {
    // keep_alive 1 s + client_request_timeout 500 ms: connection_idle_timeout 1.5 s. The
    // watchdog finds the socket under the TLS stream (actix-web's own header timeout covers
    // only a connection's first request).
    let (mut broker, log, cert) =
        start_tls_broker_with("keep_alive_secs = 1\nclient_request_timeout_ms = 500\n");
    let addr = broker.url.trim_start_matches("https://").to_string();
    let tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let conn = rustls::ClientConnection::new(
        client_config(&cert, &rustls::version::TLS13),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\nGET /healthz HTTP/1.1\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let closed_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still open after 20 s: the trickled request was never cut"
        );
        match tls.read(&mut buf) {
            Ok(0) => break started.elapsed(),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                // One more header line of the second request, never finishing it.
                if tls.write_all(b"x-a: b\r\n").is_err() {
                    break started.elapsed();
                }
            }
            Err(_) => break started.elapsed(),
        }
    };
    let text = String::from_utf8_lossy(&answer);
    eprintln!("TLS, trickled second request: closed after {closed_after:?}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    // The 96-header limit alone would have taken 96 × 300 ms ≈ 29 s.
    assert!(closed_after < Duration::from_secs(20));
    assert!(broker.is_running());
    assert_no_panic(&log);
}
