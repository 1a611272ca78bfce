//! Glassbox's task runner: `cargo xtask <command>`.
//!
//! The README's two commands live here, so that a fresh clone needs nothing but Rust:
//! - `cargo xtask serve`: installs what the page needs, builds it, serves it at 127.0.0.1:8080;
//! - `cargo xtask test`: installs what the tests need and runs every test.
//!
//! No dependencies on purpose: this crate is compiled before anything else is installed.

mod compare;
mod server;
mod setup;
mod shell;
mod test;
mod threads;
mod train;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  serve [--port P] [--no-build] [--isolate] [--test-hooks]
                 set up, build the page (release) and serve it at http://127.0.0.1:P (8080)
  test           set up and run every test (fmt, clippy, native, wasm in Chromium, e2e)
  bench-page [--no-build] [--tiers cpu,cpu1,webgpu] [--tokens N] [--runs R]
                 benchmark the page in headless Chromium: cold and warm load, first token,
                 decode tokens/s per compute tier (prints numbers, asserts nothing)
  bench-compare [--runs R] [--webgpu-runs R] [--models smollm2,gemma3] [--skip PART,MODEL:PART]
                 Glassbox against llama.cpp, candle and wllama (natively and in Chromium) on the
                 same prompt ids, per model; installs what it needs, prints a table per model,
                 writes docs/benchmarks.md (parts: native, llamacpp, candle, browser, wllama, webgpu)
  train-vision [trainer options]
                 retrain the MNIST ViT and ViR (trainer/), export them to www/models/ and
                 record their test accuracy in www/models/vision.json (about 30 minutes)
  setup [serve|test]
                 only install what serve (or test, the default) needs; idempotent
  build          only build the page into dist/ (release)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("test") => test::run_all(),
        Some("bench-page") => bench_page(&args[1..]),
        Some("bench-compare") => compare::run(&args[1..]),
        Some("train-vision") => train::run(&args[1..]),
        Some("setup") => match args.get(1).map(String::as_str) {
            Some("serve") => setup::run(setup::Purpose::Serve),
            None | Some("test") => setup::run(setup::Purpose::Test),
            Some(other) => Err(format!("unknown setup purpose {other:?}\n{USAGE}")),
        },
        Some("build") => setup::run(setup::Purpose::Serve).and_then(|()| build_page()),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown or missing command\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\nxtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the page with Trunk into `dist/`, using only the tools setup installed, then the
/// engine worker's threaded build beside it.
pub fn build_page() -> Result<(), String> {
    shell::step("build the page (trunk build --release --offline)", || {
        shell::run(
            shell::cmd("trunk")
                .args(["build", "--release", "--offline"])
                .current_dir(shell::root()),
        )
    })?;
    threads::build_worker()
}

/// Serves `dist/` on a free port for as long as xtask runs; returns its base URL.
pub fn serve_dist_in_background() -> Result<String, String> {
    let server = server::Server::bind(
        ("127.0.0.1", 0),
        shell::root().join("dist"),
        server::Options::default(),
    )
    .map_err(|e| format!("cannot start the server: {e}"))?;
    let base_url = format!("http://127.0.0.1:{}", server.port());
    std::thread::spawn(move || server.run_forever());
    Ok(base_url)
}

/// Serves `dist/` on a free port and runs `tests/e2e/bench-page.mjs` against it; the options
/// other than `--no-build` go to the script.
fn bench_page(args: &[String]) -> Result<(), String> {
    setup::run(setup::Purpose::Test)?;
    if !args.iter().any(|a| a == "--no-build") {
        build_page()?;
    }
    let script_args: Vec<&String> = args.iter().filter(|a| *a != "--no-build").collect();
    let base_url = serve_dist_in_background()?;
    shell::run(
        shell::cmd("node")
            .arg("bench-page.mjs")
            .args(script_args)
            .env("GLASSBOX_BASE_URL", &base_url)
            .current_dir(shell::root().join("tests/e2e")),
    )
}

fn serve(args: &[String]) -> Result<(), String> {
    let mut port = 8080u16;
    let mut build = true;
    let mut options = server::Options::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--port" => {
                port = rest
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("--port needs a number")?
            }
            "--no-build" => build = false,
            "--isolate" => options.cross_origin_isolation = true,
            // For running the e2e tests by hand against a served build.
            "--test-hooks" => options.test_hooks = true,
            other => return Err(format!("unknown serve option {other:?}\n{USAGE}")),
        }
    }
    if build {
        setup::run(setup::Purpose::Serve)?;
        build_page()?;
    }
    let dist = shell::root().join("dist");
    if !dist.join("index.html").exists() {
        return Err(
            "dist/index.html is missing: run `cargo xtask serve` without --no-build".into(),
        );
    }
    let server = server::Server::bind(("127.0.0.1", port), dist, options)
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    println!("Glassbox is served at http://127.0.0.1:{port}/ (Ctrl-C stops)");
    server.run_forever();
    Ok(())
}
