//! What a request id or key id that travels between the filter and the control plane may be:
//! they name counters and rows, so they are short and plain.

/// The longest id (request ids are 32 hex digits, key ids shorter).
pub const MAX_ID_LEN: usize = 64;

/// Whether `id` is at most [`MAX_ID_LEN`] letters, digits, `_` and `-` (the empty id is
/// plain: callers that need an id say so).
pub fn is_plain(id: &str) -> bool {
    id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids() {
        assert!(is_plain(&"a".repeat(64)));
        assert!(!is_plain(&"a".repeat(65)));
        assert!(is_plain("key_1-A"));
        assert!(is_plain(""));
        for odd in ["key:1", "r*1", "has space", "é"] {
            assert!(!is_plain(odd), "{odd}");
        }
    }
}
