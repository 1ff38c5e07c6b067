//! Data classification with the plan's taxonomy (issue 18 item 6): a value's data domain and
//! risk level; risk decides the loosest visibility (high → private, medium → partner, low →
//! public), on every interface; a template attribute's risk is a floor. A high-risk value
//! never appears to anyone but its owner (and the node admin, whose reads are logged).

use hickory_proto::rr::RecordType;
use idnode::api::grpc::pb;
use serde_json::{json, Value as Json};
use tonic::Code;

use crate::dns::{name_of, request, txts, udp};
use crate::support::{record, register_request, text, TestNode};

fn classified(
    index: u32,
    data: &str,
    c: pb::Classification,
    d: pb::DataDomain,
    r: pb::Risk,
) -> pb::Value {
    pb::Value {
        classification: c as i32,
        domain: d as i32,
        risk: r as i32,
        ..text(index, "note", data)
    }
}

#[tokio::test]
async fn risk_decides_visibility_on_grpc_http_and_dns() {
    let node = TestNode::start().await;
    let owner = node.seed_token("88.101.5");
    let partner = node.seed_token("88.101.8");
    let mut registry = node.registry(Some(&owner));
    use pb::{Classification as C, DataDomain as D, Risk as R};

    // gRPC: a high-risk value asked to be public (or partner) is refused, naming the rule.
    for looser in [C::Public, C::Partner] {
        let e = registry
            .register(register_request(record(
                "88.101.5/RISK-1",
                vec![classified(2, "process recipe", looser, D::Rd, R::High)],
            )))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().contains("high risk → private"),
            "{}",
            e.message()
        );
    }
    let e = registry
        .register(register_request(record(
            "88.101.5/RISK-1",
            vec![classified(2, "x", C::Public, D::Production, R::Medium)],
        )))
        .await
        .unwrap_err();
    assert!(e.message().contains("at most partner"), "{}", e.message());
    registry
        .register(register_request(record(
            "88.101.5/RISK-1",
            vec![
                text(1, "URL", "https://e.cn/risk/1"),
                classified(2, "process recipe", C::Private, D::Rd, R::High),
                classified(3, "supplier price", C::Partner, D::Management, R::Medium),
                classified(4, "batch", C::Public, D::Production, R::Low),
            ],
        )))
        .await
        .unwrap();
    registry
        .grant(pb::GrantRequest {
            scope: "88.101.5".into(),
            grantee: "88.101.8".into(),
        })
        .await
        .unwrap();
    let seen = |token: Option<String>| {
        let mut r = node.resolver(token.as_deref());
        async move {
            let mut data: Vec<String> = r
                .resolve(crate::support::resolve("88.101.5/RISK-1"))
                .await
                .unwrap()
                .into_inner()
                .values
                .into_iter()
                .map(|v| String::from_utf8(v.data).unwrap())
                .collect();
            data.sort();
            data
        }
    };
    assert_eq!(seen(None).await, ["batch", "https://e.cn/risk/1"]);
    assert_eq!(
        seen(Some(partner.clone())).await,
        ["batch", "https://e.cn/risk/1", "supplier price"],
        "a granted partner reads medium, never high"
    );
    assert_eq!(seen(Some(owner.clone())).await.len(), 4);
    // The owner reads the domain and risk back.
    let got = registry
        .get(pb::GetRequest {
            identifier: "88.101.5/RISK-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    let v2 = got.values.iter().find(|v| v.index == 2).unwrap();
    assert_eq!((v2.domain, v2.risk), (D::Rd as i32, R::High as i32));
    // An update cannot loosen it either.
    let e = registry
        .update(pb::UpdateRequest {
            identifier: "88.101.5/RISK-1".into(),
            change: Some(pb::update_request::Change::Replace(pb::ValueList {
                values: vec![classified(2, "process recipe", C::Public, D::Rd, R::High)],
            })),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // HTTP: the same rule on PUT, and the fields in Handle JSON.
    let base = format!("http://{}", node.http_addr.unwrap());
    let http = reqwest::Client::new();
    let put = |body: Json| {
        http.put(format!(
            "{base}/api/handles/88.101.5/RISK-2?overwrite=false"
        ))
        .bearer_auth(&owner)
        .json(&body)
        .send()
    };
    let r = put(json!({ "values": [
        { "index": 1, "type": "note", "data": "drawing", "domain": "rd", "risk": "high" }
    ]}))
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        400,
        "public by default: too visible for high risk"
    );
    let body: Json = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("high risk → private"),
        "{body}"
    );
    let r = put(json!({ "values": [
        { "index": 1, "type": "note", "data": "drawing", "domain": "rd", "risk": "high",
          "classification": "private" },
        { "index": 2, "type": "URL", "data": "https://e.cn/risk/2" }
    ]}))
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let public: Json = http
        .get(format!("{base}/api/handles/88.101.5/RISK-2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public["values"].as_array().unwrap().len(), 1, "{public}");
    let own: Json = http
        .get(format!("{base}/api/handles/88.101.5/RISK-2"))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let drawing = &own["values"][0];
    assert_eq!(
        (drawing["domain"].as_str(), drawing["risk"].as_str()),
        (Some("rd"), Some("high"))
    );

    // DNS: only the public values, never the high- or medium-risk ones.
    let (m, _) = udp(
        node.dns_addr.unwrap(),
        &request(name_of("88.101.5/RISK-1"), RecordType::TXT, None),
    )
    .await;
    let answers = txts(&m);
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers
        .iter()
        .all(|t| !t.contains("recipe") && !t.contains("price")));
}

#[tokio::test]
async fn a_template_attribute_sets_a_floor_for_domain_and_risk() {
    let node = TestNode::start().await;
    let owner = node.seed_token("88.101.5");
    let mut registry = node.registry(Some(&owner));
    let attr = |key: &str, domain: pb::DataDomain, risk: pb::Risk| pb::Attribute {
        key: key.into(),
        display_name: key.into(),
        r#type: pb::AttributeType::String as i32,
        domain: domain as i32,
        risk: risk as i32,
        ..Default::default()
    };
    registry
        .register_template(pb::RegisterTemplateRequest {
            template: Some(pb::Template {
                identifier: "88.101.5/TPL-RISK".into(),
                name: "风险模板".into(),
                attributes: vec![
                    attr("formula", pb::DataDomain::Rd, pb::Risk::High),
                    attr("lot", pb::DataDomain::Production, pb::Risk::Low),
                ],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let template = text(1000, "TEMPLATE_ID", "88.101.5/TPL-RISK");
    let with = |formula: pb::Value| {
        record(
            "88.101.5/TPL-RISK-1",
            vec![formula, text(2, "lot", "L1"), template.clone()],
        )
    };
    let formula = |c: pb::Classification, r: pb::Risk, d: pb::DataDomain| pb::Value {
        classification: c as i32,
        risk: r as i32,
        domain: d as i32,
        ..text(1, "formula", "secret")
    };
    use pb::{Classification as C, DataDomain as D, Risk as R};
    for (value, mark) in [
        // No risk of its own: the attribute's high risk still needs private.
        (
            formula(C::Public, R::Unspecified, D::Unspecified),
            "at most private",
        ),
        // A looser risk than the attribute's.
        (
            formula(C::Private, R::Low, D::Unspecified),
            "only be stricter",
        ),
        // Another domain.
        (formula(C::Private, R::High, D::External), "data domain rd"),
    ] {
        let e = registry
            .register(register_request(with(value)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().contains(mark),
            "{} should say {mark}",
            e.message()
        );
    }
    registry
        .register(register_request(with(formula(
            C::Private,
            R::Unspecified,
            D::Unspecified,
        ))))
        .await
        .unwrap();
    // The template reads back with its attributes' domain and risk.
    let t = registry
        .get_template(pb::GetTemplateRequest {
            identifier: "88.101.5/TPL-RISK".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    assert_eq!(t.attributes[0].risk, pb::Risk::High as i32);
    assert_eq!(t.attributes[1].domain, pb::DataDomain::Production as i32);
}
