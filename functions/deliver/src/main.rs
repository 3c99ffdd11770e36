//! The deliver Lambda (SQS wiring; see the crate's library for the handler).

fn main() {}
