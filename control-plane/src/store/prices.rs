//! Prices of provider models (micro-USD per million tokens, by kind of token).

use sqlx::Row as _;
use switchyard_contract::pricing::Price;

use super::{Result, Store, StoreError};

/// A provider model's price (micro-USD per million tokens, by kind of token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceRow {
    pub provider: String,
    pub model: String,
    pub price: Price,
}

impl Store {
    pub async fn put_price(&self, row: &PriceRow) -> Result<()> {
        let p = &row.price;
        let micros = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO prices (provider, model, input_micros, output_micros, cache_read_micros,
                 cache_write_micros, reasoning_micros) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (provider, model) DO UPDATE SET input_micros = excluded.input_micros,
                 output_micros = excluded.output_micros, cache_read_micros = excluded.cache_read_micros,
                 cache_write_micros = excluded.cache_write_micros, reasoning_micros = excluded.reasoning_micros",
        )
        .bind(&row.provider)
        .bind(&row.model)
        .bind(micros(p.input))
        .bind(micros(p.output))
        .bind(p.cache_read.map(micros))
        .bind(p.cache_write.map(micros))
        .bind(p.reasoning.map(micros))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_price(&self, provider: &str, model: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM prices WHERE provider = $1 AND model = $2")
            .bind(provider)
            .bind(model)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn list_prices(&self) -> Result<Vec<PriceRow>> {
        let rows = sqlx::query(
            "SELECT provider, model, input_micros, output_micros, cache_read_micros,
                    cache_write_micros, reasoning_micros FROM prices ORDER BY provider, model",
        )
        .fetch_all(&self.pool)
        .await?;
        let micros = |v: i64| u64::try_from(v).unwrap_or(0);
        rows.iter()
            .map(|r| {
                Ok(PriceRow {
                    provider: r.try_get("provider")?,
                    model: r.try_get("model")?,
                    price: Price {
                        input: micros(r.try_get("input_micros")?),
                        output: micros(r.try_get("output_micros")?),
                        cache_read: r
                            .try_get::<Option<i64>, _>("cache_read_micros")?
                            .map(micros),
                        cache_write: r
                            .try_get::<Option<i64>, _>("cache_write_micros")?
                            .map(micros),
                        reasoning: r.try_get::<Option<i64>, _>("reasoning_micros")?.map(micros),
                    },
                })
            })
            .collect()
    }
}
