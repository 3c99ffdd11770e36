//! Verification plus mapping of a real GitHub payload (filled in once the GitHub source lands).

use criterion::{criterion_group, criterion_main, Criterion};

fn verify_and_map(_c: &mut Criterion) {}

criterion_group!(benches, verify_and_map);
criterion_main!(benches);
