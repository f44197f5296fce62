//! Replays the committed fuzz corpora on stable Rust, without cargo-fuzz or libFuzzer.
//!
//! For each fuzz target (`line_protocol`, `protobuf`, `json`, `decode`, `spool_record`, `proxy_header`) every seed under
//! `fuzz/corpus/<target>/` is fed to the matching `oneway_protocol::fuzzing` entry point, and so
//! are a handful of prefix truncations and single-bit-flipped variants of it (deterministic, no
//! randomness). Crash reproducers that `cargo fuzz` leaves under `fuzz/artifacts/<target>/`
//! are replayed too when that directory exists, so a found crash stays a failing test until it
//! is fixed. A panic fails the test and names the input that caused it.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use oneway_protocol::fuzzing;

type Target = fn(&[u8]);

/// Fewest seeds a corpus directory may hold.
const MIN_SEEDS: usize = 5;

/// Single-bit flips tried per seed (positions spread over the input, bit varies).
const FLIPS: usize = 6;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The regular files in `dir`, sorted by name; empty if `dir` does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Prefix lengths to cut `len` bytes at: the edges, and a few points through the middle.
fn cut_points(len: usize) -> Vec<usize> {
    let mut cuts = vec![
        0,
        1,
        2,
        len / 4,
        len / 3,
        len / 2,
        len * 2 / 3,
        len * 3 / 4,
        len.saturating_sub(2),
        len.saturating_sub(1),
    ];
    cuts.retain(|&c| c < len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Copies of `data`, each with one bit flipped. Byte positions come from a fixed xorshift
/// sequence seeded by the length, so runs are reproducible; byte 0 (the selector) is included
/// so a flip can also switch category or encoding.
fn bit_flips(data: &[u8]) -> Vec<(usize, u8, Vec<u8>)> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ data.len() as u64;
    (0..FLIPS)
        .map(|n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let pos = if n == 0 {
                0
            } else {
                (state % data.len() as u64) as usize
            };
            let bit = 1u8 << (n % 8);
            let mut flipped = data.to_vec();
            flipped[pos] ^= bit;
            (pos, bit, flipped)
        })
        .collect()
}

/// Runs `target` on `input`; a panic is recorded in `failures` with `what` describing the input.
fn run(target: Target, input: &[u8], what: impl FnOnce() -> String, failures: &mut Vec<String>) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| target(input))) {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        failures.push(format!("{}: {message}", what()));
    }
}

/// Replays `fuzz/corpus/<name>/` (with truncations and bit flips) and `fuzz/artifacts/<name>/`.
fn replay(name: &str, target: Target) {
    let corpus = fuzz_dir().join("corpus").join(name);
    let seeds = files_in(&corpus);
    assert!(
        seeds.len() >= MIN_SEEDS,
        "{} holds {} seeds, want at least {MIN_SEEDS}",
        corpus.display(),
        seeds.len()
    );

    let mut failures = Vec::new();
    for path in &seeds {
        let data = fs::read(path).expect("readable corpus file");
        let shown = path.display();
        run(target, &data, || format!("{shown}"), &mut failures);
        for cut in cut_points(data.len()) {
            run(
                target,
                &data[..cut],
                || format!("{shown} truncated to {cut} bytes"),
                &mut failures,
            );
        }
        for (pos, bit, flipped) in bit_flips(&data) {
            run(
                target,
                &flipped,
                || format!("{shown} with byte {pos} xor {bit:#04x}"),
                &mut failures,
            );
        }
    }

    for path in files_in(&fuzz_dir().join("artifacts").join(name)) {
        let data = fs::read(&path).expect("readable corpus file");
        run(
            target,
            &data,
            || format!("artifact {}", path.display()),
            &mut failures,
        );
    }

    assert!(
        failures.is_empty(),
        "{name}: {} input(s) panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn line_protocol_corpus_and_mutations_never_panic() {
    replay("line_protocol", fuzzing::line_protocol);
}

#[test]
fn protobuf_corpus_and_mutations_never_panic() {
    replay("protobuf", fuzzing::protobuf);
}

#[test]
fn json_corpus_and_mutations_never_panic() {
    replay("json", fuzzing::json);
}

#[test]
fn decode_corpus_and_mutations_never_panic() {
    replay("decode", fuzzing::decode);
}

#[test]
fn spool_record_corpus_and_mutations_never_panic() {
    replay("spool_record", fuzzing::spool_record);
}

#[test]
fn proxy_header_corpus_and_mutations_never_panic() {
    replay("proxy_header", fuzzing::proxy_header);
}

#[test]
fn cut_points_any_length_stay_inside_input() {
    for len in 0..64 {
        let cuts = cut_points(len);
        assert!(cuts.iter().all(|&c| c < len), "len {len}: {cuts:?}");
        assert!(cuts.windows(2).all(|w| w[0] < w[1]), "len {len}: {cuts:?}");
    }
}

#[test]
fn bit_flips_same_input_are_deterministic_and_differ_by_one_bit() {
    let data = b"\x06log message=\"x\",status=\"ok\"\n";
    let first = bit_flips(data);
    assert_eq!(first, bit_flips(data));
    assert_eq!(first.len(), FLIPS);
    assert_eq!(first[0].0, 0, "the selector byte is always flipped once");
    for (pos, bit, flipped) in &first {
        let differing: u32 = data
            .iter()
            .zip(flipped)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        assert_eq!(differing, 1);
        assert_eq!(data[*pos] ^ flipped[*pos], *bit);
    }
    assert!(bit_flips(b"").is_empty());
}
