//! `idnode template ...`: industry metadata templates.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Subcommand;

use super::canonical::canonical_identifier;
use super::connect::Connection;
use idnode::api::grpc::pb;

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Register templates from a JSON file (one object or an array; see seeds/templates.json).
    Register {
        file: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one template.
    Get {
        identifier: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// List templates (optionally with exactly this prefix).
    List {
        prefix: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(cmd: TemplateCommand) -> anyhow::Result<()> {
    use idnode::api::grpc::convert::{template_from, template_to};
    use idnode::template::Template;
    match cmd {
        TemplateCommand::Register { file, conn } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let templates: Vec<Template> = if text.trim_start().starts_with('[') {
                serde_json::from_str(&text)?
            } else {
                vec![serde_json::from_str(&text)?]
            };
            let c = conn.connect().await?;
            for t in templates {
                let id = canonical_identifier(&t.identifier);
                let r = c
                    .registry()
                    .register_template(pb::RegisterTemplateRequest {
                        template: Some(template_to(&t)),
                    })
                    .await
                    .map_err(|s| c.fail(s))?
                    .into_inner();
                println!(
                    "{} {id}",
                    if r.registered {
                        "registered"
                    } else {
                        "already registered"
                    }
                );
            }
            Ok(())
        }
        TemplateCommand::Get { identifier, conn } => {
            let c = conn.connect().await?;
            let t = c
                .registry()
                .get_template(pb::GetTemplateRequest { identifier })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner()
                .template
                .unwrap_or_default();
            let t = template_from(t).map_err(|e| anyhow!("{e}"))?;
            if c.json() {
                c.print_json(&t)
            } else {
                println!(
                    "{} {} ({}, v{})",
                    t.identifier, t.name, t.industry_code, t.version
                );
                for a in &t.attributes {
                    println!(
                        "  {:<24} {:<9} {:<8} {}",
                        a.key,
                        a.value_type.name(),
                        if a.required { "required" } else { "" },
                        a.display_name
                    );
                }
                Ok(())
            }
        }
        TemplateCommand::List { prefix, conn } => {
            let c = conn.connect().await?;
            let r = c
                .registry()
                .list_templates(pb::ListTemplatesRequest {
                    prefix: prefix.unwrap_or_default(),
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            if c.json() {
                let all: Vec<Template> = r
                    .templates
                    .into_iter()
                    .map(|t| template_from(t).map_err(|e| anyhow!("{e}")))
                    .collect::<Result<_, _>>()?;
                c.print_json(&all)
            } else {
                for t in r.templates {
                    println!("{:<28} {:<6} {}", t.identifier, t.industry_code, t.name);
                }
                Ok(())
            }
        }
    }
}
