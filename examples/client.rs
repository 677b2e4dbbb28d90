//! A minimal rill client over the HTTP API: makes sure a topic exists (`POST /api/topics`,
//! where `409 topic_already_exists` is fine), produces 10 keyed JSON records in one sync
//! request (`POST /api/topics/{topic}/produce`), prints where each landed, and reads them back
//! (`GET /api/topics/{topic}/partitions/{p}/records`).
//!
//! Run a broker, then:
//!
//! ```text
//! cargo run --example client              # topic "example"
//! cargo run --example client -- orders    # topic "orders"
//! RILL_URL=http://10.0.0.5:8080 RILL_API_KEY=secret cargo run --example client
//! ```
//!
//! `RILL_URL` is the broker's base URL (default `http://127.0.0.1:8080`); `RILL_API_KEY`, when
//! set, is sent as `X-API-Key` (for brokers with `[auth] enabled = true`).

use std::collections::BTreeMap;
use std::error::Error;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const RECORDS: usize = 10;

struct Rill {
    http: Client,
    base: String,
    api_key: Option<String>,
}

impl Rill {
    fn new(base: String, api_key: Option<String>) -> Result<Self> {
        Ok(Self {
            http: Client::builder().build()?,
            base: base.trim_end_matches('/').to_string(),
            api_key,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.api_key {
            Some(key) => builder.header("X-API-Key", key),
            None => builder,
        }
    }

    /// Creates `topic` with 3 partitions unless it already exists.
    fn ensure_topic(&self, topic: &str) -> Result<()> {
        let response = self
            .request(reqwest::Method::POST, "/api/topics")
            .json(&json!({"name": topic, "partitions": 3}))
            .send()?;
        match response.status() {
            StatusCode::CREATED => println!("created topic {topic}"),
            StatusCode::CONFLICT => println!("topic {topic} already exists"),
            _ => return Err(api_error(response)),
        }
        Ok(())
    }

    /// Produces `records` synchronously; returns the per-record results, in input order.
    fn produce(&self, topic: &str, records: Vec<Value>) -> Result<Vec<Value>> {
        let body = json!({
            "key_format": "string",
            "value_format": "json",
            "records": records,
        });
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("/api/topics/{topic}/produce"),
            )
            .json(&body)
            .send()?;
        let answer: Value = ok_json(response)?;
        Ok(answer["offsets"].as_array().cloned().unwrap_or_default())
    }

    /// Reads up to `limit` records of one partition from `offset`.
    fn read(&self, topic: &str, partition: i64, offset: i64, limit: usize) -> Result<Vec<Value>> {
        let response = self
            .request(
                reqwest::Method::GET,
                &format!("/api/topics/{topic}/partitions/{partition}/records"),
            )
            .query(&[
                ("offset", offset.to_string()),
                ("limit", limit.to_string()),
                ("key_format", "string".to_string()),
                ("value_format", "json".to_string()),
            ])
            .send()?;
        let answer: Value = ok_json(response)?;
        Ok(answer["records"].as_array().cloned().unwrap_or_default())
    }
}

/// The body of a 2xx answer, or the API's `{error_code, message}` as an error.
fn ok_json(response: Response) -> Result<Value> {
    if response.status().is_success() {
        Ok(response.json()?)
    } else {
        Err(api_error(response))
    }
}

fn api_error(response: Response) -> Box<dyn Error> {
    let status = response.status();
    match response.json::<Value>() {
        Ok(body) => format!(
            "HTTP {status}: {} ({})",
            body["message"].as_str().unwrap_or("?"),
            body["error_code"].as_str().unwrap_or("?"),
        )
        .into(),
        Err(_) => format!("HTTP {status}").into(),
    }
}

fn main() -> Result<()> {
    let base = std::env::var("RILL_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let api_key = std::env::var("RILL_API_KEY").ok().filter(|k| !k.is_empty());
    let topic = std::env::args().nth(1).unwrap_or_else(|| "example".into());
    let rill = Rill::new(base, api_key)?;

    rill.ensure_topic(&topic)?;

    // Keys pick the partition (Kafka's murmur2 partitioner), so one user's records stay in order.
    let records: Vec<Value> = (0..RECORDS)
        .map(|i| {
            json!({
                "key": format!("user-{}", i % 4),
                "value": {"seq": i, "item": format!("item-{i}")},
                "headers": [{"key": "source", "value": "examples/client.rs"}],
            })
        })
        .collect();
    let results = rill.produce(&topic, records)?;

    // Where each record landed; the first offset per partition is where reading starts.
    let mut first_offset: BTreeMap<i64, i64> = BTreeMap::new();
    for (i, result) in results.iter().enumerate() {
        match (result["partition"].as_i64(), result["offset"].as_i64()) {
            (Some(partition), Some(offset)) if result["error_code"].is_null() => {
                println!("record {i}: partition {partition} offset {offset}");
                let first = first_offset.entry(partition).or_insert(offset);
                *first = (*first).min(offset);
            }
            _ => println!(
                "record {i}: failed: {} ({})",
                result["error"].as_str().unwrap_or("?"),
                result["error_code"].as_str().unwrap_or("?"),
            ),
        }
    }

    println!("reading back:");
    for (&partition, &offset) in &first_offset {
        for record in rill.read(&topic, partition, offset, RECORDS)? {
            println!(
                "  partition {partition} offset {}: key {} value {}",
                record["offset"], record["key"], record["value"],
            );
        }
    }
    Ok(())
}
