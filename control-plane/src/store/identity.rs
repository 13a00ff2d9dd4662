//! Users who sign in, the audit log, and who may use a provider (owners, shares, review).

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::{now, Result, Store, StoreError};
use crate::auth::Role;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    /// `active` or `disabled`.
    pub status: String,
    /// Whether the user can sign in with a password (users made by keys or config cannot).
    pub has_password: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl UserRow {
    pub fn active(&self) -> bool {
        self.status == "active"
    }
}

/// A change to a user; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub email: Option<Option<String>>,
    pub role: Option<Role>,
    pub status: Option<String>,
    pub password_hash: Option<String>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    /// The user's name, `admin-token`, or what a failed sign-in claimed to be.
    pub actor: String,
    pub role: String,
    pub ip: String,
    pub user_agent: String,
    /// `METHOD /admin/v1/route/{param}` for API changes; `auth.*` and `session.*` for sign-ins.
    pub action: String,
    /// The path changed, or the subject of an auth event.
    pub target: String,
    pub status: i64,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Entries older than this id (the previous page's last).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Who may use a provider.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderAccess {
    /// The user who added it; `None`: the operator's (config or admin token).
    pub owner: Option<String>,
    /// The owner is an admin: their providers are trusted like the operator's.
    pub owner_is_admin: bool,
    /// Public providers serve every key; private ones their owner's and the shared users'.
    pub public: bool,
    /// `''`, `pending`, `approved` or `rejected`.
    pub review: String,
    pub review_note: String,
    /// Users the owner shares it with (names, sorted).
    pub shared_with: Vec<String>,
}

impl ProviderAccess {
    pub fn public() -> ProviderAccess {
        ProviderAccess {
            public: true,
            ..ProviderAccess::default()
        }
    }

    /// Whether its base URL is someone's other than an admin's: then it may not point inside
    /// the network (see [`crate::ssrf`]).
    pub fn untrusted(&self) -> bool {
        self.owner.is_some() && !self.owner_is_admin
    }

    /// Whether keys of `user` may use it.
    pub fn serves(&self, user: &str) -> bool {
        self.public
            || self.owner.as_deref() == Some(user)
            || self.shared_with.iter().any(|u| u == user)
    }
}

const USER_COLUMNS: &str =
    "id, name, email, role, status, password_hash, created_at, updated_at FROM users";

