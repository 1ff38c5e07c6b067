//! The Handle.Net-compatible REST API, /healthz and /metrics over real HTTP.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{private, record, register_request, text, TestNode};

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(node: &TestNode) -> Api {
        Api {
            base: format!("http://{}", node.http_addr.unwrap()),
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let r = req.send().await.unwrap();
        let status = r.status();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = r.text().await.unwrap();
        assert_eq!(ct.as_deref(), Some("application/json"), "{text}");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut r = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        self.send(r).await
    }

    async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            self.client
                .put(format!("{}{path}", self.base))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(
            self.client
                .delete(format!("{}{path}", self.base))
                .bearer_auth(token),
        )
        .await
    }
}

async fn setup() -> (TestNode, Api, String) {
    let node = TestNode::start_empty().await;
    let token = node.enterprise("88.101.5", "HTTP Co").await;
    let api = Api::new(&node);
    (node, api, token)
}

#[tokio::test]
async fn read_shapes_and_filters() {
    let (node, api, token) = setup().await;
    node.registry(Some(&token))
        .register(register_request(record(
            "88.101.5/BAT-1",
            vec![
                text(1, "URL", "https://e.cn/1"),
                text(2, "EMAIL", "qa@e.cn"),
                private(3, "cost", "9"),
            ],
        )))
        .await
        .unwrap();
    let (status, body) = api.get("/api/handles/88.101.5/BAT-1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["responseCode"], 1);
    assert_eq!(body["handle"], "88.101.5/BAT-1");
    let values = body["values"].as_array().unwrap();
    assert_eq!(values.len(), 2, "anonymous: public values only");
    assert_eq!(
        values[0]["data"],
        json!({ "format": "string", "value": "https://e.cn/1" })
    );
    assert_eq!(values[0]["ttl"], 86_400);
    assert!(values[0]["timestamp"].as_str().unwrap().ends_with('Z'));

    let (_, owner) = api.get("/api/handles/88.101.5/BAT-1", Some(&token)).await;
    assert_eq!(owner["values"].as_array().unwrap().len(), 3);
    let (_, public) = api
        .get("/api/handles/88.101.5/BAT-1?publicOnly", Some(&token))
        .await;
    assert_eq!(public["values"].as_array().unwrap().len(), 2);
    let (_, by_type) = api
        .get("/api/handles/88.101.5/BAT-1?type=EMAIL", None)
        .await;
    assert_eq!(by_type["values"][0]["index"], 2);
    let (_, by_index) = api
        .get("/api/handles/88.101.5/BAT-1?index=1&index=2", None)
        .await;
    assert_eq!(by_index["values"].as_array().unwrap().len(), 2);
    let (status, none) = api.get("/api/handles/88.101.5/BAT-1?type=NOPE", None).await;
    assert_eq!(
        (status, none["responseCode"].as_i64()),
        (StatusCode::OK, Some(200))
    );
    assert_eq!(none["values"], json!([]));

    let (status, missing) = api.get("/api/handles/88.101.5/NOPE", None).await;
    assert_eq!(
        (status, missing["responseCode"].as_i64()),
        (StatusCode::NOT_FOUND, Some(100))
    );
    assert_eq!(missing["handle"], "88.101.5/NOPE");
    let (status, bad) = api.get("/api/handles/88..5/x", None).await;
    assert_eq!(
        (status, bad["responseCode"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(102))
    );
    let (status, bad) = api.get("/api/handles/88.101.5/BAT-1?index=one", None).await;
    assert_eq!(
        (status, bad["responseCode"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(4))
    );
}

#[tokio::test]
async fn create_modify_delete_like_a_handle_client() {
    let (_node, api, token) = setup().await;
    let admin = json!({"index": "100", "type": "HS_ADMIN",
        "data": {"format": "admin", "value": {"handle": "0.NA/88.101.5", "index": "200", "permissions": "011111110011"}}});
    let body = json!({ "values": [admin, {"index": 1, "type": "URL", "data": "https://e.cn/h"}] });
    let (status, r) = api
        .put(
            "/api/handles/88.101.5/H-1?overwrite=false",
            &token,
            body.clone(),
        )
        .await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::CREATED, Some(1))
    );
    assert_eq!(r["handle"], "88.101.5/H-1");
    let (status, r) = api
        .put(
            "/api/handles/88.101.5/H-1?overwrite=false",
            &token,
            body.clone(),
        )
        .await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::CONFLICT, Some(101))
    );
    let (_, read) = api.get("/api/handles/88.101.5/H-1", None).await;
    assert_eq!(read["values"][1]["data"]["format"], "admin");
    assert_eq!(
        read["values"][1]["data"]["value"]["handle"],
        "0.NA/88.101.5"
    );

    // index=: merge, the URL survives.
    let (status, _) = api
        .put(
            "/api/handles/88.101.5/H-1?index=2&overwrite=true",
            &token,
            json!({"values": [{"index": 2, "type": "EMAIL", "data": "x@e.cn"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, read) = api.get("/api/handles/88.101.5/H-1", None).await;
    let types: Vec<_> = read["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["URL", "EMAIL", "HS_ADMIN"]);
    // Indexes in the body must match the parameters.
    let (status, r) = api
        .put(
            "/api/handles/88.101.5/H-1?index=3",
            &token,
            json!([{"index": 4, "type": "X", "data": "y"}]),
        )
        .await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(4))
    );
    // overwrite=false on an existing index: 409, value exists.
    let (status, r) = api
        .put(
            "/api/handles/88.101.5/H-1?index=2&overwrite=false",
            &token,
            json!({"index": 2, "type": "EMAIL", "data": "z"}),
        )
        .await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::CONFLICT, Some(201))
    );
    // Default overwrite: replace everything.
    let (status, _) = api
        .put(
            "/api/handles/88.101.5/H-1",
            &token,
            json!([{"index": 1, "type": "URL", "data": "https://e.cn/new"}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, read) = api.get("/api/handles/88.101.5/H-1", None).await;
    assert_eq!(read["values"].as_array().unwrap().len(), 1);

    // Delete one value, then the record.
    api.put(
        "/api/handles/88.101.5/H-1?index=2",
        &token,
        json!([{"index": 2, "type": "EMAIL", "data": "x"}]),
    )
    .await;
    let (status, _) = api
        .delete("/api/handles/88.101.5/H-1?index=2", &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, r) = api
        .delete("/api/handles/88.101.5/H-1?index=9", &token)
        .await;
    // Handle: the record exists, the value does not (404 with 200, not a bad request).
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::NOT_FOUND, Some(200))
    );
    let (status, _) = api.delete("/api/handles/88.101.5/H-1", &token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, r) = api.delete("/api/handles/88.101.5/H-1", &token).await;
    assert_eq!(
        (status, r["responseCode"].as_i64(), r["handle"].as_str()),
        (StatusCode::NOT_FOUND, Some(100), Some("88.101.5/H-1"))
    );
}

