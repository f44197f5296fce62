//! Gives the binary the commit it is built from (`ONEWAY_COMMIT`, for `oneway_build_info` and
//! the `start` audit event): the environment's `ONEWAY_COMMIT` if set (a release build),
//! else `git rev-parse`, else `unknown`. Rebuilt when HEAD moves.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=ONEWAY_COMMIT");
    let commit = std::env::var("ONEWAY_COMMIT").ok().or_else(|| {
        // HEAD, and the branch it names, so that a commit or a checkout rebuilds.
        for path in ["HEAD", "refs/heads"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
            && let Some(p) = git(&["rev-parse", "--git-path", &branch])
        {
            println!("cargo:rerun-if-changed={p}");
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    let commit = commit.filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    println!(
        "cargo:rustc-env=ONEWAY_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}
