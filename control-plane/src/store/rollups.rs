//! Usage rollups: the request log summed per time bucket (a minute, an hour, a UTC day) and
//! per (key, user, model, provider), kept in the transaction that stores the records, so a
//! usage report over any range reads whole days, hours and minutes from here and only the
//! seconds at its two ends from the log (see [`pieces`]). Minute rollups are pruned with the
//! request log; hour and day rollups are kept for ever (a few rows per group and hour).

use std::collections::HashMap;

use super::request_log::{multi_row_sql, RequestRow};
use super::{Backend, Result, Store};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;
/// The grains, coarsest first.
const GRAINS: [i64; 3] = [DAY_MS, HOUR_MS, MINUTE_MS];

/// Largest count one record adds to a rollup: records are bounded only by `i64::MAX`, and a
/// sum that overflowed would fail the whole ingest (PostgreSQL refuses it) for ever.
const MAX_COUNT: i64 = 1 << 40;

const COLUMNS: usize = 14;
const INSERT_ROLLUPS: &str = "INSERT INTO usage_rollup (grain_ms, start_ms, key_id, user_name, \
     model, provider, requests, errors, prompt_tokens, completion_tokens, cached_tokens, \
     cache_write_tokens, reasoning_tokens, cost_micros) VALUES";
const ON_CONFLICT: &str = " ON CONFLICT (grain_ms, start_ms, key_id, user_name, model, provider) \
     DO UPDATE SET requests = usage_rollup.requests + excluded.requests, \
     errors = usage_rollup.errors + excluded.errors, \
     prompt_tokens = usage_rollup.prompt_tokens + excluded.prompt_tokens, \
     completion_tokens = usage_rollup.completion_tokens + excluded.completion_tokens, \
     cached_tokens = usage_rollup.cached_tokens + excluded.cached_tokens, \
     cache_write_tokens = usage_rollup.cache_write_tokens + excluded.cache_write_tokens, \
     reasoning_tokens = usage_rollup.reasoning_tokens + excluded.reasoning_tokens, \
     cost_micros = usage_rollup.cost_micros + excluded.cost_micros";
/// Groups per upsert statement (14 parameters each).
const GROUPS_PER_STATEMENT: usize = 300;

/// Whether a request counts as an error in usage reports: refused or failed, or no answer.
pub fn is_usage_error(status: i64) -> bool {
    status >= 400 || status == 0
}

/// The sums of one group.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    requests: i64,
    errors: i64,
    prompt: i64,
    completion: i64,
    cached: i64,
    cache_write: i64,
    reasoning: i64,
    cost: i64,
}

impl Sums {
    fn add(&mut self, r: &RequestRow) {
        let c = |v: i64| v.clamp(0, MAX_COUNT);
        self.requests += 1;
        self.errors += i64::from(is_usage_error(r.status));
        self.prompt = self.prompt.saturating_add(c(r.prompt_tokens));
        self.completion = self.completion.saturating_add(c(r.completion_tokens));
        self.cached = self.cached.saturating_add(c(r.cached_tokens));
        self.cache_write = self.cache_write.saturating_add(c(r.cache_write_tokens));
        self.reasoning = self.reasoning.saturating_add(c(r.reasoning_tokens));
        self.cost = self
            .cost
            .saturating_add(r.cost_micros.map_or(0, |v| v.clamp(-MAX_COUNT, MAX_COUNT)));
    }
}

type Group<'a> = (i64, i64, &'a str, &'a str, &'a str, &'a str);

