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
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
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
