//! The DNS request handler on arbitrary packets, over a core holding a few records:
//! never panics, every answer is a well-formed response to the query's ID that fits the
//! transport, and the receive threads' immediate path answers exactly as the async one.
#![no_main]

use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Message, MessageType};
use idnode::api::admission::{Admission, AdmissionConfig};
use idnode::api::dns::{DnsConfig, DnsHandler, Now, Transport};
use idnode::auth::Caller;
use idnode::identifier::{Identifier, Prefix};
use idnode::record::{Record, Value};
use idnode::resolver::{Core, CoreConfig};
use idnode::store::memory::MemoryStore;
use libfuzzer_sys::fuzz_target;

struct World {
    rt: tokio::runtime::Runtime,
    handler: DnsHandler,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let core = Core::open(
            Arc::new(MemoryStore::new()),
            CoreConfig::new(Prefix::parse("88.101").unwrap()),
            None,
        )
        .unwrap();
        let big: Vec<Value> = (1..=40)
            .map(|i| Value::text(i, "note", &"x".repeat(200)))
            .collect();
        let id = |s: &str| Ok(Identifier::parse(s).unwrap());
        let items = vec![
            (
                id("88.101.5/BAT-2025-000001"),
                Record::new(vec![
                    Value::text(1, "URL", "https://trace.example.cn/p/BAT-2025-000001"),
                    Value::text(2, "partNumber", "DF-BRK-4402"),
                ]),
            ),
            (id("88.101.5/Big.Record_1"), Record::new(big)),
        ];
        core.batch_register(&Caller::Admin, items);
        let zone = hickory_proto::rr::Name::from_ascii("id.example.").unwrap();
        World {
            // Time: deferred answers run under the request timeout.
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap(),
            handler: DnsHandler::new(
                Arc::new(core),
                DnsConfig::new(zone),
                Arc::new(Admission::new(AdmissionConfig::default())),
                Arc::new(idnode::telemetry::Telemetry::new()),
            ),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, packet)) = data.split_first() else {
        return;
    };
    let transport = if mode & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let w = world();
    let answer = w.rt.block_on(w.handler.handle(packet, transport, None));
    // The receive threads' path gives the same answer whenever it answers at once (with an
    // in-memory store, every local identifier; other prefixes are deferred).
    if let Now::Answer(now) = w.handler.handle_now(packet, transport, None) {
        assert_eq!(now, answer, "handle_now and handle differ");
    }
    let Some(answer) = answer else {
        return;
    };
    assert!(packet.len() >= 2, "answered a packet without an ID");
    assert_eq!(&answer[..2], &packet[..2], "answer carries another ID");
    let max = match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => idnode::api::dns::MAX_UDP_PAYLOAD as usize,
    };
    assert!(
        answer.len() <= max,
        "{} bytes over {transport:?}",
        answer.len()
    );
    let message = Message::from_vec(&answer).expect("answers parse");
    assert_eq!(message.metadata.message_type, MessageType::Response);
});
