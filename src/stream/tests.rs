//! Tests of the side path against a realistic Azure OpenAI stream, fed whole, split at every
//! byte, byte by byte and at random: chunking must never change what is seen or forwarded.

mod differential;
mod fixture;
mod meter;
mod parser;
mod strip;
