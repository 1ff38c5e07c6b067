//! Metadata templates as registered objects of the node, and the check on write.

use std::sync::Arc;

use super::command::{Applied, Op, Stamp};
use super::{Core, RegisterOutcome};
use crate::auth::Caller;
use crate::error::{Error, ErrorKind, Result};
use crate::identifier::{Identifier, Prefix};
use crate::record::Record;
use crate::store::{codec, Batch, Table};
use crate::template::Template;

impl Core {
    /// Registers (or, with identical content, re-registers) a template under a prefix the
    /// caller owns. A template is immutable once registered: publish a new identifier (or
    /// version) to change it, so records validated against it stay valid.
    pub fn register_template(
        &self,
        caller: &Caller,
        template: Template,
    ) -> Result<RegisterOutcome> {
        match self.write(caller, Op::RegisterTemplate { template })? {
            Applied::Register(o) => Ok(o),
            other => Err(super::register::unexpected(other)),
        }
    }

    pub(super) fn apply_register_template(
        &self,
        caller: &Caller,
        template: Template,
        stamp: &Stamp,
    ) -> Result<RegisterOutcome> {
        let id = self.parse_identifier(&template.identifier)?;
        self.require_owner(caller, &id.prefix())?;
        template
            .validate()
            .map_err(|e| Error::invalid(format!("invalid template: {e}")))?;
        let template = Template {
            identifier: id.to_string(),
            ..template
        };
        let _latch = self.latches.lock(id.as_str());
        if let Some(existing) = self.load_template(&id)? {
            return if *existing == template {
                Ok(RegisterOutcome::AlreadyPresent)
            } else {
                Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("template {id} is already registered with other content"),
                ))
            };
        }
        let bytes = codec::encode_json(&template);
        let draft = self.entry("template", caller, id.to_string(), None, Some(&bytes));
        let mut batch = Batch::new();
        batch.put(Table::Templates, id.as_bytes(), bytes);
        self.commit_logged(batch, vec![draft], stamp)?;
        Ok(RegisterOutcome::Registered)
    }

    /// A template by identifier (public).
    pub fn template(&self, id: &Identifier) -> Result<Arc<Template>> {
        self.load_template(id)?
            .ok_or_else(|| Error::not_found(format!("template {id} is not registered")))
    }

    /// Templates whose identifiers have exactly this prefix (all templates when `None`).
    pub fn list_templates(&self, prefix: Option<&Prefix>) -> Result<Vec<Template>> {
        let scan = prefix.map(|p| format!("{p}/")).unwrap_or_default();
        let rows = self
            .store
            .scan(Table::Templates, scan.as_bytes(), None, 10_000)
            .map_err(Error::internal)?;
        rows.iter()
            .map(|(_, v)| codec::decode_json(v).map_err(Error::internal))
            .collect()
    }

    fn load_template(&self, id: &Identifier) -> Result<Option<Arc<Template>>> {
        if let Some(t) = self
            .templates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id.as_str())
        {
            return Ok(Some(Arc::clone(t)));
        }
        let Some(bytes) = self
            .store
            .get(Table::Templates, id.as_bytes())
            .map_err(Error::internal)?
        else {
            return Ok(None);
        };
        let t: Arc<Template> = Arc::new(codec::decode_json(&bytes).map_err(Error::internal)?);
        self.templates
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), Arc::clone(&t));
        Ok(Some(t))
    }

    /// Validates a record against the template its `TEMPLATE_ID` value names, if any.
    ///
    /// Errors: `InvalidArgument` naming the attribute, or the unknown template.
    pub(super) fn check_template(&self, record: &Record) -> Result<()> {
        let Some(text) = record.template_ref() else {
            return Ok(());
        };
        let id = self
            .parse_identifier(text.trim())
            .map_err(|e| Error::invalid(format!("TEMPLATE_ID value: {}", e.message)))?;
        let template = self
            .load_template(&id)?
            .ok_or_else(|| Error::invalid(format!("TEMPLATE_ID names unknown template {id}")))?;
        template
            .check(record)
            .map_err(|e| Error::invalid(format!("template {id}: {e}")))
    }
}
