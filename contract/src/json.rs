//! JSON written by hand where building a `serde_json::Value` would cost a request its
//! allocations: string escaping.

use std::fmt::{self, Write as _};

/// Appends `s` as a JSON string, quotes included.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// Appends `s` escaped for the inside of a JSON string.
fn push_escaped(out: &mut String, s: &str) {
    // Nearly always nothing needs an escape: then the text goes in whole.
    if !s
        .bytes()
        .any(|b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
    {
        out.push_str(s);
        return;
    }
    // Runs of bytes that need no escape are copied whole; every byte that does is ASCII, so
    // the runs end on character boundaries.
    let mut run = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escaped);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
}

/// Appends what `value` displays as a JSON string, quotes included, with no copy in between.
pub fn push_display(out: &mut String, value: &impl fmt::Display) {
    struct Escaping<'a>(&'a mut String);
    impl fmt::Write for Escaping<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            push_escaped(self.0, s);
            Ok(())
        }
    }
    out.push('"');
    let _ = write!(Escaping(out), "{value}");
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_strings_read_back_as_they_were() {
        for s in [
            "",
            "plain",
            "q\"uote\\back",
            "line\nfeed\r\ttab",
            "\u{1}\u{1f}\u{7f}",
            "ünïcødé ✓ 😀",
        ] {
            let mut out = String::new();
            push_string(&mut out, s);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s, "{out}");
            let mut shown = String::new();
            push_display(&mut shown, &s);
            assert_eq!(shown, out);
        }
        let mut out = String::new();
        push_string(&mut out, "a\"\u{1}");
        assert_eq!(out, r#""a\"\u0001""#);
    }
}
