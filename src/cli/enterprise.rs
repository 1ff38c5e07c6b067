//! `idnode enterprise ...`: enterprise accounts, their tokens and quotas (admin token).

use clap::Subcommand;

use super::canonical::canonical_prefix;
use super::connect::Connection;
use idnode::api::grpc::pb;

#[derive(Subcommand)]
pub enum EnterpriseCommand {
    /// Allocate an enterprise prefix; prints its token once.
    Create {
        prefix: String,
        name: String,
        /// GB/T 4754 industry code, e.g. C3670.
        #[arg(long, default_value = "")]
        industry: String,
        /// The token expires after this many seconds (default: never).
        #[arg(long)]
        token_ttl: Option<u64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Every enterprise with its registered count.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Issue a new token; prints it once.
    Rotate {
        prefix: String,
        /// Keep the newest previous token valid too.
        #[arg(long)]
        keep_previous: bool,
        /// The new token expires after this many seconds (default: never).
        #[arg(long)]
        token_ttl: Option<u64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Set an enterprise's quota (0 or absent: unlimited).
    Quota {
        prefix: String,
        #[arg(long, default_value_t = 0)]
        max_registrations: u64,
        #[arg(long, default_value_t = 0)]
        max_per_day: u64,
        #[arg(long, default_value_t = 0)]
        max_rps: u32,
        #[command(flatten)]
        conn: Connection,
    },
    /// An enterprise's quota and usage.
    Usage {
        prefix: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke every token of an enterprise.
    Revoke {
        prefix: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(cmd: EnterpriseCommand) -> anyhow::Result<()> {
    match cmd {
        EnterpriseCommand::Create {
            prefix,
            name,
            industry,
            token_ttl,
            conn,
        } => {
            let c = conn.connect().await?;
            let r = c
                .admin()
                .create_enterprise(pb::CreateEnterpriseRequest {
                    prefix,
                    name,
                    industry_code: industry,
                    token_ttl_secs: token_ttl.unwrap_or(0),
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let e = r.enterprise.unwrap_or_default();
            if c.json() {
                c.print_json(
                    &serde_json::json!({ "prefix": e.prefix, "name": e.name, "token": r.token }),
                )
            } else {
                println!(
                    "enterprise {} ({}) created\ntoken (shown once): {}",
                    e.prefix, e.name, r.token
                );
                Ok(())
            }
        }
        EnterpriseCommand::List { conn } => {
            let c = conn.connect().await?;
            let r = c
                .admin()
                .list_enterprises(pb::ListEnterprisesRequest {})
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            if c.json() {
                let all: Vec<_> = r.enterprises.iter().map(|e| serde_json::json!({
                    "prefix": e.prefix, "name": e.name, "industry_code": e.industry_code,
                    "registered": e.registered, "active_tokens": e.active_tokens, "created_at": e.created_at,
                })).collect();
                c.print_json(&all)
            } else {
                for e in r.enterprises {
                    println!(
                        "{:<14} {:>10}  {:<6} {}",
                        e.prefix, e.registered, e.industry_code, e.name
                    );
                }
                Ok(())
            }
        }
        EnterpriseCommand::Rotate {
            prefix,
            keep_previous,
            token_ttl,
            conn,
        } => {
            let c = conn.connect().await?;
            let r = c
                .admin()
                .rotate_token(pb::RotateTokenRequest {
                    prefix: prefix.clone(),
                    keep_previous,
                    token_ttl_secs: token_ttl.unwrap_or(0),
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let prefix = canonical_prefix(&prefix);
            if c.json() {
                c.print_json(&serde_json::json!({ "prefix": prefix, "token": r.token }))
            } else {
                println!("new token of {prefix} (shown once): {}", r.token);
                Ok(())
            }
        }
        EnterpriseCommand::Quota {
            prefix,
            max_registrations,
            max_per_day,
            max_rps,
            conn,
        } => {
            let c = conn.connect().await?;
            c.admin()
                .set_quota(pb::SetQuotaRequest {
                    prefix: prefix.clone(),
                    quota: Some(pb::Quota {
                        max_registrations,
                        max_registrations_per_day: max_per_day,
                        max_requests_per_second: max_rps,
                    }),
                })
                .await
                .map_err(|s| c.fail(s))?;
            println!("quota of {} set", canonical_prefix(&prefix));
            Ok(())
        }
        EnterpriseCommand::Usage { prefix, conn } => {
            let c = conn.connect().await?;
            let u = c
                .admin()
                .get_usage(pb::GetUsageRequest { prefix })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let q = u.quota.unwrap_or_default();
            let limit = |v: u64| {
                if v == 0 {
                    "unlimited".to_owned()
                } else {
                    v.to_string()
                }
            };
            if c.json() {
                return c.print_json(&serde_json::json!({
                    "prefix": u.prefix, "registered": u.registered, "registered_today": u.registered_today,
                    "max_registrations": q.max_registrations, "max_registrations_per_day": q.max_registrations_per_day,
                    "max_requests_per_second": q.max_requests_per_second,
                }));
            }
            println!(
                "{}: {} registered (limit {}), {} today (limit {}), request rate limit {}",
                u.prefix,
                u.registered,
                limit(q.max_registrations),
                u.registered_today,
                limit(q.max_registrations_per_day),
                limit(q.max_requests_per_second as u64)
            );
            Ok(())
        }
        EnterpriseCommand::Revoke { prefix, conn } => {
            let c = conn.connect().await?;
            c.admin()
                .revoke_tokens(pb::RevokeTokensRequest {
                    prefix: prefix.clone(),
                })
                .await
                .map_err(|s| c.fail(s))?;
            println!("revoked every token of {}", canonical_prefix(&prefix));
            Ok(())
        }
    }
}
