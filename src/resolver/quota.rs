//! Per-enterprise quotas: registrations (total, per day) and request rate, set by the node
//! admin; usage visible to the enterprise.

use super::command::{Op, Stamp};
use super::register::{daily_key, prefix_count_key, today};
use super::Core;
use crate::auth::{Caller, Quota};
use crate::error::{Error, Reason, Result};
use crate::identifier::Prefix;
use crate::store::{codec, Batch, Table};

/// An enterprise's quota and how much of it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub prefix: String,
    pub quota: Quota,
    pub registered: i64,
    pub registered_today: i64,
}

impl Core {
    /// The registration limits of the enterprise with exactly this prefix, if it has any.
    pub(super) fn registration_quota(&self, owner_prefix: &str) -> Option<Quota> {
        let enterprises = self.enterprises.read().unwrap_or_else(|e| e.into_inner());
        let q = &enterprises.get(owner_prefix)?.quota;
        (q.max_registrations.is_some() || q.max_registrations_per_day.is_some()).then(|| q.clone())
    }

    /// How many more identifiers `owner_prefix` may register now; `None`: unlimited.
    pub(super) fn registration_budget(&self, owner_prefix: &str, day: i64) -> Result<Option<u64>> {
        let Some(q) = self.registration_quota(owner_prefix) else {
            return Ok(None);
        };
        let counter = |k: &[u8]| -> Result<u64> {
            Ok(self
                .store
                .counter(Table::Counters, k)
                .map_err(Error::internal)?
                .max(0) as u64)
        };
        let mut budget = u64::MAX;
        if let Some(max) = q.max_registrations {
            budget = budget.min(max.saturating_sub(counter(&prefix_count_key(owner_prefix))?));
        }
        if let Some(max) = q.max_registrations_per_day {
            budget = budget.min(max.saturating_sub(counter(&daily_key(owner_prefix, day))?));
        }
        Ok(Some(budget))
    }

    /// Admits one request of an enterprise under its request-rate quota.
    ///
    /// Errors: `ResourceExhausted` with reason 603.
    pub(super) fn admit_request(&self, caller: &Caller) -> Result<()> {
        let Caller::Enterprise(p) = caller else {
            return Ok(());
        };
        let rate = {
            let enterprises = self.enterprises.read().unwrap_or_else(|e| e.into_inner());
            enterprises
                .get(p.as_str())
                .and_then(|e| e.quota.max_requests_per_second)
        };
        let over = |r: u32| {
            let rate = std::num::NonZeroU32::new(r.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
            !self.rates.admit(p, rate)
        };
        match rate {
            Some(r) if over(r) => Err(Error::limit(
                Reason::RequestLimit,
                format!("request rate limit of {r}/s for {p} exceeded"),
            )),
            _ => Ok(()),
        }
    }

    /// Sets an enterprise's quota (node admin only).
    pub fn set_quota(&self, caller: &Caller, prefix: &Prefix, quota: Quota) -> Result<()> {
        let op = Op::SetQuota {
            prefix: prefix.clone(),
            quota,
        };
        self.write(caller, op).map(|_| ())
    }

    pub(super) fn apply_set_quota(
        &self,
        caller: &Caller,
        prefix: &Prefix,
        quota: Quota,
        stamp: &Stamp,
    ) -> Result<()> {
        self.require_admin(caller)?;
        let _latch = self.latches.lock("enterprises");
        let mut e = self
            .enterprise(prefix)
            .ok_or_else(|| Error::not_found(format!("no enterprise owns prefix {prefix}")))?;
        e.quota = quota;
        let detail = serde_json::to_string(&e.quota).map_err(Error::internal)?;
        let mut batch = Batch::new();
        batch.put(Table::Enterprises, prefix.as_str(), codec::encode_json(&e));
        self.commit_logged(
            batch,
            vec![self.entry("quota", caller, prefix.to_string(), Some(detail), None)],
            stamp,
        )?;
        self.enterprises
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(e.prefix.clone(), e);
        Ok(())
    }

    /// An enterprise's quota and usage: the admin, or the enterprise itself.
    pub fn usage(&self, caller: &Caller, prefix: &Prefix) -> Result<Usage> {
        let own = matches!(caller, Caller::Enterprise(p) if p == prefix);
        if !own {
            self.require_admin(caller)?;
        }
        let e = self
            .enterprise(prefix)
            .ok_or_else(|| Error::not_found(format!("no enterprise owns prefix {prefix}")))?;
        let counter = |k: &[u8]| {
            self.store
                .counter(Table::Counters, k)
                .map_err(Error::internal)
        };
        Ok(Usage {
            registered: counter(&prefix_count_key(prefix.as_str()))?,
            registered_today: counter(&daily_key(prefix.as_str(), today()))?,
            prefix: e.prefix,
            quota: e.quota,
        })
    }
}
