//! Tells, from the first bytes of an event's data, whether it can still be the usage chunk:
//! data that starts (JSON whitespace aside) with `{"choices":[` and then anything but `]` has
//! a first choice, so it is not; data that is not an object is not either. Anything else
//! (another key first, `"choices":[]`, an escaped key) cannot be told from the prefix.

/// Matches `{"choices":[` plus one more significant byte at the start of the data.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    #[default]
    Open,
    Key(u8),
    Colon,
    Array,
    First,
}

pub enum Verdict {
    More,
    /// Not the usage chunk.
    Pass,
    /// Cannot tell from the prefix: hold to the end.
    Hold,
}

const KEY: &[u8] = b"\"choices\"";

impl Prefix {
    pub fn step(&mut self, b: u8) -> Verdict {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match *self {
            Prefix::Open if ws => Verdict::More,
            Prefix::Open if b == b'{' => self.next(Prefix::Key(0)),
            // Not an object: never the usage chunk.
            Prefix::Open => Verdict::Pass,
            Prefix::Key(0) if ws => Verdict::More,
            Prefix::Key(k) => match KEY.get(usize::from(k)) {
                Some(&want) if want == b => {
                    if usize::from(k) + 1 == KEY.len() {
                        self.next(Prefix::Colon)
                    } else {
                        self.next(Prefix::Key(k + 1))
                    }
                }
                _ => Verdict::Hold,
            },
            Prefix::Colon | Prefix::Array | Prefix::First if ws => Verdict::More,
            Prefix::Colon if b == b':' => self.next(Prefix::Array),
            Prefix::Array if b == b'[' => self.next(Prefix::First),
            // `[]`: the annotation or the usage chunk, only the end tells.
            Prefix::First if b == b']' => Verdict::Hold,
            // A first choice (or invalid JSON): not the usage chunk either way.
            Prefix::First => Verdict::Pass,
            Prefix::Colon | Prefix::Array => Verdict::Hold,
        }
    }

    fn next(&mut self, state: Prefix) -> Verdict {
        *self = state;
        Verdict::More
    }
}
