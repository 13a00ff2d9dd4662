//! The limit table: every key's limits and owner, and every owner's limits over all of its
//! keys, as loaded from the store.

use std::collections::HashMap;

/// One key's limits and owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub user: String,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub daily_micros: Option<i64>,
    pub monthly_micros: Option<i64>,
}

/// One user's limits, over all of its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserLimits {
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    /// Spend caps, micro-USD per UTC day and month.
    pub daily_micros: Option<i64>,
    pub monthly_micros: Option<i64>,
    /// The user has a credit account: requests need a positive spendable balance.
    pub metered: bool,
}

/// Everything the service enforces, loaded from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub keys: HashMap<String, KeyLimits>,
    pub users: HashMap<String, UserLimits>,
}

impl Table {
    /// Whether requests with this key need asking.
    pub fn limited(&self, key: &str) -> bool {
        self.keys.get(key).is_some_and(|k| {
            k.rpm.is_some()
                || k.tpm.is_some()
                || k.daily_micros.is_some()
                || k.monthly_micros.is_some()
                || self.users.get(&k.user).is_some_and(|u| {
                    u.rpm.is_some()
                        || u.tpm.is_some()
                        || u.daily_micros.is_some()
                        || u.monthly_micros.is_some()
                        || u.metered
                })
        })
    }

    /// A key's limits and its owner's (`None`: a key without any).
    pub(super) fn lookup(&self, key: &str) -> Option<(KeyLimits, UserLimits)> {
        self.keys.get(key).map(|k| {
            let user = self.users.get(&k.user).cloned().unwrap_or_default();
            (k.clone(), user)
        })
    }
}
