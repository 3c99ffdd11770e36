//! The sources Lambda (stub: the wiring lands with the cloud work).

fn main() {}
