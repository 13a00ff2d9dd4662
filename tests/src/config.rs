//! The control plane's config file, typed: tests and tools build it from these structs (or
//! start from [`default_config`] and change fields) and the harness writes it as YAML, the
//! same file an operator writes (`switchyard.example.yaml` documents every field).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::artifacts::{wasm_path, wasm_path_unchecked};
use crate::process::free_port;
use crate::{mock, GATEWAY_KEY, LIMITED_KEY, METERED_QPS, PROVIDER_KEY, REVOKED_KEY};

/// Ports of one stack.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub admin: u16,
    pub xds: u16,
    pub gateway: u16,
    pub envoy_admin: u16,
}

impl Ports {
    pub fn pick() -> Ports {
        Ports {
            admin: free_port(),
            xds: free_port(),
            gateway: free_port(),
            envoy_admin: free_port(),
        }
    }
}

/// The whole file. Fields left `None` or empty are left out (the control plane's default).
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub listen: Listen,
    pub gateway: Gateway,
    pub database: String,
    pub master_key_file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Discovery>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<Provider>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<Model>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Listen {
    pub admin: String,
    /// `host:port`, or `unix:<path>` for a Unix domain socket.
    pub xds: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Gateway {
    pub listen: String,
    pub admin: String,
    pub wasm: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte_timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_headers_timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Probes {
    pub interval_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    pub interval_secs: u64,
    pub timeout_secs: u64,
}

/// One provider: `kind` as the config names it (`openai_compatible`, `anthropic`, `gemini`,
/// `azure_openai`, `bedrock`, `vertex`, `openai`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Provider {
    pub name: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<String>,
    pub keys: Vec<ProviderKey>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// `enabled` or `disabled`: whether discovered models are served at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_models: Option<String>,
}

impl Provider {
    /// Provider `name` of `kind` at `base_url` with one key.
    pub fn new(name: &str, kind: &str, base_url: &str, secret: &str) -> Provider {
        Provider {
            name: name.into(),
            kind: kind.into(),
            base_url: Some(base_url.into()),
            keys: vec![ProviderKey::new(secret)],
            ..Provider::default()
        }
    }

    /// The models it serves (without discovery).
    pub fn models(mut self, models: &[&str]) -> Provider {
        self.models = models.iter().map(|m| (*m).to_owned()).collect();
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderKey {
    pub secret: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qps: Option<u32>,
}

impl ProviderKey {
    pub fn new(secret: &str) -> ProviderKey {
        ProviderKey {
            secret: secret.into(),
            qps: None,
        }
    }
}

/// A logical model and its targets.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    pub targets: Vec<Target>,
}

impl Model {
    pub fn new(name: &str, targets: Vec<Target>) -> Model {
        Model {
            name: name.into(),
            strategy: None,
            targets,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub provider: String,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// What the target can take (`function_calling`, `vision`, ...); `None`: what its model
    /// is known to take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
}

impl Target {
    /// `model` on `provider`, first in line.
    pub fn new(provider: &str, model: &str) -> Target {
        Target {
            provider: provider.into(),
            model: model.into(),
            priority: None,
            capabilities: None,
        }
    }

    /// The same target, tried after those of a lower priority.
    pub fn priority(mut self, priority: u32) -> Target {
        self.priority = Some(priority);
        self
    }

    pub fn capabilities(mut self, capabilities: &[&str]) -> Target {
        self.capabilities = Some(capabilities.iter().map(|c| (*c).to_owned()).collect());
        self
    }
}

/// A gateway key written in the file.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub name: String,
    pub key: String,
    pub models: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<u64>,
}

impl ApiKey {
    /// Key `name` with secret `key`, allowed `models` (patterns such as `*` or `claude-*`).
    pub fn new(name: &str, key: &str, models: &[&str]) -> ApiKey {
        ApiKey {
            name: name.into(),
            key: key.into(),
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            credits: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Auth {
    pub allowed_provider_networks: Vec<String>,
}

impl Config {
    /// A control plane on `ports` with its SQLite store and master key in `dir`, the filter's
    /// build (checked when Envoy starts), and nothing else configured.
    pub fn new(ports: Ports, dir: &Path) -> Config {
        Config {
            listen: Listen {
                admin: format!("127.0.0.1:{}", ports.admin),
                xds: format!("127.0.0.1:{}", ports.xds),
            },
            gateway: Gateway {
                listen: format!("127.0.0.1:{}", ports.gateway),
                admin: format!("127.0.0.1:{}", ports.envoy_admin),
                wasm: wasm_path_unchecked(),
                ..Gateway::default()
            },
            database: format!("sqlite://{}/switchyard.db", dir.display()),
            master_key_file: dir.join("master.key"),
            redis: None,
            redis_prefix: None,
            probes: None,
            discovery: None,
            providers: Vec::new(),
            models: Vec::new(),
            api_keys: Vec::new(),
            auth: None,
        }
    }

    /// The provider called `name` (panics when there is none).
    pub fn provider_mut(&mut self, name: &str) -> &mut Provider {
        self.providers
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no provider {name} in the config"))
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("the config serialises")
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_yaml()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// The config every stack starts from: the mock as provider `mock`, a logical model `smart`,
/// and two gateway keys.
pub fn default_config(ports: Ports, dir: &Path, mock_base_url: &str) -> Config {
    config_with_flaky(
        ports,
        dir,
        mock_base_url,
        &format!("http://127.0.0.1:{}/v1", free_port()),
        &format!("127.0.0.1:{}", free_port()),
    )
}

/// [`default_config`] with provider `flaky` at `flaky_base_url` (a [`mock::faulty::Faulty`]):
/// model `fickle` tries it first and the mock after it; and provider `proxied`, the mock
/// reached through a pool of two egress proxies: one that does not exist, then `proxy`.
pub fn config_with_flaky(
    ports: Ports,
    dir: &Path,
    mock_base_url: &str,
    flaky_base_url: &str,
    proxy: &str,
) -> Config {
    let origin = mock_base_url.trim_end_matches("/v1");
    let service_account = mock::vertex::service_account_json(&format!("{origin}/token"));
    let bedrock_key = format!("{}:{PROVIDER_KEY}", mock::bedrock::ACCESS_KEY_ID);
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    let dead_bedrock = format!("http://127.0.0.1:{}", free_port());
    let dead_proxy = format!("127.0.0.1:{}", free_port());
    let mut config = Config::new(ports, dir);
    config.gateway.wasm = wasm_path();
    config.gateway.max_body_bytes = Some(65536);
    config.gateway.first_byte_timeout_secs = Some(2);
    config.probes = Some(Probes {
        interval_secs: 1,
        timeout_secs: Some(1),
    });
    config.providers = vec![
        Provider::new("mock", "openai_compatible", mock_base_url, PROVIDER_KEY).models(&[
            "gpt-4o-mini",
            "text-embedding-3-small",
            "gpt-image-1",
            "mock-gated",
            "mock-cut",
            "mock-truncated",
            "mock-slow",
            "mock-held",
            "mock-gzip",
        ]),
        Provider::new("claude", "anthropic", origin, PROVIDER_KEY).models(&[
            "claude-sonnet-4-5",
            "claude-overloaded",
            "claude-rate-limited",
            "claude-gated",
            "claude-huge",
        ]),
        Provider::new("gem", "gemini", origin, PROVIDER_KEY).models(&[
            "gemini-2.5-flash",
            "gemini-overloaded",
            "gemini-rate-limited",
            "gemini-embedding-001",
            "imagen-4.0-generate-001",
        ]),
        Provider::new("gem-wrong-key", "gemini", origin, "AIza-not-the-right-key")
            .models(&["gemini-with-a-wrong-key"]),
        Provider::new("azure", "azure_openai", origin, PROVIDER_KEY).models(&["azure-gpt-4o"]),
        Provider {
            preset: Some("mistral".into()),
            ..Provider::new(
                "mistral",
                "openai_compatible",
                &format!("{origin}/mistral/v1"),
                PROVIDER_KEY,
            )
            .models(&["mistral-small-latest"])
        },
        Provider {
            region: Some("us-east-1".into()),
            ..Provider::new("bedrock", "bedrock", origin, &bedrock_key).models(&[
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                "bedrock-throttled",
                "amazon.titan-embed-text-v2:0",
                "cohere.embed-english-v3",
            ])
        },
        Provider {
            project: Some("switchyard-test".into()),
            location: Some("us-east5".into()),
            ..Provider::new("vertex", "vertex", origin, &service_account)
                .models(&["gemini-2.5-pro", "claude-opus-4-1@20250805"])
        },
        Provider::new("dead", "openai_compatible", &dead, "sk-dead-provider")
            .models(&["dead-model"]),
        Provider {
            region: Some("us-east-1".into()),
            ..Provider::new(
                "dead-bedrock",
                "bedrock",
                &dead_bedrock,
                "AKIDDEAD:dead-secret",
            )
        },
        Provider::new("flaky", "openai_compatible", flaky_base_url, PROVIDER_KEY),
        Provider {
            keys: vec![ProviderKey {
                secret: PROVIDER_KEY.into(),
                qps: Some(METERED_QPS),
            }],
            ..Provider::new("metered", "openai_compatible", mock_base_url, PROVIDER_KEY)
                .models(&["mock-metered"])
        },
        Provider {
            proxies: vec![dead_proxy, proxy.into()],
            ..Provider::new("proxied", "openai_compatible", mock_base_url, PROVIDER_KEY)
                .models(&["mock-proxied"])
        },
        Provider {
            keys: vec![
                ProviderKey::new(REVOKED_KEY),
                ProviderKey::new(PROVIDER_KEY),
            ],
            ..Provider::new("twokeys", "openai_compatible", mock_base_url, PROVIDER_KEY)
                .models(&["mock-keys"])
        },
    ];
    let mock = || Target::new("mock", "gpt-4o-mini");
    let flaky = || Target::new("flaky", "gpt-4o-mini");
    config.models = vec![
        Model::new("smart", vec![mock()]),
        Model::new(
            "resilient",
            vec![Target::new("dead", "dead-model"), mock().priority(1)],
        ),
        Model::new(
            "picky",
            vec![
                flaky().capabilities(&[]),
                mock()
                    .priority(1)
                    .capabilities(&["function_calling", "vision"]),
            ],
        ),
        Model::new("blind", vec![flaky().capabilities(&["function_calling"])]),
        Model::new("flaky-only", vec![flaky()]),
        Model::new(
            "resilient-unprobed",
            vec![
                Target::new("dead-bedrock", "anthropic.claude-3-haiku-20240307-v1:0"),
                mock().priority(1),
            ],
        ),
        Model::new("fickle", vec![flaky(), mock().priority(1)]),
        Model {
            strategy: Some("latency".into()),
            ..Model::new("quick", vec![Target::new("mock", "mock-slow"), mock()])
        },
        Model::new(
            "polyglot",
            vec![
                flaky(),
                Target::new("claude", "claude-sonnet-4-5").priority(1),
            ],
        ),
        Model::new(
            "polyglot-back",
            vec![
                Target::new("claude", "claude-overloaded"),
                mock().priority(1),
            ],
        ),
    ];
    config.api_keys = vec![
        ApiKey::new("test", GATEWAY_KEY, &["*"]),
        ApiKey::new("limited", LIMITED_KEY, &["gpt-4o-mini"]),
    ];
    config
}
