//! OpenAI-compatible providers (DeepSeek, Mistral, Groq, vLLM, ...): OpenAI's protocol, keys
//! and model list, with each provider's defaults and differences as data (its preset).

use switchyard_contract::config::Quirks;

use super::openai::OpenAi;
use super::{Page, ProviderSpec};
use crate::domain::ProviderSettings;

pub struct OpenAiCompatible;

impl ProviderSpec for OpenAiCompatible {
    fn name(&self) -> &'static str {
        "openai_compatible"
    }

    fn check_settings(&self, settings: &mut ProviderSettings) -> Result<(), String> {
        match settings.preset.as_deref() {
            Some(name) if preset(name).is_none() => {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
                Err(format!(
                    "unknown preset {name:?}; known: {}",
                    names.join(", ")
                ))
            }
            _ => Ok(()),
        }
    }

    fn default_base_url(&self, settings: &ProviderSettings) -> Option<String> {
        let preset = preset(settings.preset.as_deref()?)?;
        preset.base_url.map(str::to_owned)
    }

    /// The preset's quirks (none for OpenAI itself and without a preset).
    fn quirks(&self, settings: &ProviderSettings) -> Quirks {
        match settings.preset.as_deref().and_then(preset) {
            Some(p) if p.name != "openai" => p.quirks(),
            _ => Quirks::default(),
        }
    }

    fn probe_url(&self, base_url: &str, settings: &ProviderSettings) -> Option<String> {
        OpenAi.probe_url(base_url, settings)
    }

    fn models_path(&self, settings: &ProviderSettings, cursor: Option<&str>) -> Option<String> {
        OpenAi.models_path(settings, cursor)
    }

    fn parse_models(&self, settings: &ProviderSettings, body: &[u8]) -> Result<Page, String> {
        OpenAi.parse_models(settings, body)
    }
}

/// An OpenAI-compatible provider's defaults and its differences from OpenAI, as data.
#[derive(Debug)]
pub struct Preset {
    pub name: &'static str,
    pub base_url: Option<&'static str>,
    /// Top-level request fields the provider refuses or ignores.
    pub drop: &'static [&'static str],
    /// Fields it names differently: (OpenAI's name, the provider's).
    pub rename: &'static [(&'static str, &'static str)],
    /// Whether it takes `stream_options.include_usage`.
    pub stream_usage: bool,
}

impl Preset {
    /// The filter's quirks for the provider.
    fn quirks(&self) -> Quirks {
        Quirks {
            drop: OPENAI_ONLY
                .iter()
                .chain(self.drop)
                .map(|s| (*s).to_owned())
                .collect(),
            rename: self
                .rename
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            stream_usage: self.stream_usage,
        }
    }
}

/// OpenAI platform features no compatible provider has; dropped for all of them (the strict
/// ones refuse unknown fields).
const OPENAI_ONLY: &[&str] = &[
    "store",
    "metadata",
    "service_tier",
    "modalities",
    "audio",
    "verbosity",
    "web_search_options",
    "safety_identifier",
    "prompt_cache_key",
];

macro_rules! presets {
    ($($name:literal => $url:expr, drop: [$($d:literal),*], rename: [$($from:literal => $to:literal),*], stream_usage: $su:expr;)*) => {
        /// Every OpenAI-compatible preset. Sources: each provider's API reference.
        pub const PRESETS: &[Preset] = &[$(Preset {
            name: $name,
            base_url: $url,
            drop: &[$($d),*],
            rename: &[$(($from, $to)),*],
            stream_usage: $su,
        }),*];
    };
}

presets! {
    "openai" => Some("https://api.openai.com/v1"), drop: [], rename: [], stream_usage: true;
    "deepseek" => Some("https://api.deepseek.com/v1"), drop: [], rename: [], stream_usage: true;
    // Mistral refuses unknown fields (422), names the seed `random_seed`, always sends usage
    // with the last chunk and takes no stream_options.
    "mistral" => Some("https://api.mistral.ai/v1"),
        drop: ["stream_options", "user", "logprobs", "top_logprobs", "logit_bias", "reasoning_effort"],
        rename: ["seed" => "random_seed", "max_completion_tokens" => "max_tokens"], stream_usage: false;
    // Groq refuses logprobs, logit_bias and top_logprobs.
    "groq" => Some("https://api.groq.com/openai/v1"),
        drop: ["logprobs", "top_logprobs", "logit_bias"], rename: [], stream_usage: true;
    "xai" => Some("https://api.x.ai/v1"), drop: [], rename: [], stream_usage: true;
    "openrouter" => Some("https://openrouter.ai/api/v1"), drop: [], rename: [], stream_usage: true;
    "together" => Some("https://api.together.xyz/v1"), drop: [], rename: [], stream_usage: true;
    "fireworks" => Some("https://api.fireworks.ai/inference/v1"), drop: [], rename: [], stream_usage: true;
    "dashscope" => Some("https://dashscope-intl.aliyuncs.com/compatible-mode/v1"),
        drop: [], rename: [], stream_usage: true;
    "moonshot" => Some("https://api.moonshot.ai/v1"), drop: [], rename: [], stream_usage: true;
    // Zhipu takes `max_tokens` only and puts usage in the last chunk by itself.
    "zhipu" => Some("https://open.bigmodel.cn/api/paas/v4"),
        drop: ["stream_options"], rename: ["max_completion_tokens" => "max_tokens"], stream_usage: false;
    "baichuan" => Some("https://api.baichuan-ai.com/v1"),
        drop: ["stream_options"], rename: ["max_completion_tokens" => "max_tokens"], stream_usage: false;
    "ollama" => Some("http://127.0.0.1:11434/v1"), drop: [], rename: [], stream_usage: true;
    "vllm" => None, drop: [], rename: [], stream_usage: true;
}

pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_preset(name: &str) -> ProviderSettings {
        ProviderSettings {
            preset: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn presets_give_base_urls_and_quirks() {
        let mistral = with_preset("mistral");
        assert_eq!(
            OpenAiCompatible.default_base_url(&mistral).as_deref(),
            Some("https://api.mistral.ai/v1")
        );
        let q = OpenAiCompatible.quirks(&mistral);
        assert!(q.drop.iter().any(|d| d == "store"));
        assert!(q.rename.contains(&("seed".into(), "random_seed".into())));
        assert!(!q.stream_usage);
        assert_eq!(
            OpenAiCompatible.quirks(&with_preset("openai")),
            Quirks::default()
        );
        assert_eq!(
            OpenAiCompatible.quirks(&ProviderSettings::default()),
            Quirks::default()
        );
        assert_eq!(
            OpenAiCompatible.default_base_url(&with_preset("vllm")),
            None
        );
    }

    #[test]
    fn unknown_presets_are_refused_naming_the_known_ones() {
        let err = OpenAiCompatible
            .check_settings(&mut with_preset("nope"))
            .expect_err("unknown preset");
        assert!(err.contains("mistral"), "{err}");
        assert!(OpenAiCompatible
            .check_settings(&mut with_preset("groq"))
            .is_ok());
    }
}
