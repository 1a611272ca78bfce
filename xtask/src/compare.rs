//! `cargo xtask bench-compare`: builds and installs what the side-by-side benchmark needs, then
//! runs `tools/bench/compare.mjs` (its options passed on: `--runs`, `--webgpu-runs`, `--models`,
//! `--skip`), which prints a table per model and writes `docs/benchmarks.md`.
//!
//! What it installs stays under `target/bench/` (llama-cpp-python, built from source by pip the
//! first time with fixed CPU flags: slow, then reused until those flags change) and `tools/bench/node_modules` (wllama, Playwright); candle's
//! benchmark is its own workspace in `tools/candle-bench`, built into `target/candle-bench`.
//! None of it is part of the test command.

use crate::{build_page, serve_dist_in_background, setup, shell};

const LLAMA_CPP_PYTHON: &str = "llama-cpp-python==0.3.36";
/// llama.cpp's CPU code built for a fixed set of x86 extensions instead of `-march=native`,
/// and without AMX: on these machines its AMX path dies with SIGILL (`tilezero`). AVX-VNNI (the
/// VEX form) is off too: AMD's Zen 4 has AVX512-VNNI but not AVX-VNNI, and with `-mavxvnni` GCC
/// encodes the quantized dot products as `{vex} vpdpbusd`, another SIGILL there.
const LLAMA_CPP_CMAKE_ARGS: &str = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
    -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=ON \
    -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON";
/// What those flags let the compiler use, as `/proc/cpuinfo` names it.
const LLAMA_CPP_CPU_FLAGS: [&str; 13] = [
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi2",
    "avx512f",
    "avx512cd",
    "avx512vl",
    "avx512dq",
    "avx512bw",
    "avx512vbmi",
    "avx512_vnni",
    "avx512_bf16",
];
/// Records what `target/bench/python` was built from; an install without it, or built with other
/// flags (the first ones used `-march=native`), is rebuilt.
const BUILD_MARKER: &str = ".glassbox-llama-cpp-build";

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
    cpu_has_llama_cpp_flags()?;
    let python_lib = root.join("target/bench/python");
    let marker = python_lib.join(BUILD_MARKER);
    let wanted = format!("{LLAMA_CPP_PYTHON}\nCMAKE_ARGS={LLAMA_CPP_CMAKE_ARGS}\n");
    let built = std::fs::read_to_string(&marker).ok();
    if !python_lib.join("llama_cpp").exists() || built.as_deref() != Some(wanted.as_str()) {
        shell::step(
            &format!("pip install {LLAMA_CPP_PYTHON} (builds llama.cpp without AMX; ≈ 10 min)"),
            || {
                if python_lib.exists() {
                    println!("target/bench/python was built otherwise: building it again");
                    std::fs::remove_dir_all(&python_lib)
                        .map_err(|e| format!("cannot remove {}: {e}", python_lib.display()))?;
                }
                // No pip cache: a wheel cached from another build would come back with its flags.
                shell::run(
                    shell::cmd("python3")
                        .args([
                            "-m",
                            "pip",
                            "install",
                            "--quiet",
                            "--no-cache-dir",
                            "--break-system-packages",
                            "--target",
                        ])
                        .arg(&python_lib)
                        .args([LLAMA_CPP_PYTHON, "numpy"])
                        .env("CMAKE_ARGS", LLAMA_CPP_CMAKE_ARGS)
                        .env("FORCE_CMAKE", "1")
                        .current_dir(&root),
                )
                .map_err(|e| {
                    format!(
                        "{e}\nfix: llama-cpp-python compiles llama.cpp: it needs gcc, g++ and PyPI \
                         (for cmake and ninja); the flags are LLAMA_CPP_CMAKE_ARGS in xtask/src/compare.rs"
                    )
                })?;
                std::fs::write(&marker, &wanted).map_err(|e| e.to_string())
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

/// llama.cpp built with `LLAMA_CPP_CMAKE_ARGS` dies with SIGILL on a CPU without one of them:
/// say so before building or running it. (No `/proc/cpuinfo`: nothing to check against.)
fn cpu_has_llama_cpp_flags() -> Result<(), String> {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return Ok(());
    };
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|line| line.starts_with("flags"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, flags)| flags.split_whitespace().collect())
        .unwrap_or_default();
    let missing: Vec<&str> = LLAMA_CPP_CPU_FLAGS
        .into_iter()
        .filter(|flag| !flags.contains(flag))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "this CPU lacks {}: llama.cpp built with LLAMA_CPP_CMAKE_ARGS would die with SIGILL\n\
         fix: turn the matching -DGGML_… options off in LLAMA_CPP_CMAKE_ARGS (xtask/src/compare.rs) \
         and LLAMA_CPP_CPU_FLAGS with them; bench-compare then rebuilds llama-cpp-python",
        missing.join(" ")
    ))
}
