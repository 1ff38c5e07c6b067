//! Read-only views the web console needs beyond the other interfaces' (`api::console`):
//! a listing narrowed to suffixes that start with a text, and today's registrations.
//! Nothing here writes.

use super::register::{daily_key, today, Listing};
use super::Core;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::identifier::Prefix;
use crate::store::Table;

/// Registrations of the current UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Today {
    /// The UTC day (days since the epoch).
    pub day: i64,
    /// Over every counting prefix the caller may see.
    pub total: i64,
    /// `(prefix, registrations today)` per counting prefix, in prefix order.
    pub prefixes: Vec<(String, i64)>,
}

impl Core {
    /// Like [`Core::list`], but only identifiers whose suffix starts with `starts` (one
    /// range scan: a search by the start of the suffix). Owners and the admin only.
    pub fn search(
        &self,
        caller: &Caller,
        prefix: &Prefix,
        starts: &str,
        cursor: Option<&str>,
        page_size: usize,
    ) -> Result<Listing> {
        self.require_owner(caller, prefix)?;
        if starts.len() > self.config.identifier_limits.max_identifier_bytes {
            return Err(Error::invalid(
                "the search text is longer than an identifier",
            ));
        }
        self.page(prefix, starts, cursor, page_size)
    }

    /// Today's registrations (UTC) per counting prefix the caller owns (every prefix for
    /// the admin), from the daily counters every write keeps.
    pub fn registered_today(&self, caller: &Caller) -> Result<Today> {
        let counts = self.counts(caller)?;
        let day = today();
        let mut out = Today {
            day,
            ..Today::default()
        };
        for (prefix, _) in counts.prefixes {
            let n = self
                .store
                .counter(Table::Counters, &daily_key(&prefix, day))
                .map_err(Error::internal)?;
            out.total += n;
            out.prefixes.push((prefix, n));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifier::Identifier;
    use crate::record::{Record, Value};

    #[test]
    fn search_narrows_to_the_suffix_start_and_today_counts_what_was_registered() {
        let core = Core::in_memory("88.101");
        let prefix = Prefix::parse("88.101.5").unwrap();
        let (_, _) = core
            .create_enterprise(&Caller::Admin, &prefix, "Search Co", "", None)
            .unwrap();
        let me = Caller::Enterprise(prefix.clone());
        for s in ["A-1", "A-2", "A-3", "B-1"] {
            let id = Identifier::parse(&format!("88.101.5/{s}")).unwrap();
            let record = Record::new(vec![Value::text(1, "URL", "https://e.cn")]);
            core.register(&me, id, record).unwrap();
        }
        let page = core.search(&me, &prefix, "A-", None, 2).unwrap();
        let names: Vec<_> = page.identifiers.iter().map(|i| i.suffix()).collect();
        assert_eq!(names, ["A-1", "A-2"]);
        let next = core
            .search(&me, &prefix, "A-", page.next_cursor.as_deref(), 2)
            .unwrap();
        let names: Vec<_> = next.identifiers.iter().map(|i| i.suffix()).collect();
        assert_eq!((names, next.next_cursor), (vec!["A-3"], None));
        let other = Caller::Enterprise(Prefix::parse("88.101.6").unwrap());
        assert!(core.search(&other, &prefix, "", None, 10).is_err());

        let today = core.registered_today(&Caller::Admin).unwrap();
        assert_eq!(today.total, 4);
        assert_eq!(today.prefixes, [("88.101.5".to_owned(), 4)]);
        assert!(core.registered_today(&Caller::Anonymous).is_err());
    }
}