fn user_from(row: &AnyRow) -> Result<UserRow> {
    let role: String = row.try_get("role")?;
    Ok(UserRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        status: row.try_get("status")?,
        has_password: row.try_get::<Option<String>, _>("password_hash")?.is_some(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Creates a user that signs in; `Conflict` when the name or email is taken.
    pub async fn create_user(
        &self,
        name: &str,
        email: Option<&str>,
        password_hash: &str,
        role: Role,
    ) -> Result<UserRow> {
        let t = now();
        sqlx::query(
            "INSERT INTO users (id, name, email, password_hash, role, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'active', $6, $6)",
        )
        .bind(crate::crypto::new_id("usr_"))
        .bind(name)
        .bind(email)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(t)
        .execute(&self.pool)
        .await
        .map_err(super::map_unique("user"))?;
        self.get_user(name).await
    }

    pub async fn get_user(&self, name: &str) -> Result<UserRow> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        user_from(&row)
    }

    pub async fn get_user_by_id(&self, id: &str) -> Result<UserRow> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        user_from(&row)
    }

    /// The user a sign-in names (by name or email) and their password hash.
    pub async fn user_credentials(&self, login: &str) -> Result<Option<(UserRow, Option<String>)>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} WHERE name = $1 OR email = $1 ORDER BY name = $1 DESC LIMIT 1"
        ))
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((user_from(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from).collect()
    }

    pub async fn update_user(&self, name: &str, patch: &UserPatch) -> Result<UserRow> {
        let current = self.get_user(name).await?;
        let email = match &patch.email {
            Some(e) => e.clone(),
            None => current.email.clone(),
        };
        let role = patch.role.unwrap_or(current.role);
        let status = patch.status.clone().unwrap_or(current.status.clone());
        sqlx::query(
            "UPDATE users SET email = $1, role = $2, status = $3,
                 password_hash = COALESCE($4, password_hash), updated_at = $5
             WHERE id = $6",
        )
        .bind(email)
        .bind(role.as_str())
        .bind(status)
        .bind(patch.password_hash.clone())
        .bind(now())
        .bind(&current.id)
        .execute(&self.pool)
        .await
        .map_err(super::map_unique("email"))?;
        self.get_user(name).await
    }

    /// The number of active admins who can sign in (the last one cannot be demoted or disabled).
    pub async fn active_admins(&self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM users
             WHERE role = 'admin' AND status = 'active' AND password_hash IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    // ---- audit -------------------------------------------------------------------------------

    pub async fn add_audit(&self, e: &AuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at_ms, actor, role, ip, user_agent, action, target, status, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(e.at_ms)
        .bind(&e.actor)
        .bind(&e.role)
        .bind(&e.ip)
        .bind(&e.user_agent)
        .bind(&e.action)
        .bind(&e.target)
        .bind(e.status)
        .bind(&e.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes audit entries older than `before_ms`; how many.
    pub async fn prune_audit(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM audit_log WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Audit entries, newest first.
    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, role, ip, user_agent, action, target, status, detail
             FROM audit_log
             WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR action LIKE $2)
               AND at_ms >= $3 AND at_ms < $4 AND id < $5
             ORDER BY id DESC LIMIT $6",
        )
        .bind(f.actor.clone().unwrap_or_default())
        .bind(
            f.action
                .as_deref()
                .map(|a| format!("{a}%"))
                .unwrap_or_default(),
        )
        .bind(f.since_ms.unwrap_or(0))
        .bind(f.until_ms.unwrap_or(i64::MAX))
        .bind(f.before.unwrap_or(i64::MAX))
        .bind(f.limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at_ms: r.try_get("at_ms")?,
                    actor: r.try_get("actor")?,
                    role: r.try_get("role")?,
                    ip: r.try_get("ip")?,
                    user_agent: r.try_get("user_agent")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    status: r.try_get("status")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    // ---- provider access ---------------------------------------------------------------------

    /// Makes `owner` (a user id) the owner of a provider, private and unreviewed.
    pub async fn set_provider_owner(&self, provider: &str, owner_id: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE providers SET owner_id = $1, visibility = 'private', review = '', review_note = ''
             WHERE name = $2",
        )
        .bind(owner_id)
        .bind(provider)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Sets a provider's review and visibility together.
    pub async fn set_provider_review(
        &self,
        provider: &str,
        review: &str,
        note: &str,
        public: bool,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE providers SET review = $1, review_note = $2, visibility = $3, updated_at = $4
             WHERE name = $5",
        )
        .bind(review)
        .bind(note)
        .bind(if public { "public" } else { "private" })
        .bind(now())
        .bind(provider)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Shares a provider with a user; sharing twice is one share.
    pub async fn share_provider(&self, provider_id: &str, user_id: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO provider_shares (provider_id, user_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (provider_id, user_id) DO NOTHING",
        )
        .bind(provider_id)
        .bind(user_id)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn unshare_provider(&self, provider_id: &str, user_id: &str) -> Result<()> {
        let done =
            sqlx::query("DELETE FROM provider_shares WHERE provider_id = $1 AND user_id = $2")
                .bind(provider_id)
                .bind(user_id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Every share, as (provider id, user name).
    pub(super) async fn all_shares(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT s.provider_id, u.name FROM provider_shares s JOIN users u ON u.id = s.user_id
             ORDER BY u.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("provider_id")?, r.try_get("name")?)))
            .collect()
    }
}