/// Adds the new rows (`inserted` says which) to the rollups of every grain: summed here, then
/// one upsert row per group, in `tx`.
pub(super) async fn add_to_rollups(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    rows: &[RequestRow],
    inserted: &[bool],
) -> Result<()> {
    // Consecutive records mostly share their groups: the last one of each grain is compared
    // first, and only a different one is looked up (hashing four names three times a record
    // was a tenth of the ingest's CPU on PostgreSQL).
    type Names<'a> = (&'a str, &'a str, &'a str, &'a str);
    let mut names: HashMap<Names<'_>, usize> = HashMap::new();
    let mut named: Vec<Names<'_>> = Vec::new();
    let mut last_names: Option<(Names<'_>, usize)> = None;
    // (grain, bucket start, names' index) and where its sums are.
    type Bucket = (i64, i64, usize);
    let mut index: HashMap<Bucket, usize> = HashMap::new();
    let mut sums: Vec<(Bucket, Sums)> = Vec::new();
    let mut last: [Option<(Bucket, usize)>; GRAINS.len()] = [None; GRAINS.len()];
    for (r, new) in rows.iter().zip(inserted) {
        if !*new {
            continue;
        }
        let these = (
            r.key_id.as_str(),
            r.user.as_str(),
            r.model.as_str(),
            r.provider.as_str(),
        );
        let id = match last_names {
            Some((n, id)) if n == these => id,
            _ => {
                let next = named.len();
                let id = *names.entry(these).or_insert(next);
                if id == next {
                    named.push(these);
                }
                last_names = Some((these, id));
                id
            }
        };
        for (g, grain) in GRAINS.into_iter().enumerate() {
            let key = (grain, r.at_ms - r.at_ms.rem_euclid(grain), id);
            let at = match last[g] {
                Some((k, at)) if k == key => at,
                _ => {
                    let next = sums.len();
                    let at = *index.entry(key).or_insert(next);
                    if at == next {
                        sums.push((key, Sums::default()));
                    }
                    last[g] = Some((key, at));
                    at
                }
            };
            sums[at].1.add(r);
        }
    }
    let groups: Vec<(Group<'_>, Sums)> = sums
        .into_iter()
        .map(|((grain, start, id), s)| {
            let (key, user, model, provider) = named[id];
            ((grain, start, key, user, model, provider), s)
        })
        .collect();
    for chunk in groups.chunks(GROUPS_PER_STATEMENT) {
        let sql = multi_row_sql(backend, INSERT_ROLLUPS, ON_CONFLICT, chunk.len(), COLUMNS);
        let mut q = sqlx::query(&sql);
        for ((grain, start, key, user, model, provider), s) in chunk {
            q = q
                .bind(*grain)
                .bind(*start)
                .bind(*key)
                .bind(*user)
                .bind(*model)
                .bind(*provider)
                .bind(s.requests)
                .bind(s.errors)
                .bind(s.prompt)
                .bind(s.completion)
                .bind(s.cached)
                .bind(s.cache_write)
                .bind(s.reasoning)
                .bind(s.cost);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Where a part of a report's range is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Rollups of this grain starting in `[from, to)`.
    Rollup { grain: i64, from: i64, to: i64 },
    /// Request log rows in `[from, to)` (less than a minute at either end of the range).
    Log { from: i64, to: i64 },
}

/// `[from, to)` as whole days, then whole hours and minutes at its ends, then the remaining
/// seconds from the log: at most 7 pieces, and rows read bounded by the number of groups, not
/// by traffic (the log pieces are under a minute each).
pub fn pieces(from: i64, to: i64) -> Vec<Piece> {
    fn split(from: i64, to: i64, grains: &[i64], out: &mut Vec<Piece>) {
        if from >= to {
            return;
        }
        let Some((&grain, finer)) = grains.split_first() else {
            out.push(Piece::Log { from, to });
            return;
        };
        let first = from + (grain - from.rem_euclid(grain)) % grain;
        let last = to - to.rem_euclid(grain);
        if first < last {
            split(from, first, finer, out);
            out.push(Piece::Rollup {
                grain,
                from: first,
                to: last,
            });
            split(last, to, finer, out);
        } else {
            split(from, to, finer, out);
        }
    }
    let mut out = Vec::new();
    split(from, to, &GRAINS, &mut out);
    out
}

/// Request log rows deleted per statement by [`Store::prune_request_log`].
pub const PRUNE_BATCH: i64 = 2_000;

/// What one round of pruning did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Request log rows deleted.
    pub log_rows: u64,
    /// Whether there may be more to prune (a full batch, or an hour of minute rollups went).
    pub more: bool,
}

impl Store {
    /// Deletes up to [`PRUNE_BATCH`] request log rows older than `before_ms` (Unix ms) and
    /// minute rollups before it (an hour's worth per call). Each call is its own short
    /// transaction: call it again while [`Pruned::more`], pausing between calls, to prune a
    /// backlog.
    pub async fn prune_request_log(&self, before_ms: i64) -> Result<Pruned> {
        let done = sqlx::query(
            "DELETE FROM request_log WHERE request_id IN (SELECT request_id FROM request_log
                 WHERE at_ms < $1 ORDER BY at_ms LIMIT $2)",
        )
        .bind(before_ms)
        .bind(PRUNE_BATCH)
        .execute(&self.pool)
        .await?;
        // The oldest hour of minute rollups, if it is before the cut.
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(start_ms) FROM usage_rollup WHERE grain_ms = $1 AND start_ms < $2",
        )
        .bind(MINUTE_MS)
        .bind(before_ms)
        .fetch_one(&self.pool)
        .await?;
        let mut minutes = 0;
        if let Some(oldest) = oldest {
            minutes = sqlx::query(
                "DELETE FROM usage_rollup WHERE grain_ms = $1 AND start_ms >= $2
                     AND start_ms < $3 AND start_ms < $4",
            )
            .bind(MINUTE_MS)
            .bind(oldest)
            .bind(oldest.saturating_add(HOUR_MS))
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        let log_rows = done.rows_affected();
        Ok(Pruned {
            log_rows,
            more: log_rows >= PRUNE_BATCH as u64 || minutes > 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_into_days_hours_minutes_and_seconds() {
        let day = DAY_MS;
        assert_eq!(
            pieces(day, 3 * day),
            [Piece::Rollup {
                grain: day,
                from: day,
                to: 3 * day
            }]
        );
        let from = day - HOUR_MS - MINUTE_MS - 5;
        let to = 2 * day + HOUR_MS + MINUTE_MS + 7;
        assert_eq!(
            pieces(from, to),
            [
                Piece::Log { from, to: from + 5 },
                Piece::Rollup {
                    grain: MINUTE_MS,
                    from: from + 5,
                    to: day - HOUR_MS
                },
                Piece::Rollup {
                    grain: HOUR_MS,
                    from: day - HOUR_MS,
                    to: day
                },
                Piece::Rollup {
                    grain: day,
                    from: day,
                    to: 2 * day
                },
                Piece::Rollup {
                    grain: HOUR_MS,
                    from: 2 * day,
                    to: 2 * day + HOUR_MS
                },
                Piece::Rollup {
                    grain: MINUTE_MS,
                    from: 2 * day + HOUR_MS,
                    to: 2 * day + HOUR_MS + MINUTE_MS
                },
                Piece::Log { from: to - 7, to },
            ]
        );
        assert_eq!(
            pieces(10, 20),
            [Piece::Log { from: 10, to: 20 }],
            "inside a minute"
        );
        // Every piece is non-empty and they tile the range.
        for (from, to) in [(0, 1), (59_999, 60_001), (1_234_567, 987_654_321)] {
            let p = pieces(from, to);
            let mut at = from;
            for piece in p {
                let (a, b) = match piece {
                    Piece::Rollup { from, to, .. } | Piece::Log { from, to } => (from, to),
                };
                assert!(a == at && a < b);
                at = b;
            }
            assert_eq!(at, to);
        }
    }
}
