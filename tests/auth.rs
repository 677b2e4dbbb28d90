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
