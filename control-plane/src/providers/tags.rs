//! Capabilities a model's name implies, for lists without metadata (OpenAI-style) and for
//! what metadata does not say (reasoning).

use super::Tag;

/// Reasoning families by name (where the list says nothing about it).
pub(super) fn reasoning_name(id: &str) -> bool {
    let id = id.to_ascii_lowercase();
    let bare = id.rsplit('/').next().unwrap_or(&id);
    ["o1", "o3", "o4"].iter().any(|p| bare.starts_with(p))
        || bare.starts_with("gpt-5")
        || bare.contains("reasoner")
        || bare.contains("thinking")
        || bare.contains("deepseek-r1")
        || bare.contains("qwq")
        || bare.contains("claude-sonnet-4")
        || bare.contains("claude-opus-4")
        || bare.contains("claude-3-7")
        || bare.contains("claude-haiku-4")
}

/// Capabilities from a model's name, for lists without metadata (OpenAI-style).
pub fn tags_from_name(id: &str) -> Vec<Tag> {
    let lower = id.to_ascii_lowercase();
    let mut tags = Vec::new();
    if lower.contains("embed") {
        tags.push(Tag::Embeddings);
    } else if lower.contains("dall-e") || lower.contains("gpt-image") || lower.contains("imagen") {
        tags.push(Tag::ImageGeneration);
    } else if lower.contains("whisper")
        || lower.contains("tts")
        || lower.contains("moderation")
        || lower.contains("transcribe")
    {
        // Audio and moderation models: none of the tags apply.
    } else {
        tags.extend([Tag::Chat, Tag::FunctionCalling]);
        let vision = [
            "gpt-4o",
            "gpt-4.1",
            "gpt-4-turbo",
            "gpt-5",
            "o1",
            "o3",
            "o4",
            "vision",
            "-vl",
            "pixtral",
            "llava",
        ];
        if vision.iter().any(|v| lower.contains(v)) {
            tags.push(Tag::Vision);
        }
        if reasoning_name(&lower) {
            tags.push(Tag::Reasoning);
        }
    }
    tags.sort();
    tags.dedup();
    tags
}
