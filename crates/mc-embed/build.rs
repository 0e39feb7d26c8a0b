//! Finds the files of the bundled model inside the `pocket-encoder` package, so that `src/pocket.rs` can compile
//! them in (`MC_POCKET_ASSETS`) and run them with the crate's own forward pass (`src/bert.rs`).
//!
//! `pocket-encoder` publishes its weights, tokenizer and configuration in `assets/` but exposes only a slower
//! `embed`. Cargo knows where it unpacked the package (registry, vendor directory or git checkout); `cargo metadata`
//! says where, offline, from the lock file.

use std::path::PathBuf;
use std::process::Command;

const PACKAGE: &str = "pocket-encoder";
const FILES: [&str; 4] = ["model.safetensors", "shapes.json", "config.json", "tokenizer.json"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_LOCAL_MODELS").is_none() {
        return;
    }
    match assets() {
        Ok(dir) => println!("cargo:rustc-env=MC_POCKET_ASSETS={}", dir.display()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

fn assets() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").map_err(|_| "CARGO is not set (not run by cargo?)".to_owned())?;
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?).join("Cargo.toml");
    let target = std::env::var("TARGET").map_err(|_| "TARGET is not set (not run by cargo?)".to_owned())?;
    // Offline first: the sources of every package this build needs are already unpacked. But cargo metadata
    // resolves the whole workspace, and a first `cargo build -p one-crate` has not fetched the packages only
    // other members use; then it may fetch them, as the build itself would.
    let mut failure = String::new();
    let mut output = None;
    for offline in [true, false] {
        let mut command = Command::new(&cargo);
        command.args(["metadata", "--format-version", "1", "--locked", "--filter-platform", &target]);
        if offline {
            command.arg("--offline");
        }
        let out = command
            .arg("--manifest-path")
            .arg(&manifest)
            .output()
            .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
        if out.status.success() {
            output = Some(out);
            break;
        }
        failure = String::from_utf8_lossy(&out.stderr).into_owned();
    }
    let output = output.ok_or_else(|| format!("cargo metadata failed: {failure}"))?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
    let packages = metadata["packages"].as_array().ok_or("cargo metadata lists no packages")?;
    let manifest_path = packages
        .iter()
        .find(|p| p["name"] == PACKAGE)
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| format!("{PACKAGE} is not among the resolved packages"))?;
    let dir = PathBuf::from(manifest_path).parent().ok_or("manifest path has no parent")?.join("assets");
    for file in FILES {
        if !dir.join(file).is_file() {
            return Err(format!("{} lacks {file}", dir.display()));
        }
    }
    Ok(dir)
}