/// Each handler's errors go through the one mapping: a rule broken by a DELETE is an invalid
/// value (400, 202), not "values not found"; a value that exists is 409 with 201.
#[tokio::test]
async fn handlers_map_errors_by_their_kind() {
    let node = TestNode::start().await;
    let token = std::fs::read_to_string(node.data_dir.join("tokens/88.101.5.token")).unwrap();
    let token = token.trim();
    let api = Api::new(&node);
    // The seeded record follows TPL-AUTO-PARTS, which requires partNumber (index 2).
    let id = "/api/handles/88.101.5/BAT-2024-000001";
    let (status, r) = api.delete(&format!("{id}?index=2"), token).await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(202)),
        "{r}"
    );
    assert!(r["message"].as_str().unwrap().contains("partNumber"), "{r}");
    let (status, r) = api.delete(&format!("{id}?index=77"), token).await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::NOT_FOUND, Some(200)),
        "{r}"
    );
    let (status, r) = api
        .put(
            &format!("{id}?index=1&overwrite=false"),
            token,
            json!([{"index": 1, "type": "URL", "data": "https://e.cn/x"}]),
        )
        .await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::CONFLICT, Some(201)),
        "{r}"
    );
    // Another enterprise's token: permission, whatever the handler.
    let other = node.enterprise("88.101.66", "Other").await;
    let (status, r) = api.delete(&format!("{id}?index=2"), &other).await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::FORBIDDEN, Some(401)),
        "{r}"
    );
}

