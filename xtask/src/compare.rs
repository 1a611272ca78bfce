//! `cargo xtask bench-compare`: builds and installs what the side-by-side benchmark needs, then
//! runs `tools/bench/compare.mjs`, which prints the table and writes `docs/benchmarks.md`.
//!
//! What it installs stays under `target/bench/` (llama-cpp-python, built from source by pip the
//! first time: slow, then reused) and `tools/bench/node_modules` (wllama, Playwright); candle's
//! benchmark is its own workspace in `tools/candle-bench`, built into `target/candle-bench`.
//! None of it is part of the test command.

use crate::{build_page, serve_dist_in_background, setup, shell};

const LLAMA_CPP_PYTHON: &str = "llama-cpp-python==0.3.36";

pub fn run(args: &[String]) -> Result<(), String> {
    setup::run(setup::Purpose::Test)?;
    let root = shell::root();
    shell::step("build the glassbox CLI (release)", || {
        shell::run(
            shell::cmd("cargo")
                .args(["build", "--release", "-p", "glassbox-cli"])
                .current_dir(&root),
        )
    })?;
    build_page()?;
    let python_lib = root.join("target/bench/python");
    if !python_lib.join("llama_cpp").exists() {
        shell::step(
            &format!("pip install {LLAMA_CPP_PYTHON} (builds llama.cpp; minutes)"),
            || {
                shell::run(
                    shell::cmd("python3")
                        .args([
                            "-m",
                            "pip",
                            "install",
                            "--quiet",
                            "--break-system-packages",
                            "--target",
                        ])
                        .arg(&python_lib)
                        .args([LLAMA_CPP_PYTHON, "numpy"])
                        .current_dir(&root),
                )
            },
        )?;
    }
    shell::step(
        "npm ci in tools/bench (wllama, Playwright; no browser download)",
        || {
            shell::run(
                shell::cmd("npm")
                    .args(["ci", "--no-audit", "--no-fund"])
                    .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
                    .current_dir(root.join("tools/bench")),
            )
        },
    )?;
    shell::step(
        "build candle's benchmark (tools/candle-bench, release)",
        || {
            shell::run(
                shell::cmd("cargo")
                    .args(["build", "--release", "--locked", "--manifest-path"])
                    .arg(root.join("tools/candle-bench/Cargo.toml"))
                    .arg("--target-dir")
                    .arg(root.join("target/candle-bench"))
                    .current_dir(&root),
            )
        },
    )?;
    let base_url = serve_dist_in_background()?;
    shell::run(
        shell::cmd("node")
            .arg("compare.mjs")
            .args(args)
            .env("GLASSBOX_BASE_URL", &base_url)
            .env("GLASSBOX_CLI", root.join("target/release/glassbox"))
            .env("GLASSBOX_PYTHON", "python3")
            .env("GLASSBOX_PYTHONPATH", &python_lib)
            .env(
                "GLASSBOX_CANDLE_BENCH",
                root.join("target/candle-bench/release/candle-bench"),
            )
            .current_dir(root.join("tools/bench")),
    )
}
