//! The `o200k_base` pre-tokenizer (the split into words, numbers, punctuation and whitespace
//! that comes before byte-pair encoding), hand-written for ASCII text; anything else goes to
//! the tokenizer crate's own regex.
//!
//! Why: on a 1 KB English prompt the crate's regex costs about 100,000 instructions, most of the
//! gateway's own work per request, while the same split is a simple byte loop for ASCII. The
//! pattern, as `bpe-openai` runs it (tiktoken's, with `\s+(?!\S)` emulated by `\s+\s` minus its
//! last character), tried in order at each position:
//!
//! 1. `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?`
//! 2. `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?`
//! 3. `\p{N}{1,3}`
//! 4. ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
//! 5. `\s*[\r\n]+`
//! 6. `\s+$`
//! 7. `\s+\s`, keeping all but the last character
//! 8. `\s+`
//!
//! The fast path decides a piece only from ASCII bytes: when it would have to look at a
//! non-ASCII character (which may be a letter, a digit, a space or a case variant of `s`), it
//! hands that one piece to the regex, anchored at the same position. A test compares both on
//! random text built from the characters where the alternatives meet.

/// Splits `text` into exactly the pieces `bpe_openai::o200k_base().split(text)` yields.
pub fn pieces(text: &str) -> Pieces<'_> {
    Pieces {
        text,
        pos: 0,
        ascii_end: 0,
    }
}

pub struct Pieces<'a> {
    text: &'a str,
    pos: usize,
    /// End of the run of ASCII bytes that starts at or before `pos`.
    ascii_end: usize,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        if self.pos >= bytes.len() {
            return None;
        }
        if self.ascii_end <= self.pos {
            self.ascii_end = bytes[self.pos..]
                .iter()
                .position(|b| !b.is_ascii())
                .map_or(bytes.len(), |n| self.pos + n);
        }
        let ascii = &bytes[self.pos..self.ascii_end];
        let len = match ascii_piece(ascii, self.ascii_end == bytes.len()) {
            Some(len) => len,
            None => bpe_openai::o200k_base()
                .split(&self.text[self.pos..])
                .next()
                .map_or(bytes.len() - self.pos, str::len),
        };
        let piece = &self.text[self.pos..self.pos + len];
        self.pos += len;
        Some(piece)
    }
}

