//! `switchyard-mock`: the test suite's mock OpenAI provider as a standalone server, for trying
//! the gateway locally without a real provider (`make run` starts it for the example config).
//!
//! usage: switchyard-mock [--listen 127.0.0.1:8090] [--key mock-key]

use switchyard_tests::MockOpenAi;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let listen = flag("--listen", "127.0.0.1:8090");
    let key = flag("--key", "mock-key");
    let Ok(addr) = listen.parse() else {
        eprintln!("switchyard-mock: --listen must be an address like 127.0.0.1:8090");
        std::process::exit(2);
    };
    let mock = match MockOpenAi::start_on(
        addr,
        &key,
        &[
            "gpt-4o-mini",
            "gpt-4o",
            "mock-gated",
            "mock-cut",
            "mock-truncated",
        ],
        &["text-embedding-3-small"],
    )
    .await
    {
        Ok(m) => {
            // Its model list, for discovery (`GET /v1/models`).
            m.list_models(
                switchyard_tests::mock::models::Format::OpenAi,
                &["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"],
            );
            m
        }
        Err(e) => {
            eprintln!("switchyard-mock: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "switchyard-mock: OpenAI-compatible mock on {}",
        mock.base_url()
    );
    let _ = tokio::signal::ctrl_c().await;
}
