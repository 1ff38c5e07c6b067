//! BatchRegister: long streams, per-item results, bounded chunks.

use idnode::api::grpc::pb;
use tonic::Code;

use crate::support::{record, resolve, text, TestNode};

/// Item `i` of the stream: every 97th is invalid in one of several ways, every 1000th
/// repeats an earlier identifier with identical content (allowed), every 1001st repeats one
/// with different content (ALREADY_EXISTS).
fn item(i: usize) -> (pb::Record, Code) {
    if i % 97 == 13 {
        let bad = match (i / 97) % 4 {
            0 => record(&format!("88.101.7/bad {i}\n"), vec![text(1, "URL", "u")]),
            1 => record(&format!("88.101.8/not-ours-{i}"), vec![text(1, "URL", "u")]),
            2 => record(
                &format!("88.101.7/dup-{i}"),
                vec![text(1, "URL", "u"), text(1, "URL", "v")],
            ),
            _ => record(&format!("88.101.7/empty-{i}"), vec![]),
        };
        let code = if (i / 97) % 4 == 1 {
            Code::PermissionDenied
        } else {
            Code::InvalidArgument
        };
        return (bad, code);
    }
    if i > 0 && i.is_multiple_of(1000) {
        return (good(original(i - 500)), Code::Ok);
    }
    if i > 0 && i.is_multiple_of(1001) {
        let mut r = good(original(i - 600));
        r.values[0].data = b"different".to_vec();
        return (r, Code::AlreadyExists);
    }
    (good(i), Code::Ok)
}

/// The nearest item at or before `j` that registered `good(j)` itself.
fn original(mut j: usize) -> usize {
    while j % 97 == 13 || (j > 0 && (j.is_multiple_of(1000) || j.is_multiple_of(1001))) {
        j -= 1;
    }
    j
}

fn good(i: usize) -> pb::Record {
    record(
        &format!("88.101.7/P{i:07}"),
        vec![
            text(1, "URL", &format!("https://trace.example.cn/p/{i}")),
            text(2, "batchNo", &format!("B{:04}", i / 1000)),
            text(3, "productionDate", "2025-06-01"),
        ],
    )
}

#[tokio::test]
async fn a_hundred_thousand_records_with_bad_items_mixed_in() {
    const N: usize = 100_000;
    const CHUNK: usize = 1000;
    let node = TestNode::start_empty().await;
    let token = node.enterprise("88.101.7", "Batch Co").await;
    node.enterprise("88.101.8", "Other Co").await;

    // Generate lazily: the client never holds the whole stream either.
    let requests =
        tokio_stream::iter((0..N).step_by(CHUNK).map(|start| pb::BatchRegisterRequest {
            records: (start..(start + CHUNK).min(N)).map(|i| item(i).0).collect(),
        }));
    let mut responses = node
        .registry(Some(&token))
        .batch_register(requests)
        .await
        .unwrap()
        .into_inner();
    let mut seen = 0usize;
    let (mut created, mut failed) = (0i64, 0usize);
    while let Some(resp) = responses.message().await.unwrap() {
        for r in resp.results {
            let i = r.position as usize;
            assert_eq!(i, seen, "results come in stream order");
            seen += 1;
            let (rec, expected) = item(i);
            assert_eq!(r.identifier, rec.identifier);
            assert_eq!(Code::from_i32(r.code), expected, "item {i}: {}", r.message);
            if expected == Code::Ok {
                // Repeats of identical content succeed without writing.
                let repeat = i > 0 && i.is_multiple_of(1000);
                assert_eq!(r.registered, !repeat, "item {i}");
                created += r.registered as i64;
            } else {
                assert!(!r.message.is_empty());
                failed += 1;
            }
        }
    }
    assert_eq!(seen, N);
    assert!(failed > 1000, "the stream had bad items: {failed}");
    let counts = node
        .registry(Some(&token))
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.node_registered, created);
    assert_eq!(counts.prefixes[0].registered, created);
    // Spot-check the stored values.
    for i in [0usize, 1, 4_999, 99_999] {
        let r = node
            .resolver(None)
            .resolve(resolve(&format!("88.101.7/P{i:07}")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.values[0].data,
            format!("https://trace.example.cn/p/{i}").into_bytes()
        );
    }
    // The identifiers that failed were not written.
    let e = node
        .resolver(None)
        .resolve(resolve("88.101.7/dup-207"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn batch_rules() {
    let node = TestNode::start_empty().await;
    let token = node.enterprise("88.101.7", "Batch Co").await;
    // Anonymous streams are refused up front.
    let e = node
        .registry(None)
        .batch_register(tokio_stream::iter(vec![pb::BatchRegisterRequest {
            records: vec![good(1)],
        }]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // A chunk over the limit ends the stream with RESOURCE_EXHAUSTED after earlier answers.
    let requests = vec![
        pb::BatchRegisterRequest {
            records: vec![good(1), good(2)],
        },
        pb::BatchRegisterRequest {
            records: (0..2001).map(good).collect(),
        },
    ];
    let mut responses = node
        .registry(Some(&token))
        .batch_register(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let first = responses.message().await.unwrap().unwrap();
    assert_eq!(first.results.len(), 2);
    let e = responses.message().await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);

    // The same identifier twice in one chunk: identical is fine, different is ALREADY_EXISTS.
    let mut changed = good(5);
    changed.values[0].data = b"x".to_vec();
    let mut responses = node
        .registry(Some(&token))
        .batch_register(tokio_stream::iter(vec![pb::BatchRegisterRequest {
            records: vec![good(5), good(5), changed],
        }]))
        .await
        .unwrap()
        .into_inner();
    let r = responses.message().await.unwrap().unwrap().results;
    let got: Vec<_> = r
        .iter()
        .map(|r| (Code::from_i32(r.code), r.registered))
        .collect();
    assert_eq!(
        got,
        [
            (Code::Ok, true),
            (Code::Ok, false),
            (Code::AlreadyExists, false)
        ]
    );
    let counts = node
        .registry(Some(&token))
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.node_registered, 3);
}

/// Messages are prepared while the previous one is written, but each is answered as soon
/// as it is written: a client that waits for every answer before sending more goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_is_answered_before_the_next_is_sent() {
    let node = TestNode::start_empty().await;
    let token = node.enterprise("88.101.7", "Batch Co").await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut responses = node
        .registry(Some(&token))
        .batch_register(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for chunk in 0..5usize {
        let records: Vec<_> = (chunk * 10..chunk * 10 + 10).map(good).collect();
        tx.send(pb::BatchRegisterRequest { records }).await.unwrap();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), responses.message())
            .await
            .expect("answered without the next message")
            .unwrap()
            .unwrap();
        assert_eq!(answer.results.len(), 10);
        assert_eq!(answer.results[0].position, chunk as u64 * 10);
        assert!(answer.results.iter().all(|r| r.code == 0), "{answer:?}");
    }
    drop(tx);
    assert!(responses.message().await.unwrap().is_none());
    let got = node
        .resolver(None)
        .resolve(resolve("88.101.7/P0000049"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.values.len(), good(49).values.len());
}