fn is_space(b: u8) -> bool {
    // Unicode White_Space within ASCII: tab, LF, VT, FF, CR, space.
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

fn is_newline(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

/// `[^\s\p{L}\p{N}]` within ASCII.
fn is_punct(b: u8) -> bool {
    !is_space(b) && !b.is_ascii_alphanumeric()
}

/// The length of the piece at the start of `s`, an ASCII run; `at_end` says whether the text
/// ends where `s` does. `None` when the answer depends on the character after `s`.
fn ascii_piece(s: &[u8], at_end: bool) -> Option<usize> {
    // The byte at `i`: `Some(None)` past the end of the text, `None` at a non-ASCII character.
    let peek = |i: usize| -> Option<Option<u8>> {
        match s.get(i) {
            Some(&b) => Some(Some(b)),
            None if at_end => Some(None),
            None => None,
        }
    };
    let c0 = peek(0)??;

    // 1 and 2: an optional prefix that is no letter, digit or newline, then uppercase letters
    // and lowercase letters, at least one of either (ASCII cases are disjoint, so the greedy
    // runs never give back), then an optional contraction.
    let start = usize::from(!is_newline(c0) && !c0.is_ascii_alphanumeric());
    let mut i = start;
    while let Some(b) = peek(i)? {
        if !b.is_ascii_uppercase() {
            break;
        }
        i += 1;
    }
    while let Some(b) = peek(i)? {
        if !b.is_ascii_lowercase() {
            break;
        }
        i += 1;
    }
    if i > start {
        return Some(i + contraction(&peek, i)?);
    }

    // 3: one to three digits.
    if c0.is_ascii_digit() {
        let mut n = 1;
        while n < 3 {
            match peek(n)? {
                Some(b) if b.is_ascii_digit() => n += 1,
                _ => break,
            }
        }
        return Some(n);
    }

    // 4: an optional space, punctuation, then newlines and slashes.
    let start = usize::from(c0 == b' ');
    let mut i = start;
    while let Some(b) = peek(i)? {
        if !is_punct(b) {
            break;
        }
        i += 1;
    }
    if i > start {
        while let Some(b) = peek(i)? {
            if !is_newline(b) && b != b'/' {
                break;
            }
            i += 1;
        }
        return Some(i);
    }

    // 5 to 8: a run of whitespace. With a newline in it, up to and including its last newline;
    // else all of it at the end of the text; else all but its last character, which becomes the
    // prefix of the next piece; else (one character) itself.
    let mut run = 0;
    let mut last_newline = None;
    let ends_text = loop {
        match peek(run)? {
            Some(b) if is_space(b) => {
                if is_newline(b) {
                    last_newline = Some(run);
                }
                run += 1;
            }
            Some(_) => break false,
            None => break true,
        }
    };
    Some(match last_newline {
        Some(k) => k + 1,
        None if ends_text => run,
        None if run >= 2 => run - 1,
        None => run,
    })
}

/// Length of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at `i`, 0 when absent.
fn contraction(peek: &impl Fn(usize) -> Option<Option<u8>>, i: usize) -> Option<usize> {
    if peek(i)? != Some(b'\'') {
        return Some(0);
    }
    let lower = |j: usize| -> Option<Option<u8>> { Some(peek(j)?.map(|b| b.to_ascii_lowercase())) };
    Some(match lower(i + 1)? {
        Some(b's' | b't' | b'm' | b'd') => 2,
        Some(b'r' | b'v') if lower(i + 2)? == Some(b'e') => 3,
        Some(b'l') if lower(i + 2)? == Some(b'l') => 3,
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> Vec<&str> {
        bpe_openai::o200k_base().split(text).collect()
    }

    #[test]
    fn agrees_with_the_regex_on_chosen_text() {
        let cases = [
            "",
            "a",
            " ",
            "Hello, world! I'm here; don't you DARE'LL say it's 12345 o'clock.\r\n\r\n  x",
            "HELLOworld HELLO World'S THEY'RE we've I'M you'Ll he'D x'",
            "  leading\t\ttabs\n\n\n   trailing   ",
            "path/to/file.rs:12 ((nested)) --flag=value \"quoted\" {json: [1, 2]}\n/\n",
            "\x0b\x0cform feed\x00\x01\x7f control",
            "caf\u{e9} na\u{ef}ve \u{1f389} \u{4e2d}\u{6587} x\u{a0}y it'\u{17f} 12\u{b2} \u{2028}end",
            "'s 's 'S 're 'RE 'x '",
            "1234567 12 1 a1b2c3",
            "!!!\n\n!!!/\r\n/",
        ];
        for text in cases {
            assert_eq!(
                pieces(text).collect::<Vec<_>>(),
                reference(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn agrees_with_the_regex_on_random_text() {
        // The characters where the alternatives meet: cases, digits, every ASCII space, the
        // contraction letters, apostrophes, slashes, punctuation, controls, and non-ASCII
        // letters, digits, spaces and a case variant of `s`.
        const ALPHABET: &[&str] = &[
            "a",
            "Z",
            "s",
            "t",
            "r",
            "e",
            "v",
            "m",
            "l",
            "d",
            "L",
            "S",
            "E",
            "0",
            "7",
            " ",
            " ",
            "\t",
            "\n",
            "\r",
            "\x0b",
            "\x0c",
            "'",
            "'",
            "/",
            "!",
            ".",
            "(",
            "-",
            "_",
            "\x01",
            "\x7f",
            "\u{e9}",
            "\u{c9}",
            "\u{17f}",
            "\u{b2}",
            "\u{663}",
            "\u{a0}",
            "\u{2028}",
            "\u{4e2d}",
            "\u{1f600}",
            "\u{301}",
        ];
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut text = String::new();
        for _ in 0..20_000 {
            text.clear();
            for _ in 0..rng.usize(0..24) {
                text.push_str(ALPHABET[rng.usize(..ALPHABET.len())]);
            }
            assert_eq!(
                pieces(&text).collect::<Vec<_>>(),
                reference(&text),
                "{text:?}"
            );
        }
    }
}
