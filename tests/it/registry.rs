//! Resolve, Register, Update, Delete, Get, List, counts, templates, auth rules over gRPC.

use idnode::api::grpc::pb;
use tonic::Code;

use crate::support::{private, record, register_request, resolve, text, TestNode};

fn edit(
    add: Vec<pb::Value>,
    modify: Vec<pb::Value>,
    remove: Vec<u32>,
) -> pb::update_request::Change {
    pb::update_request::Change::Edit(pb::ValueEdit {
        add,
        modify,
        remove,
        put: vec![],
    })
}

#[tokio::test]
async fn seeded_identifier_resolves_with_public_values_only_for_anonymous() {
    let node = TestNode::start().await;
    let id = "88.101.5/BAT-2024-000001";
    let anon = node
        .resolver(None)
        .resolve(resolve(id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(anon.identifier, id);
    assert_eq!(anon.values[0].r#type, "URL");
    assert!(anon
        .values
        .iter()
        .all(|v| v.permissions.unwrap().public_read));
    // The suffix does not.
    let lower = node
        .resolver(None)
        .resolve(resolve("88.101.5/bat-2024-000001"))
        .await
        .unwrap_err();
    assert_eq!(lower.code(), Code::NotFound);
}

#[tokio::test]
async fn full_lifecycle_with_owner_token() {
    let node = TestNode::start_empty().await;
    let token = node.enterprise("88.101.7", "Test Parts Co").await;
    let mut reg = node.registry(Some(&token));
    let id = "88.101.7/PART/2025:001";
    let r = reg
        .register(register_request(record(
            id,
            vec![
                text(1, "URL", "https://example.cn/p/1"),
                private(2, "unitCost", "12.50"),
                text(3, "batchNo", "B-1"),
            ],
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(r.registered);

    // Anonymous sees public values; the owner sees all; filters apply.
    let anon = node
        .resolver(None)
        .resolve(resolve(id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        anon.values.iter().map(|v| v.index).collect::<Vec<_>>(),
        [1, 3]
    );
    let owner = node
        .resolver(Some(&token))
        .resolve(resolve(id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(owner.values.len(), 3);
    assert!(owner
        .values
        .iter()
        .all(|v| v.timestamp > 0 && v.ttl == 86_400));
    let filtered = node
        .resolver(None)
        .resolve(pb::ResolveRequest {
            identifier: id.into(),
            types: vec!["URL".into()],
            indexes: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.values.len(), 1);
    let by_index = node
        .resolver(None)
        .resolve(pb::ResolveRequest {
            identifier: id.into(),
            types: vec![],
            indexes: vec![2],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(by_index.values.is_empty(), "index 2 is not public");

    // Edit: add, modify, remove together.
    let updated = reg
        .update(pb::UpdateRequest {
            identifier: id.into(),
            change: Some(edit(
                vec![text(4, "EMAIL", "qa@example.cn")],
                vec![text(1, "URL", "https://example.cn/p/1?v=2")],
                vec![3],
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    let got: Vec<_> = updated
        .values
        .iter()
        .map(|v| (v.index, String::from_utf8(v.data.clone()).unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "https://example.cn/p/1?v=2".to_owned()),
            (2, "12.50".to_owned()),
            (4, "qa@example.cn".to_owned())
        ]
    );
    // Resolutions see the edit at once (the resolves above put the record in the node's
    // record cache).
    let seen = |r: pb::ResolveResponse| -> Vec<(u32, String)> {
        r.values
            .into_iter()
            .map(|v| (v.index, String::from_utf8(v.data).unwrap()))
            .collect()
    };
    let anon = node.resolver(None).resolve(resolve(id)).await.unwrap();
    assert_eq!(
        seen(anon.into_inner()),
        [
            (1, "https://example.cn/p/1?v=2".to_owned()),
            (4, "qa@example.cn".to_owned())
        ]
    );
    // Edit errors are all-or-nothing.
    for (change, code) in [
        (
            edit(vec![text(1, "URL", "x")], vec![], vec![]),
            Code::AlreadyExists,
        ),
        (
            edit(vec![], vec![text(9, "URL", "x")], vec![]),
            Code::NotFound,
        ),
        (
            edit(vec![text(5, "X", "y")], vec![], vec![77]),
            Code::NotFound,
        ),
    ] {
        let e = reg
            .update(pb::UpdateRequest {
                identifier: id.into(),
                change: Some(change),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
    }
    let get = reg
        .get(pb::GetRequest {
            identifier: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(get.values.len(), 3, "failed edits left the record alone");
    assert!(get.values.iter().all(|v| v.index != 5));

    // Replace all.
    let replaced = reg
        .update(pb::UpdateRequest {
            identifier: id.into(),
            change: Some(pb::update_request::Change::Replace(pb::ValueList {
                values: vec![text(1, "URL", "https://example.cn/new")],
            })),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(replaced.values.len(), 1);
    let anon = node.resolver(None).resolve(resolve(id)).await.unwrap();
    assert_eq!(
        seen(anon.into_inner()),
        [(1, "https://example.cn/new".to_owned())]
    );

    // Delete, then it is gone everywhere.
    reg.delete(pb::DeleteRequest {
        identifier: id.into(),
    })
    .await
    .unwrap();
    for e in [
        node.resolver(None).resolve(resolve(id)).await.unwrap_err(),
        reg.delete(pb::DeleteRequest {
            identifier: id.into(),
        })
        .await
        .unwrap_err(),
        reg.update(pb::UpdateRequest {
            identifier: id.into(),
            change: Some(edit(vec![], vec![], vec![1])),
        })
        .await
        .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
}

#[tokio::test]
async fn create_is_idempotent_for_identical_records_only() {
    let node = TestNode::start_empty().await;
    let token = node.enterprise("88.101.ab", "Test Parts Co").await;
    let mut reg = node.registry(Some(&token));
    let r = record(
        "88.101.ab/X1",
        vec![text(1, "URL", "https://example.cn/x1")],
    );
    assert!(
        reg.register(register_request(r.clone()))
            .await
            .unwrap()
            .into_inner()
            .registered
    );
    // A retry with the same content (prefix case differs: still the same identifier).
    let mut retry = r.clone();
    retry.identifier = "88.101.AB/X1".into();
    assert!(
        !reg.register(register_request(retry))
            .await
            .unwrap()
            .into_inner()
            .registered
    );
    let resolved = node
        .resolver(None)
        .resolve(resolve("88.101.Ab/X1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.identifier, "88.101.ab/X1");
    let e = node
        .resolver(None)
        .resolve(resolve("88.101.ab/x1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "suffixes are case-sensitive");
    let other = record(
        "88.101.ab/X1",
        vec![text(1, "URL", "https://example.cn/other")],
    );
    let e = reg.register(register_request(other)).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let counts = reg
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.node_registered, 1);
}

#[tokio::test]
async fn auth_rules() {
    let node = TestNode::start_empty().await;
    let a = node.enterprise("88.101.7", "A").await;
    let b = node.enterprise("88.101.8", "B").await;
    let r = || {
        record(
            "88.101.7/AUTH-1",
            vec![
                text(1, "URL", "https://example.cn"),
                private(2, "secret", "s"),
            ],
        )
    };

    // No token, a malformed token, a well-formed unknown token.
    let forged = format!("idn_{}_{}", "0".repeat(16), "0".repeat(64));
    for token in [None, Some("nonsense"), Some(forged.as_str())] {
        let e = node
            .registry(token)
            .register(register_request(r()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{token:?}");
    }
    // Someone else's valid token with the right id but wrong secret.
    let (id_part, _) = a.strip_prefix("idn_").unwrap().split_once('_').unwrap();
    let wrong_secret = format!("idn_{id_part}_{}", "f".repeat(64));
    let e = node
        .registry(Some(&wrong_secret))
        .register(register_request(r()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // Another enterprise's prefix, the node prefix, a prefix outside the node.
    for id in [
        "88.101.7/AUTH-1",
        "88.101/AUTH-1",
        "88.102.1/AUTH-1",
        "88.101.70/AUTH-1",
    ] {
        let mut rec = r();
        rec.identifier = id.into();
        let e = node
            .registry(Some(&b))
            .register(register_request(rec))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{id}");
    }
    node.registry(Some(&a))
        .register(register_request(r()))
        .await
        .unwrap();
    // A deeper prefix under its own is the owner's.
    node.registry(Some(&a))
        .register(register_request(record(
            "88.101.7.3/SUB",
            vec![text(1, "URL", "https://example.cn")],
        )))
        .await
        .unwrap();

    // Get and Delete: anonymous is unauthenticated, the other enterprise is denied.
    let get = |t: Option<String>| {
        let mut c = node.registry(t.as_deref());
        async move {
            c.get(pb::GetRequest {
                identifier: "88.101.7/AUTH-1".into(),
            })
            .await
        }
    };
    assert_eq!(get(None).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(
        get(Some(b.clone())).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        get(Some(a.clone()))
            .await
            .unwrap()
            .into_inner()
            .record
            .unwrap()
            .values
            .len(),
        2
    );
    assert_eq!(
        get(Some(node.admin_token.clone()))
            .await
            .unwrap()
            .into_inner()
            .record
            .unwrap()
            .values
            .len(),
        2
    );
    let e = node
        .registry(Some(&b))
        .delete(pb::DeleteRequest {
            identifier: "88.101.7/AUTH-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Non-public values: hidden from anonymous and from another enterprise.
    for token in [None, Some(b.as_str())] {
        let v = node
            .resolver(token)
            .resolve(resolve("88.101.7/AUTH-1"))
            .await
            .unwrap()
            .into_inner()
            .values;
        assert_eq!(v.len(), 1, "{token:?}");
        assert_eq!(v[0].index, 1);
    }
    // A bad token on a read is an error, not a silent downgrade to anonymous.
    let e = node
        .resolver(Some("bogus"))
        .resolve(resolve("88.101.7/AUTH-1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn invalid_input_is_rejected_with_the_rule() {
    let node = TestNode::start_empty().await;
    let t = node.enterprise("88.101.7", "A").await;
    let mut reg = node.registry(Some(&t));
    let long = "x".repeat(300);
    let cases: Vec<(pb::Record, Code, &str)> = vec![
        (
            record("88.101.7", vec![text(1, "URL", "x")]),
            Code::InvalidArgument,
            "no '/'",
        ),
        (
            record("88.101.7/", vec![text(1, "URL", "x")]),
            Code::InvalidArgument,
            "suffix is empty",
        ),
        (
            record("88..7/x", vec![text(1, "URL", "x")]),
            Code::InvalidArgument,
            "empty segment",
        ),
        (
            record("88.10_1.7/x", vec![text(1, "URL", "x")]),
            Code::InvalidArgument,
            "only ASCII letters",
        ),
        (
            record("88.101.7/a\u{1}b", vec![text(1, "URL", "x")]),
            Code::InvalidArgument,
            "control character",
        ),
        (
            record(&format!("88.101.7/{long}"), vec![text(1, "URL", "x")]),
            Code::InvalidArgument,
            "longer than the limit",
        ),
        (
            record("88.101.7/v", vec![]),
            Code::InvalidArgument,
            "at least one value",
        ),
        (
            record("88.101.7/v", vec![text(0, "URL", "x")]),
            Code::InvalidArgument,
            "index 0",
        ),
        (
            record("88.101.7/v", vec![text(1, "URL", "x"), text(1, "URL", "y")]),
            Code::InvalidArgument,
            "more than once",
        ),
        (
            record("88.101.7/v", vec![text(1, &"t".repeat(129), "x")]),
            Code::InvalidArgument,
            "type is 129 bytes",
        ),
        (
            record("88.101.7/v", vec![text(1, "URL", &"d".repeat(65 * 1024))]),
            Code::InvalidArgument,
            "data is",
        ),
        (
            record(
                "88.101.7/v",
                (1..=1025).map(|i| text(i, "T", "x")).collect(),
            ),
            Code::ResourceExhausted,
            "1025 values",
        ),
        (
            record(
                "88.101.7/v",
                vec![pb::Value {
                    format: pb::Format::Json as i32,
                    ..text(1, "J", "{oops")
                }],
            ),
            Code::InvalidArgument,
            "not valid JSON",
        ),
        (
            record(
                "88.101.7/v",
                vec![pb::Value {
                    data: vec![0xff, 0xfe],
                    ..text(1, "S", "")
                }],
            ),
            Code::InvalidArgument,
            "not valid UTF-8",
        ),
    ];
    for (rec, code, words) in cases {
        let e = reg
            .register(register_request(rec.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{}: {e:?}", rec.identifier);
        assert!(
            e.message().contains(words),
            "{:?} should contain {words:?}",
            e.message()
        );
    }
    let e = reg
        .register(pb::RegisterRequest { record: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Nothing was half-written.
    let counts = reg
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.node_registered, 0);
    let listed = reg
        .list(pb::ListRequest {
            prefix: "88.101.7".into(),
            page_size: 10,
            cursor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.identifiers.is_empty());
}

#[tokio::test]
async fn list_pages_through_a_prefix_in_order() {
    let node = TestNode::start_empty().await;
    let t = node.enterprise("88.101.7", "A").await;
    let other = node.enterprise("88.101.70", "B").await;
    let mut reg = node.registry(Some(&t));
    for i in 0..25 {
        reg.register(register_request(record(
            &format!("88.101.7/item-{i:03}"),
            vec![text(1, "URL", "https://e.cn")],
        )))
        .await
        .unwrap();
    }
    // Neighbouring prefixes must not leak into the listing.
    node.registry(Some(&other))
        .register(register_request(record(
            "88.101.70/item-000",
            vec![text(1, "URL", "https://e.cn")],
        )))
        .await
        .unwrap();
    reg.register(register_request(record(
        "88.101.7.1/item-000",
        vec![text(1, "URL", "https://e.cn")],
    )))
    .await
    .unwrap();
    let mut cursor = String::new();
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let page = reg
            .list(pb::ListRequest {
                prefix: "88.101.7".into(),
                page_size: 10,
                cursor: cursor.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.identifiers.len() <= 10);
        all.extend(page.identifiers);
        cursor = page.next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("88.101.7/item-{i:03}")).collect();
    assert_eq!(all, expected);
    let e = node
        .registry(None)
        .list(pb::ListRequest {
            prefix: "88.101.7".into(),
            page_size: 10,
            cursor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = node
        .registry(Some(&other))
        .list(pb::ListRequest {
            prefix: "88.101.7".into(),
            page_size: 10,
            cursor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn counts_follow_every_write() {
    let node = TestNode::start_empty().await;
    let a = node.enterprise("88.101.7", "A").await;
    let b = node.enterprise("88.101.8", "B").await;
    for i in 0..5 {
        node.registry(Some(&a))
            .register(register_request(record(
                &format!("88.101.7/c{i}"),
                vec![text(1, "URL", "u")],
            )))
            .await
            .unwrap();
    }
    // A sub-prefix counts toward its enterprise.
    node.registry(Some(&a))
        .register(register_request(record(
            "88.101.7.2/c",
            vec![text(1, "URL", "u")],
        )))
        .await
        .unwrap();
    for i in 0..3 {
        node.registry(Some(&b))
            .register(register_request(record(
                &format!("88.101.8/c{i}"),
                vec![text(1, "URL", "u")],
            )))
            .await
            .unwrap();
    }
    node.registry(Some(&b))
        .delete(pb::DeleteRequest {
            identifier: "88.101.8/c0".into(),
        })
        .await
        .unwrap();
    node.registry(Some(&node.admin_token))
        .register(register_request(record(
            "88.101/NODE-DOC",
            vec![text(1, "URL", "u")],
        )))
        .await
        .unwrap();
    let admin = node
        .registry(Some(&node.admin_token))
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(admin.node_registered, 9);
    let per: std::collections::BTreeMap<_, _> = admin
        .prefixes
        .iter()
        .map(|p| (p.prefix.as_str(), p.registered))
        .collect();
    assert_eq!(
        per,
        [("88.101", 1), ("88.101.7", 6), ("88.101.8", 2)]
            .into_iter()
            .collect()
    );
    let mine = node
        .registry(Some(&b))
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.node_registered, 9);
    assert_eq!(mine.prefixes.len(), 1);
    assert_eq!(
        (
            mine.prefixes[0].prefix.as_str(),
            mine.prefixes[0].registered
        ),
        ("88.101.8", 2)
    );
    let info = node
        .admin(None)
        .get_node_info(pb::GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (info.node_prefix.as_str(), info.registered, info.enterprises),
        ("88.101", 9, 2)
    );
}

fn template() -> pb::Template {
    let attr = |key: &str, required: bool, t: pb::AttributeType, max_len: u32| pb::Attribute {
        key: key.into(),
        display_name: key.into(),
        required,
        r#type: t as i32,
        min_len: 0,
        max_len,
        ..Default::default()
    };
    pb::Template {
        identifier: "88.101.7/TPL-PARTS".into(),
        name: "零部件模板".into(),
        industry_code: "C3670".into(),
        version: 1,
        attributes: vec![
            attr("partNumber", true, pb::AttributeType::String, 8),
            attr("productionDate", true, pb::AttributeType::Date, 0),
            attr("weightKg", false, pb::AttributeType::Number, 0),
        ],
    }
}

#[tokio::test]
async fn templates_validate_records_on_write() {
    let node = TestNode::start_empty().await;
    let t = node.enterprise("88.101.7", "A").await;
    let other = node.enterprise("88.101.8", "B").await;
    let mut reg = node.registry(Some(&t));
    // Only the owner of the template's prefix may register it.
    let e = node
        .registry(Some(&other))
        .register_template(pb::RegisterTemplateRequest {
            template: Some(template()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        reg.register_template(pb::RegisterTemplateRequest {
            template: Some(template())
        })
        .await
        .unwrap()
        .into_inner()
        .registered
    );
    assert!(
        !reg.register_template(pb::RegisterTemplateRequest {
            template: Some(template())
        })
        .await
        .unwrap()
        .into_inner()
        .registered
    );
    let mut changed = template();
    changed.name = "other".into();
    let e = reg
        .register_template(pb::RegisterTemplateRequest {
            template: Some(changed),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let got = node
        .registry(None)
        .get_template(pb::GetTemplateRequest {
            identifier: "88.101.7/TPL-PARTS".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    assert_eq!(got, template());

    let with = |values: Vec<pb::Value>| {
        let mut v = values;
        v.push(text(1000, "TEMPLATE_ID", "88.101.7/TPL-PARTS"));
        record("88.101.7/T-1", v)
    };
    let cases = [
        (vec![text(2, "partNumber", "AB-1")], "productionDate"),
        (
            vec![
                text(2, "partNumber", "AB-1"),
                text(3, "productionDate", "2025-02-30"),
            ],
            "productionDate",
        ),
        (
            vec![
                text(2, "partNumber", "TOO-LONG-PN"),
                text(3, "productionDate", "2025-02-03"),
            ],
            "partNumber",
        ),
        (
            vec![
                text(2, "partNumber", "AB-1"),
                text(3, "productionDate", "2025-02-03"),
                text(4, "weightKg", "heavy"),
            ],
            "weightKg",
        ),
    ];
    for (values, attribute) in cases {
        let e = reg
            .register(register_request(with(values)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().contains(attribute),
            "{} should name {attribute}",
            e.message()
        );
    }
    reg.register(register_request(with(vec![
        text(2, "partNumber", "AB-1"),
        text(3, "productionDate", "2025-02-03"),
    ])))
    .await
    .unwrap();
    // Updates are validated too.
    let e = reg
        .update(pb::UpdateRequest {
            identifier: "88.101.7/T-1".into(),
            change: Some(pb::update_request::Change::Edit(pb::ValueEdit {
                add: vec![],
                modify: vec![],
                remove: vec![3],
                put: vec![],
            })),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("productionDate"));
    // An unknown template is an error, not a silent pass.
    let mut unknown = with(vec![]);
    unknown.identifier = "88.101.7/T-2".into();
    unknown.values.last_mut().unwrap().data = b"88.101.7/NO-SUCH".to_vec();
    let e = reg.register(register_request(unknown)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("unknown template"));
    let listed = node
        .registry(None)
        .list_templates(pb::ListTemplatesRequest {
            prefix: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.templates.len(), 1);
}

#[tokio::test]
async fn seeded_templates_and_records_agree() {
    let node = TestNode::start().await;
    let templates = node
        .registry(None)
        .list_templates(pb::ListTemplatesRequest {
            prefix: "88.101".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .templates;
    assert_eq!(templates.len(), 3);
    let counts = node
        .registry(Some(&node.admin_token))
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.node_registered, 100);
    assert_eq!(counts.prefixes.len(), 3);
    // A seed enterprise's token works for its own prefix.
    let token = node.seed_token("88.101.8");
    let page = node
        .registry(Some(&token))
        .list(pb::ListRequest {
            prefix: "88.101.8".into(),
            page_size: 1000,
            cursor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.identifiers.len() as i64,
        counts
            .prefixes
            .iter()
            .find(|p| p.prefix == "88.101.8")
            .unwrap()
            .registered
    );
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let node = TestNode::start_empty().await;
    let fresh = tonic::transport::Channel::from_shared(format!("http://{}", node.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(fresh);
    for service in [
        "",
        "idnode.v1.Resolver",
        "idnode.v1.Registry",
        "idnode.v1.Admin",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, 1, "{service} SERVING");
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(node.channel());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer {resp:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for s in [
        "idnode.v1.Resolver",
        "idnode.v1.Registry",
        "idnode.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&s), "{s} missing from {names:?}");
    }
}

#[tokio::test]
async fn acknowledged_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(dir.path(), false).await;
    let t = node.enterprise("88.101.7", "A").await;
    for i in 0..200 {
        node.registry(Some(&t))
            .register(register_request(record(
                &format!("88.101.7/r{i}"),
                vec![text(1, "URL", &format!("https://e.cn/{i}"))],
            )))
            .await
            .unwrap();
    }
    node.stop().await;
    let node = TestNode::start_in(dir.path(), false).await;
    for i in [0, 99, 199] {
        let r = node
            .resolver(None)
            .resolve(resolve(&format!("88.101.7/r{i}")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.values[0].data, format!("https://e.cn/{i}").into_bytes());
    }
    // Accounts survive too: the enterprise token still works, the count is exact.
    let counts = node
        .registry(Some(&t))
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.node_registered, 200);
}

/// `put` sets values by index in one operation under the identifier's latch: added where
/// the index is free, replacing otherwise; an unchanged value keeps its timestamp. The CLI
/// and the Handle API use it instead of reading the record first.
#[tokio::test]
async fn put_adds_or_replaces_by_index_in_one_update() {
    let node = TestNode::start_empty().await;
    let token = node.enterprise("88.101.5", "Put Co").await;
    let mut reg = node.registry(Some(&token));
    reg.register(register_request(record(
        "88.101.5/P-1",
        vec![text(1, "URL", "https://e.cn/1"), text(2, "EMAIL", "a@e.cn")],
    )))
    .await
    .unwrap();
    let before = reg
        .get(pb::GetRequest {
            identifier: "88.101.5/P-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    let after = reg
        .update(pb::UpdateRequest {
            identifier: "88.101.5/P-1".into(),
            change: Some(pb::update_request::Change::Edit(pb::ValueEdit {
                put: vec![
                    text(1, "URL", "https://e.cn/changed"),
                    text(2, "EMAIL", "a@e.cn"),
                    text(5, "NOTE", "new"),
                ],
                ..Default::default()
            })),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    let at = |r: &pb::Record, i: u32| r.values.iter().find(|v| v.index == i).cloned().unwrap();
    assert_eq!(after.values.len(), 3);
    assert_eq!(at(&after, 1).data, b"https://e.cn/changed");
    assert_eq!(at(&after, 5).data, b"new");
    assert_eq!(at(&after, 2).timestamp, at(&before, 2).timestamp);
    // `add` of a taken index is refused as a value that exists, nothing changes.
    let e = reg
        .update(pb::UpdateRequest {
            identifier: "88.101.5/P-1".into(),
            change: Some(pb::update_request::Change::Edit(pb::ValueEdit {
                add: vec![text(5, "NOTE", "again")],
                put: vec![text(6, "NOTE", "six")],
                ..Default::default()
            })),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(
        e.metadata()
            .get("x-idnode-reason")
            .map(|v| v.to_str().unwrap()),
        Some("201")
    );
    let now = reg
        .get(pb::GetRequest {
            identifier: "88.101.5/P-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(now.values.len(), 3, "all or nothing");
}
