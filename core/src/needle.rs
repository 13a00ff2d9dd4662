//! Substring searches built once. `memchr::memmem::find` builds its searcher on every call; for
//! the few hundred bytes of a stream event that was most of the search (about 150 instructions a
//! build, four searches an event). A [`Needle`] builds its searcher on first use and keeps it.

use std::sync::OnceLock;

use memchr::memmem::{Finder, FinderRev};

/// A fixed byte string to look for, its searchers built once (see the module documentation).
pub struct Needle {
    needle: &'static [u8],
    forward: OnceLock<Finder<'static>>,
    reverse: OnceLock<FinderRev<'static>>,
}

impl Needle {
    pub const fn new(needle: &'static [u8]) -> Needle {
        Needle {
            needle,
            forward: OnceLock::new(),
            reverse: OnceLock::new(),
        }
    }

    /// Where the needle first occurs in `haystack`.
    pub fn find(&self, haystack: &[u8]) -> Option<usize> {
        self.forward
            .get_or_init(|| Finder::new(self.needle))
            .find(haystack)
    }

    /// Every place the needle occurs in `haystack`, not overlapping, in order.
    pub fn find_iter<'h>(
        &'static self,
        haystack: &'h [u8],
    ) -> memchr::memmem::FindIter<'h, 'static> {
        self.forward
            .get_or_init(|| Finder::new(self.needle))
            .find_iter(haystack)
    }

    /// Where the needle last occurs in `haystack`.
    pub fn rfind(&self, haystack: &[u8]) -> Option<usize> {
        self.reverse
            .get_or_init(|| FinderRev::new(self.needle))
            .rfind(haystack)
    }

    pub fn len(&self) -> usize {
        self.needle.len()
    }

    pub fn is_empty(&self) -> bool {
        self.needle.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Needle;

    #[test]
    fn finds_as_memmem_does() {
        static USAGE: Needle = Needle::new(b"\"usage\"");
        for hay in [
            &b""[..],
            b"\"usage\"",
            b"{\"usage\":1,\"usage\":2}",
            b"no usage here",
            b"\"usag",
        ] {
            assert_eq!(USAGE.find(hay), memchr::memmem::find(hay, b"\"usage\""));
            assert_eq!(USAGE.rfind(hay), memchr::memmem::rfind(hay, b"\"usage\""));
            assert!(USAGE
                .find_iter(hay)
                .eq(memchr::memmem::find_iter(hay, b"\"usage\"")));
        }
        assert_eq!(USAGE.len(), 7);
    }
}
