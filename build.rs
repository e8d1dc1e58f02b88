//! Names the git commit the core is built from, for Settings → About and the diagnostics
//! (`ZOF_GIT_COMMIT`, read with `option_env!`). A value set in the environment wins (a build
//! from a source archive can pass it); without git the commit is "unknown". It runs again only
//! when HEAD moves, not on every source change.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=ZOF_GIT_COMMIT");
    if std::env::var_os("ZOF_GIT_COMMIT").is_some() {
        return;
    }
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]).map(PathBuf::from) {
        // HEAD names the branch; the branch's reflog changes with every commit, checkout and reset.
        for watched in [dir.join("HEAD"), dir.join("logs/HEAD")] {
            if watched.exists() {
                println!("cargo:rerun-if-changed={}", watched.display());
            }
        }
    }
    if let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=ZOF_GIT_COMMIT={commit}");
    }
}
