//! Creating a user who signs in with a password: the one path shared by self-registration and
//! an admin's user creation, with its checks (name, password strength, email, name taken).

use serde::Deserialize;
use utoipa::ToSchema;

use super::ApiError;
use crate::auth::{self, Hashing, Role};
use crate::domain;
use crate::store::{Store, StoreError, UserRow};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterInput {
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    #[schema(min_length = 10, max_length = 1024)]
    pub password: String,
    #[serde(default)]
    pub email: Option<String>,
}

pub(super) fn check_email(email: &str) -> Result<(), ApiError> {
    let ok = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "`email` is not an email address".into(),
        ))
    }
}

/// Creates a user who signs in with a password.
pub(super) async fn create_user(
    store: &Store,
    hashing: &Hashing,
    input: RegisterInput,
    role: Role,
) -> Result<UserRow, ApiError> {
    domain::check_name("user", &input.name).map_err(ApiError::BadRequest)?;
    auth::check_password(&input.password).map_err(ApiError::BadRequest)?;
    if let Some(e) = &input.email {
        check_email(e)?;
    }
    // A user made by a gateway key or the config has no password yet: taking its name would
    // take its keys and credits, so the name counts as taken.
    match store.get_user(&input.name).await {
        Ok(_) => return Err(ApiError::Conflict("user already exists".into())),
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let hash = hashing.hash(input.password).await?;
    Ok(store
        .create_user(&input.name, input.email.as_deref(), &hash, role)
        .await?)
}
