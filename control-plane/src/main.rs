//! `switchyard`: the control plane binary.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  switchyard serve --config FILE                       run the admin API and the xDS server
  switchyard bootstrap --config FILE [--node-id ID] [--certs-dir DIR] [--days N]
                                                       print the Envoy bootstrap for this config; with
                                                       a TCP xDS port, also write the node's client
                                                       certificate (N days, default 90) to DIR
  switchyard certs renew --config FILE --node-id ID --certs-dir DIR [--days N]
                                                       issue the node a new certificate (Envoy takes
                                                       it from DIR without a restart)
  switchyard certs rotate-ca --config FILE             start a CA rotation (both CAs trusted)
  switchyard certs retire-ca --config FILE             end it: only the new CA is trusted
  switchyard urls --config FILE                        print the configured addresses as shell assignments
  switchyard dataplane-key --config FILE               print the key Envoy opens provider keys with
                                                       (its SWITCHYARD_DATAPLANE_KEY)
  switchyard render-static --config FILE --out F.pb    write the whole gateway config as one static
                                                       Envoy bootstrap (for `envoy --mode validate`)";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(command) = args.first().map(String::as_str) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if matches!(command, "-h" | "--help" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if matches!(command, "-V" | "--version") {
        println!("switchyard {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let Some(config) = flag("--config").map(PathBuf::from) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let days = || -> anyhow::Result<i64> {
        flag("--days").map_or(Ok(switchyard::pki::CLIENT_LIFETIME_DAYS), |d| {
            d.parse()
                .map_err(|_| anyhow::anyhow!("--days takes a number of days"))
        })
    };
    let result = runtime.block_on(async {
        match command {
            "serve" => switchyard::serve::serve(&config).await,
            "bootstrap" => {
                let node = flag("--node-id").unwrap_or_else(|| "switchyard-gateway".into());
                let dir = flag("--certs-dir").map(PathBuf::from);
                switchyard::cli::bootstrap(&config, &node, dir.as_deref(), days()?).await
            }
            "certs" => {
                let action = args.get(1).map(String::as_str).unwrap_or_default();
                let dir = flag("--certs-dir").map(PathBuf::from);
                let node = flag("--node-id");
                switchyard::cli::certs(&config, action, node.as_deref(), dir.as_deref(), days()?)
                    .await
            }
            "urls" => {
                // Shell assignments for scripts (make run, make bench).
                let c = switchyard::config::Config::load(&config)?.config;
                println!("GATEWAY_URL=http://{}", c.gateway.listen);
                println!("ENVOY_ADMIN_URL=http://{}", c.gateway.admin);
                println!("ADMIN_URL=http://{}", c.listen.admin);
                println!("XDS_ADDR={}", c.listen.xds);
                Ok(())
            }
            "dataplane-key" => switchyard::cli::print_dataplane_key(&config).await,
            "render-static" => {
                let out = flag("--out").ok_or_else(|| anyhow::anyhow!("--out is required"))?;
                switchyard::cli::render_static(&config, &PathBuf::from(out)).await
            }
            other => Err(anyhow::anyhow!("unknown command {other:?}\n{USAGE}")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
