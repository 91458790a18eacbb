//! The bytes one call of the stripper forwards, kept as a range of the input chunk for as
//! long as possible so that the common case returns the input `Bytes` itself, or a slice.

use bytes::{Bytes, BytesMut};

/// The output of one call: nothing yet, one range of the chunk, or a copy.
pub enum Out {
    Empty,
    Slice(usize, usize),
    Owned(BytesMut),
}

impl Out {
    /// Emits `chunk[from..to]`, still as one slice of the chunk when it continues the last.
    pub fn range(&mut self, chunk: &[u8], from: usize, to: usize) {
        match self {
            _ if from == to => {}
            Out::Empty => *self = Out::Slice(from, to),
            Out::Slice(_, end) if *end == from => *end = to,
            _ => self.bytes(chunk, &chunk[from..to]),
        }
    }

    /// Emits bytes that are not a continuation of the slice: from here on, a copy.
    pub fn bytes(&mut self, chunk: &[u8], extra: &[u8]) {
        match self {
            _ if extra.is_empty() => {}
            Out::Owned(buf) => buf.extend_from_slice(extra),
            Out::Empty => *self = Out::Owned(BytesMut::from(extra)),
            Out::Slice(from, to) => {
                let mut buf = BytesMut::with_capacity(*to - *from + extra.len());
                buf.extend_from_slice(&chunk[*from..*to]);
                buf.extend_from_slice(extra);
                *self = Out::Owned(buf);
            }
        }
    }

    pub fn into_bytes(self, chunk: Bytes) -> Bytes {
        match self {
            Out::Empty => Bytes::new(),
            Out::Slice(0, to) if to == chunk.len() => chunk,
            Out::Slice(from, to) => chunk.slice(from..to),
            Out::Owned(buf) => buf.freeze(),
        }
    }
}
