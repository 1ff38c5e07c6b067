//! `idnode.v1.Registry`: records, the `BatchRegister` stream, listings, counts, templates,
//! grants and proofs.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, status};
use super::{call, pb, presented};
use crate::auth::Caller;
use crate::error::Error;
use crate::resolver::{BatchItem, Core, RegisterOutcome, Update};
use crate::telemetry::Telemetry;

/// `idnode.v1.Registry`.
pub struct RegistryService {
    core: Arc<Core>,
    telemetry: Arc<Telemetry>,
}

impl RegistryService {
    pub fn new(core: Arc<Core>, telemetry: Arc<Telemetry>) -> RegistryService {
        RegistryService { core, telemetry }
    }
}

type BatchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::BatchRegisterResponse, Status>> + Send>>;

fn record_from(
    core: &Core,
    r: pb::Record,
) -> Result<(crate::identifier::Identifier, crate::record::Record), Error> {
    let id = core.parse_identifier(&r.identifier)?;
    let values = convert::values_from(r.values)?;
    Ok((id, crate::record::Record::new(values)))
}

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
    async fn register(
        &self,
        mut req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let record = req
            .get_mut()
            .record
            .take()
            .ok_or_else(|| Status::invalid_argument("record is required"))?;
        let (id, record) = record_from(&self.core, record).map_err(status)?;
        call(
            &self.core,
            &self.telemetry,
            &req,
            "register",
            move |c, caller| {
                let outcome = c.register(caller, id, record)?;
                Ok(pb::RegisterResponse {
                    registered: outcome == RegisterOutcome::Registered,
                })
            },
        )
        .await
    }

    async fn update(
        &self,
        mut req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        let id = self
            .core
            .parse_identifier(&req.get_ref().identifier)
            .map_err(status)?;
        let update = match req.get_mut().change.take() {
            Some(pb::update_request::Change::Replace(list)) => {
                Update::Replace(convert::values_from(list.values).map_err(status)?)
            }
            Some(pb::update_request::Change::Edit(edit)) => Update::Edit {
                add: convert::values_from(edit.add).map_err(status)?,
                modify: convert::values_from(edit.modify).map_err(status)?,
                remove: edit.remove,
                put: convert::values_from(edit.put).map_err(status)?,
            },
            None => {
                return Err(Status::invalid_argument(
                    "one of replace or edit is required",
                ))
            }
        };
        call(
            &self.core,
            &self.telemetry,
            &req,
            "update",
            move |c, caller| {
                let record = c.update(caller, &id, update)?;
                Ok(pb::UpdateResponse {
                    record: Some(convert::record_to(&id, record)),
                })
            },
        )
        .await
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let id = self
            .core
            .parse_identifier(&req.get_ref().identifier)
            .map_err(status)?;
        call(
            &self.core,
            &self.telemetry,
            &req,
            "delete",
            move |c, caller| {
                c.delete(caller, &id)?;
                Ok(pb::DeleteResponse {})
            },
        )
        .await
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let id = self
            .core
            .parse_identifier(&req.get_ref().identifier)
            .map_err(status)?;
        call(
            &self.core,
            &self.telemetry,
            &req,
            "get",
            move |c, caller| {
                let record = c.get(caller, &id)?;
                Ok(pb::GetResponse {
                    record: Some(convert::record_to(&id, record)),
                })
            },
        )
        .await
    }

    type BatchRegisterStream = BatchStream;

    async fn batch_register(
        &self,
        req: Request<Streaming<pb::BatchRegisterRequest>>,
    ) -> Result<Response<Self::BatchRegisterStream>, Status> {
        let presented = presented(&req)?;
        // A stream's request id names each message's write by its first record's position
        // in the stream, `<id>@<position>`: a stream sent again is applied once.
        let request = super::request_id(&req)?;
        let credential = presented.credential().map(str::to_owned);
        let caller = self
            .core
            .blocking(move |c| c.caller(&presented))
            .await
            .map_err(status)?;
        if caller == Caller::Anonymous {
            return Err(Status::unauthenticated("BatchRegister needs a token"));
        }
        let core = Arc::clone(&self.core);
        let max_items = core.config().max_batch_items;
        let mut inbound = req.into_inner();
        // One response in flight at most: the next request is read only when the client has
        // room for the previous answer, so HTTP/2 flow control bounds memory end to end.
        let (tx, rx) = mpsc::channel(1);
        // The stream is read, decoded, checked and written at a lower CPU priority: an
        // import takes what resolutions leave (`blocking::spawn_bulk`).
        crate::blocking::spawn_bulk(async move {
            // Two stages: message n+1 is converted and checked (`prepare_batch`, no lock)
            // while message n is written (`write_batch`), so an import keeps both cores
            // busy; answers still go out in order, and a message is acknowledged only once
            // written. At most one message in each stage.
            let mut position = 0u64;
            let mut writing: Option<Writing> = None;
            loop {
                // A written message is answered at once, also while the client waits for
                // that answer before sending more.
                let next = tokio::select! {
                    biased;
                    written = async { writing.as_mut().expect("guarded").await },
                        if writing.is_some() =>
                    {
                        writing = None;
                        if !send_written(&tx, written).await {
                            return;
                        }
                        continue;
                    }
                    next = inbound.message() => next,
                };
                let msg = match next {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "BatchRegister stream ended by client");
                        break;
                    }
                };
                if msg.records.len() > max_items {
                    if let Some(w) = writing.take() {
                        if !answer(&tx, w).await {
                            return;
                        }
                    }
                    let _ = tx
                        .send(Err(Status::resource_exhausted(format!(
                            "a BatchRegister message carries at most {max_items} records, got {}",
                            msg.records.len()
                        ))))
                        .await;
                    return;
                }
                let start = position;
                position += msg.records.len() as u64;
                let who = caller.clone();
                let prepared = core
                    .blocking(move |c| {
                        let names: Vec<String> =
                            msg.records.iter().map(|r| r.identifier.clone()).collect();
                        let items: Vec<BatchItem> = msg
                            .records
                            .into_iter()
                            .map(|r| {
                                let name = r.identifier.clone();
                                match record_from(c, r) {
                                    Ok((id, rec)) => (Ok(id), rec),
                                    Err(e) => (
                                        Err(Error::new(e.kind, format!("{name}: {}", e.message))),
                                        Default::default(),
                                    ),
                                }
                            })
                            .collect();
                        Ok((names, c.prepare_batch(&who, items)))
                    })
                    .await;
                if let Some(w) = writing.take() {
                    if !answer(&tx, w).await {
                        return;
                    }
                }
                let (names, prepared) = match prepared {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                };
                let (core, who) = (Arc::clone(&core), caller.clone());
                let named = request.as_ref().map(|id| format!("{id}@{start}"));
                let credential = credential.clone();
                writing = Some(tokio::spawn(async move {
                    core.blocking(move |c| {
                        let outcomes = crate::resolver::as_request(
                            named.as_deref(),
                            credential.as_deref(),
                            || c.write_batch(&who, prepared),
                        );
                        Ok(pb::BatchRegisterResponse {
                            results: outcomes
                                .into_iter()
                                .zip(names)
                                .enumerate()
                                .map(|(i, (outcome, identifier))| {
                                    item_result(start + i as u64, identifier, outcome)
                                })
                                .collect(),
                        })
                    })
                    .await
                    .map_err(status)
                }));
            }
            if let Some(w) = writing {
                answer(&tx, w).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let r = req.get_ref();
        let prefix = self.core.parse_prefix(&r.prefix).map_err(status)?;
        let page_size = if r.page_size == 0 {
            100
        } else {
            r.page_size as usize
        };
        let cursor = (!r.cursor.is_empty()).then(|| r.cursor.clone());
        call(
            &self.core,
            &self.telemetry,
            &req,
            "list",
            move |c, caller| {
                let page = c.list(caller, &prefix, cursor.as_deref(), page_size)?;
                Ok(pb::ListResponse {
                    identifiers: page.identifiers.iter().map(|i| i.to_string()).collect(),
                    next_cursor: page.next_cursor.unwrap_or_default(),
                })
            },
        )
        .await
    }

    async fn get_counts(
        &self,
        req: Request<pb::GetCountsRequest>,
    ) -> Result<Response<pb::GetCountsResponse>, Status> {
        call(
            &self.core,
            &self.telemetry,
            &req,
            "get_counts",
            |c, caller| {
                let counts = c.counts(caller)?;
                Ok(pb::GetCountsResponse {
                    node_registered: counts.node_registered,
                    prefixes: counts
                        .prefixes
                        .into_iter()
                        .map(|(prefix, count)| pb::PrefixCount {
                            prefix,
                            registered: count,
                        })
                        .collect(),
                })
            },
        )
        .await
    }

    async fn register_template(
        &self,
        mut req: Request<pb::RegisterTemplateRequest>,
    ) -> Result<Response<pb::RegisterTemplateResponse>, Status> {
        let template = req
            .get_mut()
            .template
            .take()
            .ok_or_else(|| Status::invalid_argument("template is required"))?;
        let template = convert::template_from(template).map_err(status)?;
        call(
            &self.core,
            &self.telemetry,
            &req,
            "register_template",
            move |c, caller| {
                let outcome = c.register_template(caller, template)?;
                Ok(pb::RegisterTemplateResponse {
                    registered: outcome == RegisterOutcome::Registered,
                })
            },
        )
        .await
    }

    async fn get_template(
        &self,
        req: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::GetTemplateResponse>, Status> {
        let id = self
            .core
            .parse_identifier(&req.get_ref().identifier)
            .map_err(status)?;
        call(
            &self.core,
            &self.telemetry,
            &req,
            "get_template",
            move |c, _| {
                let t = c.template(&id)?;
                Ok(pb::GetTemplateResponse {
                    template: Some(convert::template_to(&t)),
                })
            },
        )
        .await
    }

    async fn list_templates(
        &self,
        req: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        let text = req.get_ref().prefix.clone();
        let prefix = if text.is_empty() {
            None
        } else {
            Some(self.core.parse_prefix(&text).map_err(status)?)
        };
        call(
            &self.core,
            &self.telemetry,
            &req,
            "list_templates",
            move |c, _| {
                let templates = c.list_templates(prefix.as_ref())?;
                Ok(pb::ListTemplatesResponse {
                    templates: templates.iter().map(convert::template_to).collect(),
                })
            },
        )
        .await
    }

    async fn grant(
        &self,
        req: Request<pb::GrantRequest>,
    ) -> Result<Response<pb::GrantResponse>, Status> {
        let (scope, grantee) = grant_args(&self.core, req.get_ref())?;
        call(
            &self.core,
            &self.telemetry,
            &req,
            "grant",
            move |c, caller| {
                c.grant(caller, &scope, &grantee)?;
                Ok(pb::GrantResponse {})
            },
        )
        .await
    }

    async fn revoke_grant(
        &self,
        req: Request<pb::GrantRequest>,
    ) -> Result<Response<pb::GrantResponse>, Status> {
        let (scope, grantee) = grant_args(&self.core, req.get_ref())?;
        call(
            &self.core,
            &self.telemetry,
            &req,
            "revoke_grant",
            move |c, caller| {
                c.revoke_grant(caller, &scope, &grantee)?;
                Ok(pb::GrantResponse {})
            },
        )
        .await
    }

    async fn list_grants(
        &self,
        req: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        let prefix = self
            .core
            .parse_prefix(&req.get_ref().prefix)
            .map_err(status)?;
        call(
            &self.core,
            &self.telemetry,
            &req,
            "list_grants",
            move |c, caller| {
                Ok(pb::ListGrantsResponse {
                    grants: c
                        .grants(caller, &prefix)?
                        .into_iter()
                        .map(|g| pb::GrantInfo {
                            scope: g.scope,
                            grantee: g.grantee,
                            granted_at: g.granted_at,
                        })
                        .collect(),
                })
            },
        )
        .await
    }

    async fn get_proof(
        &self,
        req: Request<pb::GetProofRequest>,
    ) -> Result<Response<pb::GetProofResponse>, Status> {
        let id = self
            .core
            .parse_identifier(&req.get_ref().identifier)
            .map_err(status)?;
        call(
            &self.core,
            &self.telemetry,
            &req,
            "get_proof",
            move |c, caller| {
                let p = c.proof(caller, &id)?;
                Ok(pb::GetProofResponse {
                    entries: p.entries.into_iter().map(convert::log_entry_to).collect(),
                    consistent: p.consistent,
                    head_seq: p.head.0,
                    head_hash: p.head.1,
                })
            },
        )
        .await
    }
}

fn grant_args(
    core: &Core,
    r: &pb::GrantRequest,
) -> Result<(crate::resolver::Scope, crate::identifier::Prefix), Status> {
    Ok((
        crate::resolver::Scope::parse(core, &r.scope).map_err(status)?,
        core.parse_prefix(&r.grantee).map_err(status)?,
    ))
}

/// Sends the answer of a written BatchRegister message; false when the stream must end (the
/// client left, or the write failed).
async fn answer(
    tx: &mpsc::Sender<Result<pb::BatchRegisterResponse, Status>>,
    writing: Writing,
) -> bool {
    send_written(tx, writing.await).await
}

async fn send_written(
    tx: &mpsc::Sender<Result<pb::BatchRegisterResponse, Status>>,
    written: Result<Result<pb::BatchRegisterResponse, Status>, tokio::task::JoinError>,
) -> bool {
    let answer = written
        .unwrap_or_else(|e| Err(Status::internal(format!("BatchRegister write failed: {e}"))));
    let failed = answer.is_err();
    tx.send(answer).await.is_ok() && !failed
}

/// A BatchRegister message being written.
type Writing = tokio::task::JoinHandle<Result<pb::BatchRegisterResponse, Status>>;

fn item_result(
    position: u64,
    identifier: String,
    outcome: Result<RegisterOutcome, Error>,
) -> pb::ItemResult {
    match outcome {
        Ok(o) => pb::ItemResult {
            position,
            identifier,
            code: 0,
            message: String::new(),
            registered: o == RegisterOutcome::Registered,
        },
        Err(e) => pb::ItemResult {
            position,
            identifier,
            code: convert::code(e.kind) as i32,
            message: e.message,
            registered: false,
        },
    }
}