#[tokio::test]
async fn authentication_and_bad_requests() {
    let (node, api, token) = setup().await;
    let other = node.enterprise("88.101.6", "Other").await;
    let url = format!("{}/api/handles/88.101.5/A-1", api.base);
    let body = json!({"values": [{"index": 1, "type": "URL", "data": "u"}]});

    // HTTP Basic as Handle clients send it: percent-encoded "index:handle", the token as password.
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let (status, _) = api
        .send(
            api.client
                .put(&url)
                .header("authorization", basic("300%3A88.101.5/ADMIN", &token))
                .json(&body),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, r) = api
        .send(
            api.client
                .put(&url)
                .header("authorization", basic("300:88.101.6/ADMIN", &token))
                .json(&body),
        )
        .await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::UNAUTHORIZED, Some(402)),
        "user handle not owned by the token"
    );
    let (status, _) = api
        .send(
            api.client
                .put(&url)
                .header("authorization", basic("300:88.101.5/ADMIN", "wrong"))
                .json(&body),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, r) = api.send(api.client.put(&url).json(&body)).await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::UNAUTHORIZED, Some(402))
    );
    let (status, r) = api
        .put("/api/handles/88.101.5/A-1", &other, body.clone())
        .await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::FORBIDDEN, Some(401))
    );

    // Content-Type and body errors: 400, protocol error, JSON body, no internals.
    let (status, r) = api
        .send(
            api.client
                .put(&url)
                .bearer_auth(&token)
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(4))
    );
    for bad in ["{", "[1,2]", "{\"values\": 5}", "\"x\""] {
        let (status, r) = api
            .send(
                api.client
                    .put(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(bad),
            )
            .await;
        assert_eq!(
            (status, r["responseCode"].as_i64()),
            (StatusCode::BAD_REQUEST, Some(4)),
            "{bad}"
        );
        assert!(r["message"].is_string());
    }
    let (status, r) = api
        .put(
            "/api/handles/88.101.5/A-1",
            &token,
            json!({"handle": "88.101.5/OTHER", "values": []}),
        )
        .await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(4))
    );
    let (status, r) = api
        .put("/api/handles/88.101.5/A-2", &token, json!([{"index": 1, "type": "URL", "data": "x"}, {"index": 1, "type": "URL", "data": "y"}]))
        .await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(202))
    );
    let (status, r) = api.get("/api/nothing-here", None).await;
    assert_eq!(
        (status, r["responseCode"].as_i64()),
        (StatusCode::NOT_FOUND, Some(4))
    );
}

