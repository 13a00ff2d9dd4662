//! Credits: each metered user's account and its ledger. Every change of a balance is one
//! ledger entry; a priced request is debited once (its request id is the entry's key), in the
//! transaction that stores its record.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::request_log::{multi_row_sql, now_ms, placeholders, RequestRow};
use super::{now, Backend, Result, Store, StoreError};

/// A user's credit account. Money in micro-USD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub user: String,
    pub balance_micros: i64,
    /// Below this the account counts as low (reported, logged once when crossed).
    pub low_balance_micros: Option<i64>,
    /// Automatic top-up: when a debit leaves the balance below `topup_below_micros`,
    /// `topup_amount_micros` is added.
    pub topup_below_micros: Option<i64>,
    pub topup_amount_micros: Option<i64>,
    pub low: bool,
    pub updated_at: i64,
}

/// The rules of an account that an administrator sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountRules {
    pub low_balance_micros: Option<i64>,
    pub topup_below_micros: Option<i64>,
    pub topup_amount_micros: Option<i64>,
}

/// One change of a balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub id: String,
    pub amount_micros: i64,
    /// `usage`, `topup`, `adjustment`, `auto_topup` or `initial`.
    pub kind: String,
    pub request_id: Option<String>,
    pub note: String,
    pub at_ms: i64,
}

fn account_from(r: &AnyRow) -> Result<Account> {
    let balance: i64 = r.try_get("balance_micros")?;
    let low_at: Option<i64> = r.try_get("low_balance_micros")?;
    Ok(Account {
        user: r.try_get("name")?,
        balance_micros: balance,
        low_balance_micros: low_at,
        topup_below_micros: r.try_get("topup_below_micros")?,
        topup_amount_micros: r.try_get("topup_amount_micros")?,
        low: low_at.is_some_and(|l| balance < l),
        updated_at: r.try_get("updated_at")?,
    })
}

const ACCOUNT_COLUMNS: &str = "a.user_id, u.name, a.balance_micros, a.low_balance_micros, \
     a.topup_below_micros, a.topup_amount_micros, a.updated_at \
     FROM credit_accounts a JOIN users u ON u.id = a.user_id";

