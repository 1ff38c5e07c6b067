//! `idnode grant ...`: partner read access to PARTNER-classified values.

use clap::Subcommand;

use super::canonical::{canonical_prefix, canonical_scope};
use super::connect::Connection;
use idnode::api::grpc::pb;

#[derive(Subcommand)]
pub enum GrantCommand {
    /// Let GRANTEE (an enterprise prefix) read the partner values under SCOPE (a prefix or
    /// an identifier you own).
    Add {
        scope: String,
        grantee: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Take a grant back.
    Revoke {
        scope: String,
        grantee: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// The grants under a prefix you own.
    List {
        prefix: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(cmd: GrantCommand) -> anyhow::Result<()> {
    match cmd {
        GrantCommand::Add {
            scope,
            grantee,
            conn,
        } => {
            let c = conn.connect().await?;
            c.registry()
                .grant(pb::GrantRequest {
                    scope: scope.clone(),
                    grantee: grantee.clone(),
                })
                .await
                .map_err(|s| c.fail(s))?;
            println!(
                "{} may read the partner values under {}",
                canonical_prefix(&grantee),
                canonical_scope(&scope)
            );
            Ok(())
        }
        GrantCommand::Revoke {
            scope,
            grantee,
            conn,
        } => {
            let c = conn.connect().await?;
            c.registry()
                .revoke_grant(pb::GrantRequest {
                    scope: scope.clone(),
                    grantee: grantee.clone(),
                })
                .await
                .map_err(|s| c.fail(s))?;
            println!(
                "revoked the grant of {} on {}",
                canonical_prefix(&grantee),
                canonical_scope(&scope)
            );
            Ok(())
        }
        GrantCommand::List { prefix, conn } => {
            let c = conn.connect().await?;
            let r = c
                .registry()
                .list_grants(pb::ListGrantsRequest { prefix })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            for g in r.grants {
                println!("{:<40} {}", g.scope, g.grantee);
            }
            Ok(())
        }
    }
}
