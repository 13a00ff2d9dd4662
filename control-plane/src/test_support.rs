//! Test helpers: throwaway SQLite files and PostgreSQL schemas.

/// A fresh SQLite database file under the system temp dir.
pub fn sqlite_url() -> String {
    let path =
        std::env::temp_dir().join(format!("{}.db", crate::crypto::new_id("switchyard-test-")));
    format!("sqlite://{}", path.display())
}

/// The PostgreSQL server tests use: `SWITCHYARD_TEST_PG`, else the standard local one.
pub fn pg_base_url() -> String {
    std::env::var("SWITCHYARD_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A URL whose connections use a new, empty schema. `None` (test skipped) only outside CI when
/// no PostgreSQL answers; under `CI=true` a missing PostgreSQL fails the test.
pub async fn pg_url_for_schema() -> Option<String> {
    use sqlx::Connection as _;
    let base = pg_base_url();
    let mut conn = match sqlx::PgConnection::connect(&base).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL at {base} is required under CI: {e}");
            }
            eprintln!("skipping PostgreSQL test: {base} does not answer ({e})");
            return None;
        }
    };
    let schema = crate::crypto::new_id("sy_test_");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}