impl Store {
    /// The account of `user` (NotFound: the user has none, i.e. is not metered).
    pub async fn get_account(&self, user: &str) -> Result<Account> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} WHERE u.name = $1");
        let row = sqlx::query(&sql)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        account_from(&row)
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} ORDER BY u.name");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(account_from).collect()
    }

    /// Adds `amount` (negative: takes it) to the account of `user`, opening the account if the
    /// user has none, as one ledger entry. The user must exist.
    pub async fn credit(&self, user: &str, amount: i64, kind: &str, note: &str) -> Result<Account> {
        let mut tx = self.pool.begin().await?;
        let user_id = user_id(&mut tx, user).await?;
        open_account(&mut tx, &user_id).await?;
        add_entry(&mut tx, &user_id, amount, kind, note, None).await?;
        tx.commit().await?;
        self.get_account(user).await
    }

    /// Opens the account of `user` with `amount` unless it has one (the starting balance of the
    /// declarative config: applying the config again changes nothing). Returns whether it did.
    pub async fn open_account_with(&self, user: &str, amount: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let user_id = user_id(&mut tx, user).await?;
        let opened = open_account(&mut tx, &user_id).await?;
        if opened && amount != 0 {
            add_entry(
                &mut tx,
                &user_id,
                amount,
                "initial",
                "starting balance",
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(opened)
    }

    pub async fn set_account_rules(&self, user: &str, rules: &AccountRules) -> Result<Account> {
        let mut tx = self.pool.begin().await?;
        let user_id = user_id(&mut tx, user).await?;
        open_account(&mut tx, &user_id).await?;
        sqlx::query(
            "UPDATE credit_accounts SET low_balance_micros = $1, topup_below_micros = $2,
                 topup_amount_micros = $3, updated_at = $4 WHERE user_id = $5",
        )
        .bind(rules.low_balance_micros)
        .bind(rules.topup_below_micros)
        .bind(rules.topup_amount_micros)
        .bind(now())
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_account(user).await
    }

    /// Ledger entries of `user`, newest first, older than `before` (at_ms, id) if given.
    pub async fn ledger(
        &self,
        user: &str,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>> {
        // Without a cursor: everything before the end of time.
        let (at, id) = before.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(
            "SELECT l.id, l.amount_micros, l.kind, l.request_id, l.note, l.at_ms
             FROM credit_ledger l JOIN users u ON u.id = l.user_id
             WHERE u.name = $1 AND (l.at_ms < $2 OR (l.at_ms = $3 AND l.id < $4))
             ORDER BY l.at_ms DESC, l.id DESC LIMIT $5",
        )
        .bind(user)
        .bind(at)
        .bind(at)
        .bind(id)
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerEntry {
                    id: r.try_get("id")?,
                    amount_micros: r.try_get("amount_micros")?,
                    kind: r.try_get("kind")?,
                    request_id: r.try_get("request_id")?,
                    note: r.try_get("note")?,
                    at_ms: r.try_get("at_ms")?,
                })
            })
            .collect()
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

async fn user_id(tx: &mut Tx<'_>, user: &str) -> Result<String> {
    let row = sqlx::query("SELECT id FROM users WHERE name = $1")
        .bind(user)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(row.try_get("id")?)
}

/// Opens an empty account; returns false if there was one.
async fn open_account(tx: &mut Tx<'_>, user_id: &str) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO credit_accounts (user_id, balance_micros, updated_at) VALUES ($1, 0, $2)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One ledger entry and its effect on the balance; returns the balance after it.
async fn add_entry(
    tx: &mut Tx<'_>,
    user_id: &str,
    amount: i64,
    kind: &str,
    note: &str,
    request_id: Option<&str>,
) -> Result<i64> {
    sqlx::query(
        "INSERT INTO credit_ledger (id, user_id, amount_micros, kind, request_id, note, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(crate::crypto::new_id("led_"))
    .bind(user_id)
    .bind(amount)
    .bind(kind)
    .bind(request_id)
    .bind(note)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    add_to_balance(tx, user_id, amount).await
}

async fn add_to_balance(tx: &mut Tx<'_>, user_id: &str, amount: i64) -> Result<i64> {
    let row = sqlx::query(
        "UPDATE credit_accounts SET balance_micros = balance_micros + $1, updated_at = $2
         WHERE user_id = $3 RETURNING balance_micros",
    )
    .bind(amount)
    .bind(now())
    .bind(user_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("balance_micros")?)
}

/// How usage debits are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Debits {
    /// Every request is expected to be debited now: the statements only count their rows,
    /// and a count that falls short gives up (`None`: the caller rolls back and writes again
    /// with `Exact`).
    AllNew,
    /// A request already debited is skipped: the statements read back what they inserted.
    Exact,
}

/// Usage debits of one account (a request id already debited is skipped); returns the balance
/// and the requests debited with their cost, or `None` when `mode` is `AllNew` and a request
/// had been debited before.
async fn debit(
    tx: &mut Tx<'_>,
    backend: Backend,
    user_id: &str,
    rows: &[&RequestRow],
    per_statement: usize,
    mode: Debits,
) -> Result<Option<(i64, Vec<(String, i64)>)>> {
    const COLUMNS: usize = 6;
    let mut total = 0i64;
    let mut done = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(per_statement) {
        let tail = match mode {
            Debits::AllNew => " ON CONFLICT DO NOTHING",
            Debits::Exact => " ON CONFLICT DO NOTHING RETURNING request_id, amount_micros",
        };
        let sql = multi_row_sql(
            backend,
            "INSERT INTO credit_ledger (id, user_id, amount_micros, kind, request_id, at_ms) VALUES",
            tail,
            chunk.len(),
            COLUMNS,
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(format!("use_{}", r.request_id))
                .bind(user_id)
                .bind(-r.cost_micros.unwrap_or(0))
                .bind("usage")
                .bind(r.request_id.as_str())
                .bind(r.at_ms);
        }
        match mode {
            Debits::AllNew => {
                if q.execute(&mut **tx).await?.rows_affected() != chunk.len() as u64 {
                    return Ok(None);
                }
                for r in chunk {
                    let cost = r.cost_micros.unwrap_or(0);
                    total -= cost;
                    done.push((r.request_id.clone(), cost));
                }
            }
            Debits::Exact => {
                for row in q.fetch_all(&mut **tx).await? {
                    let amount: i64 = row.try_get("amount_micros")?;
                    total += amount;
                    done.push((row.try_get("request_id")?, -amount));
                }
            }
        }
    }
    Ok(Some((add_to_balance(tx, user_id, total).await?, done)))
}

/// Tops the account up once if its rule asks for it; returns the balance.
async fn auto_topup(
    tx: &mut Tx<'_>,
    user_id: &str,
    account: &Account,
    balance: i64,
) -> Result<i64> {
    match (account.topup_below_micros, account.topup_amount_micros) {
        (Some(below), Some(amount)) if balance < below && amount > 0 => {
            tracing::info!(user = %account.user, amount_micros = amount, "automatic top-up");
            add_entry(tx, user_id, amount, "auto_topup", "automatic top-up", None).await
        }
        _ => Ok(balance),
    }
}

/// Debits the new, priced rows (`inserted` says which are new) from their users' accounts, in
/// `tx`; users without an account are not metered. Returns the balances after it, (user,
/// micro-USD), and the requests debited, (request id, user, cost); `None` when `mode` is
/// `AllNew` and a request had been debited before (then roll `tx` back).
#[allow(clippy::type_complexity)]
pub(super) async fn debit_usage(
    tx: &mut Tx<'_>,
    backend: Backend,
    rows: &[RequestRow],
    inserted: &[bool],
    per_statement: usize,
    mode: Debits,
) -> Result<Option<(Vec<(String, i64)>, Vec<(String, String, i64)>)>> {
    // Debits: new, priced rows of users with an account.
    let mut by_user: BTreeMap<&str, Vec<&RequestRow>> = BTreeMap::new();
    for (r, new) in rows.iter().zip(inserted) {
        if *new && !r.user.is_empty() && r.cost_micros.is_some_and(|c| c > 0) {
            by_user.entry(r.user.as_str()).or_default().push(r);
        }
    }
    let mut balances = Vec::new();
    let mut debited = Vec::new();
    if !by_user.is_empty() {
        let users: Vec<&str> = by_user.keys().copied().collect();
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} WHERE u.name IN ({})",
            placeholders(1, users.len())
        );
        let mut q = sqlx::query(&sql);
        for u in &users {
            q = q.bind(*u);
        }
        let accounts = q.fetch_all(&mut **tx).await?;
        for account in &accounts {
            let user_id: String = account.try_get("user_id")?;
            let before = account_from(account)?;
            let debits = &by_user[before.user.as_str()];
            let Some((balance, done)) =
                debit(tx, backend, &user_id, debits, per_statement, mode).await?
            else {
                return Ok(None);
            };
            debited.extend(
                done.into_iter()
                    .map(|(id, cost)| (id, before.user.clone(), cost)),
            );
            let balance = auto_topup(tx, &user_id, &before, balance).await?;
            if let Some(low) = before.low_balance_micros {
                if before.balance_micros >= low && balance < low {
                    tracing::warn!(user = %before.user, balance_micros = balance, "credit balance is low");
                }
            }
            balances.push((before.user, balance));
        }
    }
    Ok(Some((balances, debited)))
}
