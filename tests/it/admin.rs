//! Enterprise accounts and tokens over gRPC.

use idnode::api::grpc::pb;
use tonic::Code;

use crate::support::{record, register_request, text, TestNode};

fn ent(prefix: &str, name: &str) -> pb::CreateEnterpriseRequest {
    pb::CreateEnterpriseRequest {
        prefix: prefix.into(),
        name: name.into(),
        industry_code: "C3832".into(),
        token_ttl_secs: 0,
    }
}

async fn can_write(node: &TestNode, token: &str, id: &str) -> Result<(), Code> {
    node.registry(Some(token))
        .register(register_request(record(
            id,
            vec![text(1, "URL", "https://e.cn")],
        )))
        .await
        .map(|_| ())
        .map_err(|s| s.code())
}

#[tokio::test]
async fn enterprises_are_allocated_by_the_admin_only() {
    let node = TestNode::start_empty().await;
    let mut admin = node.admin(Some(&node.admin_token));
    let r = admin
        .create_enterprise(ent("88.101.8", "光谷光纤"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.token.starts_with("idn_"));
    let e = r.enterprise.unwrap();
    assert_eq!(
        (e.prefix.as_str(), e.name.as_str(), e.active_tokens),
        ("88.101.8", "光谷光纤", 1)
    );

    let cases = [
        (ent("88.101.8", "again"), Code::AlreadyExists),
        (ent("88.101.8.1", "inside another"), Code::AlreadyExists),
        (
            ent("88.101", "the node prefix itself"),
            Code::InvalidArgument,
        ),
        (ent("88.102.1", "another node"), Code::InvalidArgument),
        (ent("88.101.9", ""), Code::InvalidArgument),
        (ent("88.101.9_", "bad prefix"), Code::InvalidArgument),
    ];
    for (req, code) in cases {
        let what = format!("{req:?}");
        let e = admin.create_enterprise(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{what}");
    }
    // An enterprise token or no token cannot allocate.
    let e = node
        .admin(Some(&r.token))
        .create_enterprise(ent("88.101.9", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = node
        .admin(None)
        .create_enterprise(ent("88.101.9", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = node
        .admin(Some(&r.token))
        .list_enterprises(pb::ListEnterprisesRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    can_write(&node, &r.token, "88.101.8/F-1").await.unwrap();
    admin
        .create_enterprise(ent("88.101.12", "虾乡"))
        .await
        .unwrap();
    let list = admin
        .list_enterprises(pb::ListEnterprisesRequest {})
        .await
        .unwrap()
        .into_inner()
        .enterprises;
    let got: Vec<_> = list
        .iter()
        .map(|e| (e.prefix.as_str(), e.registered))
        .collect();
    assert_eq!(got, [("88.101.12", 0), ("88.101.8", 1)]);
}

#[tokio::test]
async fn rotation_and_revocation() {
    let node = TestNode::start_empty().await;
    let old = node.enterprise("88.101.8", "F").await;
    let mut admin = node.admin(Some(&node.admin_token));
    let rotate = |keep| pb::RotateTokenRequest {
        prefix: "88.101.8".into(),
        keep_previous: keep,
        token_ttl_secs: 0,
    };

    // Plain rotation: the old token stops working at once.
    let new = admin
        .rotate_token(rotate(false))
        .await
        .unwrap()
        .into_inner()
        .token;
    assert_eq!(
        can_write(&node, &old, "88.101.8/a").await,
        Err(Code::Unauthenticated)
    );
    can_write(&node, &new, "88.101.8/a").await.unwrap();

    // Overlapping rotation, by the enterprise itself: both work until the next rotation.
    let newer = node
        .admin(Some(&new))
        .rotate_token(rotate(true))
        .await
        .unwrap()
        .into_inner()
        .token;
    can_write(&node, &new, "88.101.8/b").await.unwrap();
    can_write(&node, &newer, "88.101.8/c").await.unwrap();
    let newest = admin
        .rotate_token(rotate(true))
        .await
        .unwrap()
        .into_inner()
        .token;
    assert_eq!(
        can_write(&node, &new, "88.101.8/d").await,
        Err(Code::Unauthenticated)
    );
    can_write(&node, &newer, "88.101.8/d").await.unwrap();
    can_write(&node, &newest, "88.101.8/e").await.unwrap();

    // Another enterprise cannot rotate someone else's token.
    let other = node.enterprise("88.101.9", "G").await;
    let e = node
        .admin(Some(&other))
        .rotate_token(rotate(false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Revocation: nothing works; records stay; the admin can issue a fresh token.
    admin
        .revoke_tokens(pb::RevokeTokensRequest {
            prefix: "88.101.8".into(),
        })
        .await
        .unwrap();
    for t in [&newer, &newest] {
        assert_eq!(
            can_write(&node, t, "88.101.8/f").await,
            Err(Code::Unauthenticated)
        );
    }
    let listed = admin
        .list_enterprises(pb::ListEnterprisesRequest {})
        .await
        .unwrap()
        .into_inner()
        .enterprises;
    let f = listed.iter().find(|e| e.prefix == "88.101.8").unwrap();
    assert_eq!((f.active_tokens, f.registered), (0, 5));
    let fresh = admin
        .rotate_token(rotate(false))
        .await
        .unwrap()
        .into_inner()
        .token;
    can_write(&node, &fresh, "88.101.8/f").await.unwrap();
    let e = admin
        .rotate_token(pb::RotateTokenRequest {
            prefix: "88.101.77".into(),
            keep_previous: false,
            token_ttl_secs: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn admin_token_file_is_private_and_stable_across_restarts() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(dir.path(), false).await;
    let token = node.admin_token.clone();
    let mode = std::fs::metadata(dir.path().join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    node.stop().await;
    let node = TestNode::start_in(dir.path(), false).await;
    assert_eq!(node.admin_token, token);
    node.admin(Some(&token))
        .list_enterprises(pb::ListEnterprisesRequest {})
        .await
        .unwrap();
    // The store holds only a hash of the token's secret.
    node.stop().await;
    let secret = token.rsplit('_').next().unwrap().to_owned();
    let mut found = false;
    for entry in walk(&dir.path().join("db")) {
        let bytes = std::fs::read(&entry).unwrap();
        if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
            found = true;
        }
    }
    assert!(!found, "the token secret must not be stored");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
