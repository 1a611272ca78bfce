//! `cargo xtask test`: every test the project has, failing on the first that fails.

use crate::server::{Options, Server};
use crate::setup::{self, Purpose};
use crate::shell::{self, cmd, root, step};
use std::time::Instant;

pub fn run_all() -> Result<(), String> {
    let started = Instant::now();
    setup::run(Purpose::Test)?;
    step("cargo fmt --check", || {
        shell::run(
            cmd("cargo")
                .args(["fmt", "--all", "--check"])
                .current_dir(root()),
        )
    })?;
    step("clippy, native", || {
        shell::run(
            cmd("cargo")
                .args(["clippy", "--workspace", "--all-targets", "--release", "--"])
                .args(["-D", "warnings"])
                .current_dir(root()),
        )
    })?;
    step("clippy, wasm32", || {
        shell::run(
            cmd("cargo")
                .args(["clippy", "--target", "wasm32-unknown-unknown", "--release"])
                .args([
                    "-p",
                    "glassbox-engine",
                    "-p",
                    "glassbox-app",
                    "--all-targets",
                ])
                .args(["--", "-D", "warnings"])
                .current_dir(root()),
        )
    })?;
    // Release: the model-level tests run the 135M model many times; debug code is ~20x slower.
    step(
        "native tests (cargo test --workspace; wgpu on lavapipe)",
        || {
            shell::run(
                cmd("cargo")
                    .args(["test", "--workspace", "--release"])
                    .current_dir(root()),
            )
        },
    )?;
    step(
        "wasm tests in headless Chromium (WebGPU on SwiftShader)",
        wasm_tests,
    )?;
    crate::build_page()?;
    let base_url = test_server()?;
    step("end-to-end tests (Playwright, headless Chromium)", || {
        e2e_tests(&base_url)
    })?;
    step("smoke tests in Firefox and WebKit (WebDriver)", || {
        smoke_tests(&base_url)
    })?;
    println!(
        "\nall tests passed in {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// wasm-bindgen-test through chromedriver; `engine/webdriver.json` holds the Chromium flags.
fn wasm_tests() -> Result<(), String> {
    shell::run(
        cmd("cargo")
            .args(["test", "--release", "--target", "wasm32-unknown-unknown"])
            .args(["-p", "glassbox-engine"])
            .env(
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
                "wasm-bindgen-test-runner",
            )
            .env("CHROMEDRIVER", "/usr/bin/chromedriver")
            .env("WASM_BINDGEN_TEST_TIMEOUT", "900")
            .current_dir(root()),
    )
}

/// The release build in `dist/`, served by our own server with test hooks for as long as xtask
/// runs; its base URL. It sends COOP/COEP, as a host that can set headers would (the page runs
/// its threaded build at once); under its test subpath it sends none, and the page's service
/// worker isolates it (`threads.spec.js`).
fn test_server() -> Result<String, String> {
    let server = Server::bind(
        ("127.0.0.1", 0),
        root().join("dist"),
        Options {
            test_hooks: true,
            cross_origin_isolation: true,
        },
    )
    .map_err(|e| format!("cannot start the test server: {e}"))?;
    let base_url = format!("http://127.0.0.1:{}", server.port());
    std::thread::spawn(move || server.run_forever());
    Ok(base_url)
}

/// Playwright against the test server.
fn e2e_tests(base_url: &str) -> Result<(), String> {
    shell::run(
        cmd("npx")
            .args(["playwright", "test"])
            .env("GLASSBOX_BASE_URL", base_url)
            .current_dir(root().join("tests/e2e")),
    )
}

/// One smoke test per other engine (load, answer, reload from the cache) over WebDriver:
/// Firefox ESR through geckodriver (headless), WebKitGTK's MiniBrowser through WebKitWebDriver
/// (under Xvfb: it needs a display).
fn smoke_tests(base_url: &str) -> Result<(), String> {
    shell::run(
        cmd("xvfb-run")
            .args(["-a", "node", "webdriver-smoke.mjs", "firefox", "webkit"])
            .env("GLASSBOX_BASE_URL", base_url)
            .current_dir(root().join("tests/e2e")),
    )
}
