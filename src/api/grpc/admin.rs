//! `idnode.v1.Admin`: enterprises, tokens, quotas, usage, node information, backups.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, status};
use super::{call, pb};
use crate::error::Error;
use crate::resolver::{Core, Interface};
use crate::telemetry::Telemetry;

/// `idnode.v1.Admin`.
pub struct AdminService {
    core: Arc<Core>,
    telemetry: Arc<Telemetry>,
}

impl AdminService {
    pub fn new(core: Arc<Core>, telemetry: Arc<Telemetry>) -> AdminService {
        AdminService { core, telemetry }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn create_enterprise(
        &self,
        req: Request<pb::CreateEnterpriseRequest>,
    ) -> Result<Response<pb::CreateEnterpriseResponse>, Status> {
        let r = req.get_ref();
        let prefix = self.core.parse_prefix(&r.prefix).map_err(status)?;
        let (name, industry) = (r.name.clone(), r.industry_code.clone());
        let ttl = (r.token_ttl_secs > 0).then_some(r.token_ttl_secs);
        call(
            &self.core,
            &self.telemetry,
            &req,
            "create_enterprise",
            move |c, caller| {
                let (enterprise, token) =
                    c.create_enterprise(caller, &prefix, &name, &industry, ttl)?;
                Ok(pb::CreateEnterpriseResponse {
                    enterprise: Some(convert::enterprise_to(&enterprise, 0)),
                    token,
                })
            },
        )
        .await
    }

    async fn list_enterprises(
        &self,
        req: Request<pb::ListEnterprisesRequest>,
    ) -> Result<Response<pb::ListEnterprisesResponse>, Status> {
        call(
            &self.core,
            &self.telemetry,
            &req,
            "list_enterprises",
            |c, caller| {
                let all = c.list_enterprises(caller)?;
                let enterprises = all
                    .iter()
                    .map(|e| {
                        let count = crate::identifier::Prefix::parse(&e.prefix)
                            .map_err(Error::internal)
                            .and_then(|p| c.count_of(&p))?;
                        Ok(convert::enterprise_to(e, count))
                    })
                    .collect::<Result<_, Error>>()?;
                Ok(pb::ListEnterprisesResponse { enterprises })
            },
        )
        .await
    }

    async fn rotate_token(
        &self,
        req: Request<pb::RotateTokenRequest>,
    ) -> Result<Response<pb::RotateTokenResponse>, Status> {
        let prefix = self
            .core
            .parse_prefix(&req.get_ref().prefix)
            .map_err(status)?;
        let keep = req.get_ref().keep_previous;
        let ttl = (req.get_ref().token_ttl_secs > 0).then_some(req.get_ref().token_ttl_secs);
        call(
            &self.core,
            &self.telemetry,
            &req,
            "rotate_token",
            move |c, caller| {
                Ok(pb::RotateTokenResponse {
                    token: c.rotate_token(caller, &prefix, keep, ttl)?,
                })
            },
        )
        .await
    }

    async fn revoke_tokens(
        &self,
        req: Request<pb::RevokeTokensRequest>,
    ) -> Result<Response<pb::RevokeTokensResponse>, Status> {
        let prefix = self
            .core
            .parse_prefix(&req.get_ref().prefix)
            .map_err(status)?;
        call(
            &self.core,
            &self.telemetry,
            &req,
            "revoke_tokens",
            move |c, caller| {
                c.revoke_tokens(caller, &prefix)?;
                Ok(pb::RevokeTokensResponse {})
            },
        )
        .await
    }

    async fn get_node_info(
        &self,
        req: Request<pb::GetNodeInfoRequest>,
    ) -> Result<Response<pb::GetNodeInfoResponse>, Status> {
        call(
            &self.core,
            &self.telemetry,
            &req,
            "get_node_info",
            |c, _| {
                let cfg = c.config();
                let (mut local, mut forwarded) = (0, 0);
                for via in Interface::ALL {
                    let (l, f) = c.resolutions().get(via);
                    local += l;
                    forwarded += f;
                }
                let mut info = pb::GetNodeInfoResponse {
                    node_prefix: cfg.node_prefix.to_string(),
                    node_name: cfg.node_name.clone(),
                    registered: c.node_registered()?,
                    enterprises: c.enterprise_count() as u32,
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    resolved_local: local,
                    resolved_forwarded: forwarded,
                    ..Default::default()
                };
                if let Some(remote) = c.remote() {
                    let s = remote.stats();
                    info.cache_hits = s.cache_hits;
                    info.stale_answers = s.stale_answers;
                    info.upstream_calls = s.upstream_calls;
                    info.remote_calls = s.remote_calls;
                    info.upstream = remote.describe();
                }
                Ok(info)
            },
        )
        .await
    }

    async fn set_quota(
        &self,
        req: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::SetQuotaResponse>, Status> {
        let prefix = self
            .core
            .parse_prefix(&req.get_ref().prefix)
            .map_err(status)?;
        let quota = convert::quota_from(req.get_ref().quota.unwrap_or_default());
        call(
            &self.core,
            &self.telemetry,
            &req,
            "set_quota",
            move |c, caller| {
                c.set_quota(caller, &prefix, quota)?;
                Ok(pb::SetQuotaResponse {})
            },
        )
        .await
    }

    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        let destination = req.get_ref().destination.clone();
        call(
            &self.core,
            &self.telemetry,
            &req,
            "backup",
            move |c, caller| {
                c.backup(caller, std::path::Path::new(&destination))
                    .map(convert::backup_to)
            },
        )
        .await
    }

    async fn get_usage(
        &self,
        req: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        let prefix = self
            .core
            .parse_prefix(&req.get_ref().prefix)
            .map_err(status)?;
        call(
            &self.core,
            &self.telemetry,
            &req,
            "get_usage",
            move |c, caller| {
                let u = c.usage(caller, &prefix)?;
                Ok(pb::GetUsageResponse {
                    prefix: u.prefix,
                    quota: Some(convert::quota_to(&u.quota)),
                    registered: u.registered,
                    registered_today: u.registered_today,
                })
            },
        )
        .await
    }
}
