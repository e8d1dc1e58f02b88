//! The hello-world Tauri 2 app that `scripts/measure-desktop.sh` measures the desktop app against:
//! what create-tauri-app's vanilla template gives, one 800×600 window showing a "Welcome to Tauri"
//! page, a `greet` command and the opener plugin, built from the same tauri as `src-tauri/`. It
//! is the floor for the desktop app's launch time and memory: what any Tauri 2 app on WebKitGTK
//! costs before it does anything. Keep it the template's; it is not a place for the app's code.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;

#[tauri::command]
fn greet(name: &str) -> String {
    format!("Hello, {name}! You've been greeted from Rust!")
}

fn main() -> ExitCode {
    let run = tauri::Builder::default()
        .plugin(tauri_plugin_opener::init())
        .invoke_handler(tauri::generate_handler![greet])
        .run(tauri::generate_context!());
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello-tauri: {e}");
            ExitCode::FAILURE
        }
    }
}
