//! The auth matrix over real HTTP: both header styles, missing / wrong / near-miss keys,
//! topic scopes, open routes, and no key ever echoed back.

mod common;

use common::{spawn_broker, status_json};
use serde_json::json;

const CONFIG: &str = r#"
[auth]
enabled = true
api_keys = [
  { key = "ingest-key-0123456789", topics = ["orders", "logs-*"] },
  { key_env = "RILL_TEST_ADMIN_KEY" },
]

[[topics]]
name = "orders"
partitions = 1

[[topics]]
name = "payments"
partitions = 1
"#;

#[test]
fn api_keys_are_required_checked_and_scoped() {
    std::env::set_var("RILL_TEST_ADMIN_KEY", "admin-key-abcdef");
    let broker = spawn_broker(CONFIG);
    let body = json!({"records": [{"value": 1}]});
    let produce = |topic: &str, header: Option<(&str, &str)>| {
        let mut req = broker
            .post(&format!("/api/topics/{topic}/produce"))
            .json(&body);
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        status_json(req.send().unwrap())
    };

    for (name, value) in [
        ("x-api-key", ""),
        ("x-api-key", "wrong"),
        ("x-api-key", "ingest-key"),
        ("x-api-key", "ingest-key-0123456789x"),
        ("x-api-key", "INGEST-KEY-0123456789"),
        ("authorization", "Bearer wrong"),
        ("authorization", "Basic aW5nZXN0LWtleS0wMTIzNDU2Nzg5"),
        ("authorization", "ingest-key-0123456789"),
    ] {
        let (s, b) = produce("orders", Some((name, value)));
        assert_eq!(s, 401, "{name}: {value}");
        assert_eq!(b["error_code"], "unauthorized");
        assert!(!b.to_string().contains("ingest-key"), "key echoed: {b}");
    }
    let (s, _) = produce("orders", None);
    assert_eq!(s, 401);

    let (s, b) = produce("orders", Some(("x-api-key", "ingest-key-0123456789")));
    assert_eq!(s, 200, "{b}");
    let (s, b) = produce(
        "orders",
        Some(("authorization", "Bearer ingest-key-0123456789")),
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = produce("payments", Some(("x-api-key", "ingest-key-0123456789")));
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error_code"], "forbidden");
    let (s, _) = produce(
        "payments",
        Some(("authorization", "Bearer admin-key-abcdef")),
    );
    assert_eq!(s, 200);

    // Listing shows only what the key may see; reading outside the scope is 403.
    let (s, b) = status_json(
        broker
            .get("/api/topics")
            .header("x-api-key", "ingest-key-0123456789")
            .send()
            .unwrap(),
    );
    assert_eq!(s, 200);
    assert_eq!(b["topics"], json!([{"name": "orders", "partitions": 1}]));
    let (s, _) = status_json(
        broker
            .get("/api/topics/payments/partitions/0/records")
            .header("x-api-key", "ingest-key-0123456789")
            .send()
            .unwrap(),
    );
    assert_eq!(s, 403);
    let (s, _) = status_json(broker.get("/api/topics").send().unwrap());
    assert_eq!(s, 401);
    let (s, _) = status_json(broker.get("/api/openapi.json").send().unwrap());
    assert_eq!(s, 401);

    for open in ["/healthz", "/readyz", "/metrics"] {
        let res = broker.get(open).send().unwrap();
        assert_eq!(res.status().as_u16(), 200, "{open}");
    }
}

/// The matrix over every `/api/*` route of the OpenAPI document: absent, empty, wrong, prefix,
/// longer and different-case keys in both header styles are 401 (with `WWW-Authenticate`);
/// a key used outside its topics is 403; the right keys pass; no key — right or wrong — is in
/// an answer or in the broker's log, even at `RUST_LOG=trace` (every crate's most verbose).
#[test]
fn every_api_route_refuses_every_wrong_key_and_never_leaks_one() {
    const INGEST: &str = "ingest-key-0123456789";
    const ADMIN: &str = "admin-key-abcdef-9876543210";
    let (dir, config, data) = common::prepare_dir(&format!(
        r#"
[auth]
enabled = true
api_keys = [
  {{ key = "{INGEST}", topics = ["orders", "logs-*"] }},
  {{ key = "{ADMIN}" }},
]

[[topics]]
name = "orders"
partitions = 1

[[topics]]
name = "payments"
partitions = 1

[[topics]]
name = "logs-victim"
partitions = 1
"#
    ));
    let (mut broker, log) = common::start_logged_env(&config, &data, &[("RUST_LOG", "trace")]);
    broker.keep_dir(dir);

    let routes: Vec<(String, String)> = common::openapi_routes()
        .into_iter()
        .filter(|(_, path)| path.starts_with("/api/"))
        .collect();
    assert!(routes.len() >= 8, "{routes:?}");

    // A request to `route` with `topic` in the path, and a body where the route takes one.
    let request = |method: &str, template: &str, topic: &str| {
        let path = template
            .replace("{topic}", topic)
            .replace("{partition}", "0")
            .replace("{request_id}", "01JDQ8Z6S3N5J8Q4V3C2B1A0ZX");
        let url = format!("{}{path}", broker.url);
        match method {
            "GET" => broker.client.get(&url),
            "DELETE" => broker.client.delete(&url),
            _ if template == "/api/topics" => broker
                .client
                .post(&url)
                .json(&json!({"name": format!("{topic}-new"), "partitions": 1})),
            _ => broker
                .client
                .post(&url)
                .json(&json!({"records": [{"value": 1}]})),
        }
    };

    let wrong: Vec<(&str, String)> = vec![
        ("x-api-key", String::new()),
        ("x-api-key", "wrong-key-value".into()),
        ("x-api-key", INGEST[..INGEST.len() - 1].into()),
        ("x-api-key", INGEST[..8].into()),
        ("x-api-key", format!("{INGEST}0")),
        ("x-api-key", format!("{ADMIN}{ADMIN}")),
        ("x-api-key", INGEST.to_uppercase()),
        ("x-api-key", "Ingest-Key-0123456789".into()),
        ("x-api-key", ADMIN.to_uppercase()),
        ("authorization", "Bearer".into()),
        ("authorization", "Bearer ".into()),
        ("authorization", "Bearer wrong-key-value".into()),
        (
            "authorization",
            format!("Bearer {}", &ADMIN[..ADMIN.len() - 1]),
        ),
        ("authorization", format!("Bearer {ADMIN}x")),
        ("authorization", format!("Bearer {}", ADMIN.to_uppercase())),
        ("authorization", format!("Bearer  {ADMIN}")),
        ("authorization", format!("Bearer\t{ADMIN}")),
        ("authorization", format!("Basic {ADMIN}")),
        ("authorization", format!("Token {ADMIN}")),
        ("authorization", ADMIN.into()),
    ];
    let mut checked = 0;
    for (method, template) in &routes {
        // No key at all.
        let res = request(method, template, "orders").send().unwrap();
        assert_eq!(
            res.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{method} {template}"
        );
        let (s, b) = status_json(res);
        assert_eq!(s, 401, "{method} {template} without a key: {b}");
        assert_eq!(b["error_code"], "unauthorized");
        for (header, value) in &wrong {
            let res = request(method, template, "orders")
                .header(*header, value.as_str())
                .send()
                .unwrap();
            let (s, b) = status_json(res);
            assert_eq!(s, 401, "{method} {template} with {header}: {value:?}: {b}");
            assert_eq!(b["error_code"], "unauthorized", "{b}");
            let text = b.to_string();
            for secret in [INGEST, ADMIN] {
                assert!(!text.contains(&secret[..10]), "a key in the answer: {text}");
            }
            if value.len() >= 8 {
                assert!(
                    !text.contains(value.as_str()),
                    "the presented key echoed: {text}"
                );
            }
            checked += 1;
        }
    }

    // The right keys pass (whatever the route then answers, it is not 401 or 403).
    for (method, template) in &routes {
        let topic = match (method.as_str(), template.as_str()) {
            ("DELETE", _) => "logs-victim",
            ("POST", "/api/topics") => "logs-made",
            _ => "orders",
        };
        for (header, value) in [
            ("x-api-key", INGEST.to_string()),
            ("authorization", format!("Bearer {ADMIN}")),
            ("authorization", format!("bearer {INGEST}")),
        ] {
            if method == "DELETE" && header == "authorization" {
                continue; // deleted once is enough
            }
            let (s, b) = status_json(
                request(method, template, topic)
                    .header(header, value.as_str())
                    .send()
                    .unwrap(),
            );
            assert!(
                s != 401 && s != 403,
                "{method} {template} with a valid key: {s} {b}"
            );
            checked += 1;
        }
    }

    // Outside its topics the ingest key is 403 on every route naming a topic.
    let mut forbidden = 0;
    for (method, template) in &routes {
        let names_a_topic =
            template.contains("{topic}") || (method == "POST" && template == "/api/topics");
        if !names_a_topic {
            continue;
        }
        let (s, b) = status_json(
            request(method, template, "payments")
                .header("x-api-key", INGEST)
                .send()
                .unwrap(),
        );
        assert_eq!(
            s, 403,
            "{method} {template} on payments with the ingest key: {b}"
        );
        assert_eq!(b["error_code"], "forbidden");
        forbidden += 1;
    }
    assert!(forbidden >= 5, "{forbidden} routes checked for scope");
    // The topic list only shows the key's topics; a request id of another topic is not found.
    let (s, b) = status_json(
        broker
            .get("/api/topics")
            .header("x-api-key", INGEST)
            .send()
            .unwrap(),
    );
    assert_eq!(s, 200);
    let names: Vec<&str> = b["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"payments"), "{names:?}");
    let (s, b) = status_json(
        broker
            .post("/api/topics/payments/produce?async=true")
            .header("x-api-key", ADMIN)
            .json(&json!({"records": [{"value": 1}]}))
            .send()
            .unwrap(),
    );
    assert_eq!(s, 202, "{b}");
    let status_url = b["status_url"].as_str().unwrap().to_string();
    let (s, _) = status_json(
        broker
            .get(&status_url)
            .header("x-api-key", ADMIN)
            .send()
            .unwrap(),
    );
    assert_eq!(s, 200);
    let (s, b) = status_json(
        broker
            .get(&status_url)
            .header("x-api-key", INGEST)
            .send()
            .unwrap(),
    );
    assert_eq!(
        s, 404,
        "another topic's request is not even confirmed to exist: {b}"
    );

    // Open routes stay open, and /metrics shows no key.
    for open in ["/healthz", "/readyz", "/metrics"] {
        let res = broker.get(open).send().unwrap();
        assert_eq!(res.status().as_u16(), 200, "{open}");
        let text = res.text().unwrap();
        assert!(
            !text.contains(INGEST) && !text.contains(ADMIN),
            "{open} shows a key"
        );
    }

    // Nothing of any key in the log, at trace level.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let text = log.text();
    assert!(
        text.contains("TRACE"),
        "the log was not at trace level ({} bytes):\n{}",
        text.len(),
        log.tail(10)
    );
    for secret in [INGEST, ADMIN] {
        for fragment in [secret, &secret[..12], &secret[secret.len() - 12..]] {
            assert!(!text.contains(fragment), "{fragment:?} in the log");
        }
    }
    for (_, value) in &wrong {
        if value.len() >= 12 {
            let presented = value.trim_start_matches("Bearer").trim();
            if presented.len() >= 12 {
                assert!(
                    !text.contains(presented),
                    "a presented key in the log: {presented:?}"
                );
            }
        }
    }
    eprintln!(
        "auth matrix: {} /api routes, {checked} requests with wrong or right keys, {forbidden} scope checks; {} log lines at trace, no key in any",
        routes.len(),
        text.lines().count()
    );
    assert!(broker.is_running());
}
