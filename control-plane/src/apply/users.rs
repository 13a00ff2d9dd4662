//! The `users` section: each user's limits, role, email and password.

use super::{budget_micros, invalid, ApplyError};
use crate::config::UserSpec;
use crate::domain;
use crate::store::{Store, UserLimitsRow, UserPatch};

/// Ensures every user, with their limits; a password is hashed again only when it changed.
pub(super) async fn apply(store: &Store, users: &[UserSpec]) -> Result<(), ApplyError> {
    for (i, u) in users.iter().enumerate() {
        let at = format!("users[{i}]");
        domain::check_name("user", &u.name).map_err(|e| invalid(&at, e))?;
        store.ensure_user(&u.name).await?;
        crate::scope::check(&u.models).map_err(|e| invalid(&at, e))?;
        store
            .set_user_limits(&UserLimitsRow {
                user: u.name.clone(),
                rpm: u.rpm.map(i64::from),
                tpm: u.tpm.map(i64::from),
                models: u.models.clone(),
                daily_budget_micros: budget_micros(u.daily_budget, &at, "daily_budget")?,
                monthly_budget_micros: budget_micros(u.monthly_budget, &at, "monthly_budget")?,
            })
            .await?;
        let mut patch = UserPatch {
            role: u.role,
            email: u.email.clone().map(Some),
            ..Default::default()
        };
        if let Some(password) = u.password.as_deref().filter(|p| !p.is_empty()) {
            crate::auth::check_password(password).map_err(|e| invalid(&at, e))?;
            let stored = store.user_credentials(&u.name).await?.and_then(|(_, h)| h);
            let hashing = crate::auth::Hashing::shared();
            let current = hashing.verify(password.to_owned(), stored.clone());
            if stored.is_none() || !current.await? {
                patch.password_hash = Some(hashing.hash(password.to_owned()).await?);
            }
        }
        store.update_user(&u.name, &patch).await?;
    }
    Ok(())
}
