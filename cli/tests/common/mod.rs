//! Shared by the command-line tests: running `glassbox` as a user would.

use std::path::PathBuf;
use std::process::Command;

/// Runs `glassbox args…` from the repository's root: (success, stdout, stderr).
pub fn glassbox(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("run glassbox");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