#[tokio::test]
async fn listing_by_prefix_with_pages() {
    let (node, api, token) = setup().await;
    for i in 0..7 {
        node.registry(Some(&token))
            .register(register_request(record(
                &format!("88.101.5/L-{i}"),
                vec![text(1, "URL", "u")],
            )))
            .await
            .unwrap();
    }
    let (status, r) = api
        .get(
            "/api/handles?prefix=88.101.5&page=1&pageSize=3",
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["totalCount"], "7");
    assert_eq!(
        (r["page"].as_i64(), r["pageSize"].as_i64()),
        (Some(1), Some(3))
    );
    assert_eq!(
        r["handles"],
        json!(["88.101.5/L-3", "88.101.5/L-4", "88.101.5/L-5"])
    );
    let (_, all) = api.get("/api/handles?prefix=88.101.5", Some(&token)).await;
    assert_eq!(all["handles"].as_array().unwrap().len(), 7);
    assert!(all.get("nextCursor").is_none(), "{all}");

    // Cursor paging: each page costs what it returns, and the pages cover everything once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut path = "/api/handles?prefix=88.101.5&pageSize=3".to_owned();
        if !cursor.is_empty() {
            path += &format!("&cursor={cursor}");
        }
        let (status, r) = api.get(&path, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(r["totalCount"], "7");
        seen.extend(r["handles"].as_array().unwrap().iter().cloned());
        match r["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[6], "88.101.5/L-6");
    // The Handle form may not skip past the documented cap (10,000 identifiers).
    let (status, r) = api
        .get(
            "/api/handles?prefix=88.101.5&page=3&pageSize=5000",
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    assert!(r["message"].as_str().unwrap().contains("cursor"), "{r}");
    let (status, _) = api
        .get("/api/handles?prefix=88.101.5&pageSize=20000", Some(&token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get("/api/handles?prefix=88.101.5", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.get("/api/handles", Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn health_and_metrics() {
    let (node, api, token) = setup().await;
    node.registry(Some(&token))
        .register(register_request(record(
            "88.101.5/M-1",
            vec![text(1, "URL", "u")],
        )))
        .await
        .unwrap();
    api.get("/api/handles/88.101.5/M-1", None).await;
    api.get("/api/handles/88.101.5/NOPE", None).await;
    node.resolver(None)
        .resolve(crate::support::resolve("88.101.5/M-1"))
        .await
        .unwrap();
    node.resolver(None)
        .resolve(crate::support::resolve("88.101.5/NOPE"))
        .await
        .unwrap_err();
    // A DNS query for a name with nothing below it: NXDOMAIN.
    let mut query = hickory_proto::op::Message::query();
    query.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("nope._.5.101.88.id.example.").unwrap(),
        hickory_proto::rr::RecordType::TXT,
    ));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), node.dns_addr.unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let wait = std::time::Duration::from_secs(5);
    tokio::time::timeout(wait, socket.recv_from(&mut buf))
        .await
        .expect("a DNS answer")
        .unwrap();
    let (status, h) = api.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            h["status"].as_str(),
            h["store"].as_str(),
            h["registered"].as_i64()
        ),
        (Some("ok"), Some("ok"), Some(1))
    );

    let text = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "idnode_requests_total{interface=\"http\",op=\"get\",outcome=\"ok\"} 1",
        // One outcome vocabulary on every interface: `ok` or the error kind.
        "idnode_requests_total{interface=\"http\",op=\"get\",outcome=\"not_found\"} 1",
        "idnode_requests_total{interface=\"grpc\",op=\"resolve\",outcome=\"not_found\"} 1",
        "idnode_requests_total{interface=\"dns\",op=\"query\",outcome=\"not_found\"} 1",
        "idnode_requests_total{interface=\"grpc\",op=\"resolve\",outcome=\"ok\"} 1",
        "idnode_requests_total{interface=\"grpc\",op=\"register\",outcome=\"ok\"} 1",
        "idnode_request_seconds_bucket{interface=\"grpc\",op=\"resolve\"",
        "idnode_registered_identifiers 1",
        "idnode_registered_identifiers_by_prefix{prefix=\"88.101.5\"} 1",
        "idnode_resolutions_total{interface=\"http\",route=\"local\"} 1",
        "idnode_forward_cache_hits_total 0",
        "idnode_upstream_calls_total 0",
        "idnode_rocksdb{property=\"estimate-num-keys\"}",
        "idnode_rocksdb{property=\"block-cache-usage\"}",
        "idnode_rocksdb{property=\"live-sst-files-size\"}",
        "idnode_rocksdb{property=\"estimate-pending-compaction-bytes\"}",
        "idnode_record_cache{property=\"capacity\"}",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
}

/// Stock Handle clients read `<prefix>/ADMIN` before they authenticate: every enterprise
/// has one from its creation, following its tokens, outside its registrations.
#[tokio::test]
async fn every_enterprise_has_its_admin_handle() {
    let (node, api, token) = setup().await;
    let (status, r) = api.get("/api/handles/88.101.5/ADMIN", None).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["handle"], "88.101.5/ADMIN");
    let values = r["values"].as_array().unwrap();
    assert_eq!(values.len(), 1, "anonymous callers see HS_ADMIN only: {r}");
    assert_eq!(values[0]["type"], "HS_ADMIN");
    assert_eq!(values[0]["index"], 100);
    assert_eq!(values[0]["data"]["format"], "admin");
    assert_eq!(values[0]["data"]["value"]["handle"], "88.101.5/ADMIN");
    assert_eq!(values[0]["data"]["value"]["index"], 300);

    let token_ids = |r: &Value| -> usize {
        r["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["type"] == "IDNODE_TOKENS")
            .map(|v| v["data"]["value"].as_array().unwrap().len())
            .unwrap_or_else(|| panic!("no IDNODE_TOKENS for the owner: {r}"))
    };
    let (_, r) = api.get("/api/handles/88.101.5/ADMIN", Some(&token)).await;
    assert_eq!(token_ids(&r), 1);
    let mut admin = node.admin(Some(&node.admin_token));
    admin
        .rotate_token(idnode::api::grpc::pb::RotateTokenRequest {
            prefix: "88.101.5".into(),
            keep_previous: true,
            token_ttl_secs: 0,
        })
        .await
        .unwrap();
    let (_, r) = api
        .get("/api/handles/88.101.5/ADMIN", Some(&node.admin_token))
        .await;
    assert_eq!(token_ids(&r), 2);
    admin
        .revoke_tokens(idnode::api::grpc::pb::RevokeTokensRequest {
            prefix: "88.101.5".into(),
        })
        .await
        .unwrap();
    let (_, r) = api
        .get("/api/handles/88.101.5/ADMIN", Some(&node.admin_token))
        .await;
    assert_eq!(token_ids(&r), 0);

    // Not a registration, and not for the taking.
    let counts = node
        .registry(Some(&node.admin_token))
        .get_counts(idnode::api::grpc::pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.node_registered, 0);
    let new_token = node.enterprise("88.101.8", "Second Co").await;
    let (status, r) = api
        .put(
            "/api/handles/88.101.8/ADMIN?overwrite=false",
            &new_token,
            json!({"values": [{"index": 1, "type": "URL", "data": "https://e.cn"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    assert!(r["message"].as_str().unwrap().contains("reserved"), "{r}");
    // No enterprise, no admin handle.
    let (status, _) = api.get("/api/handles/88.101.77/ADMIN", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
