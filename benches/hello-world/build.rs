//! Generates the Tauri context (tauri.conf.json, icons, the capability in `capabilities/`).

fn main() {
    if let Err(e) = tauri_build::try_build(tauri_build::Attributes::new()) {
        // Fail the build with the cause, not a panic backtrace.
        eprintln!("tauri-build failed: {e:#}");
        std::process::exit(1);
    }
}
