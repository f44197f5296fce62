//! Corpora for the criterion benchmarks: the same DataKit-shaped points the protocol tests
//! use (`protocol/tests/support/model.rs`, included by path), encoded once per run.

#[path = "../../protocol/tests/support/model.rs"]
pub mod model;

/// Size of one batch: DataKit's `max_raw_body_size` (1 MiB before gzip).
pub const BATCH_BYTES: usize = 1 << 20;

/// The line-protocol corpora by name: `long` (TSBS cpu-only), `short`, `escapes`.
pub fn lp_corpora() -> Vec<(&'static str, Vec<model::Point>)> {
    vec![
        ("long", model::corpus(model::tsbs_cpu, BATCH_BYTES)),
        ("short", model::corpus(model::short, BATCH_BYTES)),
        ("escapes", model::corpus(model::escapes, BATCH_BYTES)),
    ]
}
