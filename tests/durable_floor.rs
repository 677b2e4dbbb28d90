//! `rill-ceiling`'s durable floor (`/durable/{pieces}`), the benchmark's lower bound on what a
//! produce that fsyncs before answering can cost: it must write every byte it answers for,
//! split the way the benchmark says, or the floor it reports is not one.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Ceiling(Child);

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts rill-ceiling with its durable files in `dir`; returns it and its URL.
fn start(dir: &Path) -> (Ceiling, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rill-ceiling"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--durable-files",
            "3",
        ])
        .arg("--durable-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start rill-ceiling");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("listening line");
    let url = line
        .trim()
        .strip_prefix("rill-ceiling listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (Ceiling(child), url)
}

/// The first `len` bytes of floor file `i`. The file is larger (its space is reserved
/// ahead), so only the prefix is read.
fn written(dir: &Path, i: usize, len: usize) -> Vec<u8> {
    let file = std::fs::File::open(dir.join(format!("floor-{i}.log"))).expect("open floor file");
    let mut bytes = vec![0; len];
    file.read_exact_at(&mut bytes, 0)
        .unwrap_or_else(|e| panic!("floor-{i}.log holds fewer than {len} bytes: {e}"));
    bytes
}

#[test]
fn every_piece_is_in_its_file_when_the_answer_comes() {
    let dir = tempfile::tempdir().unwrap();
    let (_ceiling, url) = start(dir.path());
    let client = reqwest::blocking::Client::new();
    let body: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();

    let res = client
        .post(format!("{url}/durable/3"))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    for (i, piece) in body.chunks(1000).enumerate() {
        assert_eq!(written(dir.path(), i, 1000), piece, "piece {i}");
    }

    // One piece goes whole to the next file in turn, after what is already there.
    for (i, text) in ["first", "second", "third"].iter().enumerate() {
        let res = client
            .post(format!("{url}/durable/1"))
            .body(*text)
            .send()
            .unwrap();
        assert_eq!(res.status(), 200);
        let file = written(dir.path(), i, 1000 + text.len());
        assert_eq!(&file[1000..], text.as_bytes(), "file {i}");
    }
}

#[test]
fn pieces_outside_the_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_ceiling, url) = start(dir.path());
    let client = reqwest::blocking::Client::new();
    for pieces in [0, 4] {
        let res = client
            .post(format!("{url}/durable/{pieces}"))
            .body("x")
            .send()
            .unwrap();
        assert_eq!(res.status(), 400, "pieces {pieces}");
    }
}

#[test]
fn parse_durable_writes_valid_json_and_refuses_the_rest_unwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (_ceiling, url) = start(dir.path());
    let client = reqwest::blocking::Client::new();

    let refused = client
        .post(format!("{url}/parse-durable/1"))
        .body(r#"{"records": [}"#)
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);

    let body = r#"{"records":[{"key":"k","value":{"n":1}}]}"#;
    let res = client
        .post(format!("{url}/parse-durable/1"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    // The refused body took no turn and wrote nothing: the valid one starts file 0.
    assert_eq!(written(dir.path(), 0, body.len()), body.as_bytes());
}
