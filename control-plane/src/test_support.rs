//! Test helpers: throwaway SQLite files and PostgreSQL schemas, Redis servers of a test's own,
//! and the control plane's state as the admin API tests build it.

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

/// A URL whose connections use a new, empty schema, for a test of the PostgreSQL tier (every
/// such test has `postgres` in its name: `cargo test -p switchyard postgres` runs the tier).
/// `None` (the test is skipped, see [`skip_tier`]) only outside CI when no PostgreSQL
/// answers; under `CI=true` a missing PostgreSQL fails the test.
pub async fn pg_url_for_schema() -> Option<String> {
    use sqlx::Connection as _;
    let base = pg_base_url();
    let mut conn = match sqlx::PgConnection::connect(&base).await {
        Ok(c) => c,
        Err(e) => {
            if services_required() {
                panic!("PostgreSQL at {base} is required under CI: {e}");
            }
            skip_tier("postgres", &base, &e);
            return None;
        }
    };
    drop_stale_schemas(&mut conn).await;
    let schema = format!(
        "{SCHEMA_PREFIX}{}_{}",
        crate::store::now(),
        crate::crypto::new_id("")
    );
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

/// The line a test (or a test's backend) skipped for want of a service leaves, so that a run
/// without PostgreSQL or Redis never looks like a run with them: `SKIPPED <test> [<tier>
/// tier]: ...` (`postgres` or `redis`), written to the process's stderr itself (the test
/// harness shows a passing test's `eprintln!` output to no one). `make unit` and `make test`
/// count these lines into a summary line.
pub fn skip_tier(tier: &str, at: &str, error: &dyn std::fmt::Display) {
    use std::io::Write as _;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test} [{tier} tier]: nothing answers at {at} ({error}); \
         `eval \"$(scripts/test-services.sh)\"` provides it, CI=true makes this a failure"
    );
}

/// Whether a missing service fails the test (CI) instead of skipping its tier.
pub fn services_required() -> bool {
    std::env::var_os("CI").is_some()
}

/// The Redis server tests use.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

const SCHEMA_PREFIX: &str = "sy_test_";

/// Test schemas are named `sy_test_<unix seconds>_<random>`; those older than an hour are left
/// over from earlier runs (a test cannot drop its own schema while its pool is open).
async fn drop_stale_schemas(conn: &mut sqlx::PgConnection) {
    use sqlx::Row as _;
    let rows = sqlx::query("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'sy\\_test\\_%'")
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
    let cutoff = crate::store::now() - 3600;
    for row in rows {
        let Ok(name) = row.try_get::<String, _>("schema_name") else {
            continue;
        };
        let created = name
            .strip_prefix(SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(0);
        if created < cutoff {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// A service account key file around the test-only RSA key in `tests/fixtures/vertex/`.
pub fn service_account_json(token_uri: &str) -> String {
    let pem = include_str!("../../tests/fixtures/vertex/service_account_key.pem");
    serde_json::json!({
        "type": "service_account",
        "project_id": "switchyard-test",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": "gateway@switchyard-test.iam.gserviceaccount.com",
        "client_id": "100000000000000000000",
        "token_uri": token_uri,
    })
    .to_string()
}

/// A `redis-server` of the test's own on a free loopback port, without persistence, killed on
/// drop. Tests that stop and restart Redis use one of these, never the shared one on 6379.
pub struct OwnRedis {
    child: Option<std::process::Child>,
}

impl OwnRedis {
    /// A loopback port nothing listens on (yet).
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port")
    }

    pub fn url(port: u16) -> String {
        format!("redis://127.0.0.1:{port}")
    }

    /// Starts `redis-server` on `port` and waits until it accepts connections.
    pub fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (install redis)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        OwnRedis { child: Some(child) }
    }

    /// SIGKILL: Redis is gone at once, with everything it held.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The state of a control plane on `store` with `identity`, the admin token `admin_token`, a
/// fixed master key, limits in memory and the default gateway settings.
pub fn app_state(
    store: crate::store::Store,
    identity: crate::identity::Identity,
    admin_token: &str,
) -> crate::state::AppState {
    app_state_with(
        store,
        identity,
        admin_token,
        crate::config::Gateway::default(),
    )
}

/// Like [`app_state`], with these gateway settings.
pub fn app_state_with(
    store: crate::store::Store,
    identity: crate::identity::Identity,
    admin_token: &str,
    gateway: crate::config::Gateway,
) -> crate::state::AppState {
    crate::state::AppState::new(crate::state::Parts {
        store,
        secrets: crate::secrets::Secrets::new(
            crate::crypto::MasterKey::from_bytes(&[9; 32]),
            crate::crypto::DigestKey::random(),
            None,
        ),
        identity,
        admin_token: crate::identity::AdminToken::from_digest(crate::crypto::digest(admin_token)),
        limits: crate::limits::Limits::in_memory(),
        gateway,
        wasm_path: "/filter.wasm".into(),
        probes: crate::config::ProbeSpec::default(),
        discovery: crate::config::DiscoverySpec::default(),
    })
}
