//! The page's threaded engine worker (`dist/worker_mt*.js`, `worker_mt_bg.wasm`).
//!
//! Trunk builds the one-thread worker. wasm threads need the standard library built with atomics
//! (the one rustup ships is not), so this build uses a pinned nightly's `-Z build-std`, its own
//! target directory (other flags: it must not evict the stable build's artifacts) and the
//! wasm-bindgen CLI that setup installed.

use crate::shell::{cmd, output, root, run, step};

/// The nightly whose `-Z build-std` builds the threaded worker (setup installs it with rust-src).
pub const NIGHTLY: &str = "nightly-2026-05-19";

/// Atomics for every crate (the standard library too, through `-Z build-std`), and a 4 GiB
/// maximum memory (the default would be 1 GiB: too little for a 270M model's weights next to
/// its activations).
const RUSTFLAGS: &str = "-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 \
                         -C link-arg=--max-memory=4294967296";

/// For the final link only (`cargo rustc`'s own arguments, so the dependencies' artifacts
/// stay valid): one memory, imported and shared by every thread's instance, and the
/// thread-local storage symbols wasm-bindgen's thread set-up calls. rustc does not add these
/// for wasm32-unknown-unknown by itself.
const LINK_ARGS: [&str; 6] = [
    "--shared-memory",
    "--import-memory",
    "--export=__wasm_init_tls",
    "--export=__tls_size",
    "--export=__tls_align",
    "--export=__tls_base",
];

/// Installs [`NIGHTLY`] with rust-src, unless it is there (a few minutes' download, once).
pub fn install_nightly() -> Result<(), String> {
    let sources =
        output(cmd("rustup").args(["component", "list", "--installed", "--toolchain", NIGHTLY]))
            .unwrap_or_default();
    if sources.lines().any(|l| l.starts_with("rust-src")) {
        println!("{NIGHTLY} with rust-src already installed");
        return Ok(());
    }
    run(cmd("rustup").args([
        "toolchain",
        "install",
        NIGHTLY,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
    .map_err(|e| {
        format!("{e}\nfix: check network access to static.rust-lang.org, then run this again")
    })
}

/// Builds the engine worker with wasm atomics into `dist/` (after Trunk, which empties it).
pub fn build_worker() -> Result<(), String> {
    step(
        "build the threaded engine worker (nightly -Z build-std, atomics)",
        || {
            let target_dir = root().join("target/wasm-threads");
            let mut cargo = cmd("cargo");
            cargo
                .arg(format!("+{NIGHTLY}"))
                .args(["rustc", "--release", "--target", "wasm32-unknown-unknown"])
                .args([
                    "-Z",
                    "build-std=std,panic_abort",
                    "-p",
                    "glassbox-app",
                    "--bin",
                    "worker",
                ])
                .arg("--target-dir")
                .arg(&target_dir)
                .arg("--")
                .args(
                    LINK_ARGS
                        .iter()
                        .flat_map(|arg| ["-C".to_string(), format!("link-arg={arg}")]),
                )
                .env("RUSTFLAGS", RUSTFLAGS)
                // Set by the `cargo xtask` that runs us, for the stable toolchain.
                .env_remove("RUSTUP_TOOLCHAIN")
                .env_remove("RUSTC")
                .env_remove("CARGO")
                .current_dir(root());
            run(&mut cargo)?;
            run(cmd("wasm-bindgen")
                .args([
                    "--target",
                    "no-modules",
                    "--no-typescript",
                    "--out-name",
                    "worker_mt",
                ])
                .arg("--out-dir")
                .arg(root().join("dist"))
                .arg(target_dir.join("wasm32-unknown-unknown/release/worker.wasm")))
        },
    )
}
