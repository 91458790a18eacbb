//! Finding the next line terminator (`\n` or `\r`), the inner loop of both the parser and
//! the stripper: every byte of the stream goes through it.
//!
//! The crate takes no `memchr` dependency for this, so it compares eight bytes at a time in
//! a `u64` (the classic "has zero byte" trick). A byte-at-a-time `position` cannot be
//! vectorised by the compiler because of its early exit.

const LO: u64 = u64::from_ne_bytes([0x01; 8]);
const HI: u64 = u64::from_ne_bytes([0x80; 8]);
const LF: u64 = u64::from_ne_bytes([b'\n'; 8]);
const CR: u64 = u64::from_ne_bytes([b'\r'; 8]);

/// Index of the first `\n` or `\r` in `bytes`.
pub fn find_eol(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let mut lanes = [0u8; 8];
        lanes.copy_from_slice(word);
        // Little-endian so the lowest set bit belongs to the first byte in memory.
        let w = u64::from_le_bytes(lanes);
        if zero_byte(w ^ LF) | zero_byte(w ^ CR) != 0 {
            // The word has one: find which byte is first, plainly.
            return word.iter().position(|&b| is_eol(b)).map(|p| at + p);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| is_eol(b))
        .map(|p| at + p)
}

/// Non-zero when some byte of `x` is zero (the result may also flag bytes above a zero one,
/// which is why the caller only uses it as a yes/no).
fn zero_byte(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

pub fn is_eol(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

#[cfg(test)]
mod tests {
    use super::find_eol;

    #[test]
    fn agrees_with_a_plain_scan_everywhere() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..2000 {
            let len = rng.usize(0..40);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.u8(0..20) {
                    0 => b'\n',
                    1 => b'\r',
                    2 => 0x8a,
                    3 => 0x0b,
                    4 => 0x0c,
                    _ => rng.u8(..),
                })
                .collect();
            let plain = bytes.iter().position(|&b| b == b'\n' || b == b'\r');
            assert_eq!(find_eol(&bytes), plain, "{bytes:?}");
        }
    }
}
