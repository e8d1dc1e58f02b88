//! Generates the Tauri context (config, icons, ACL). The app's own commands are declared here so
//! the capability in `capabilities/` can allow exactly them; a command missing from this list is
//! not reachable from the webview.

const COMMANDS: &[&str] = &[
    "get_overview",
    "get_queue",
    "get_plan",
    "get_review",
    "decide_plan",
    "list_activity",
    "list_audit",
    "mark_handled",
    "snooze_plan",
    "open_in_console",
    "get_settings",
    "save_settings",
    "get_secrets",
    "set_secret",
    "generate_secret",
    "revoke_previous_secret",
    "mute_notifications",
    "copy_webhook_url",
    "get_about",
    "open_logs_folder",
    "copy_diagnostics",
    "check_with_console",
    "get_console_status",
    "set_console_token",
    "subscribe_console",
    "get_relay_status",
    "set_relay_password",
];

/// The tray's icons, decoded here to RGBA, so the app links no image decoder: each becomes
/// `$OUT_DIR/<name>.rgba`, and `$OUT_DIR/tray_icons.rs` names them as `tauri::image::Image`
/// constants (`TRAY_IDLE`, …) that `src/tray.rs` includes.
const TRAY_ICONS: &[&str] = &["tray-idle", "tray-pending", "tray-overdue", "tray-error"];

fn main() {
    if let Err(e) = decode_tray_icons() {
        eprintln!("decoding the tray icons failed: {e}");
        std::process::exit(1);
    }
    let attributes = tauri_build::Attributes::new().app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    if let Err(e) = tauri_build::try_build(attributes) {
        // Fail the build with the cause, not a panic backtrace.
        eprintln!("tauri-build failed: {e:#}");
        std::process::exit(1);
    }
}

fn decode_tray_icons() -> Result<(), String> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let mut constants = String::new();
    for name in TRAY_ICONS {
        let path = format!("../icons/{name}.png");
        println!("cargo:rerun-if-changed={path}");
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        // Palette and low bit depths become 8-bit channels; 16-bit ones become 8-bit.
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().map_err(|e| format!("{path}: {e}"))?;
        let mut pixels = vec![0; reader.output_buffer_size().ok_or_else(|| format!("{path}: too large"))?];
        let frame = reader.next_frame(&mut pixels).map_err(|e| format!("{path}: {e}"))?;
        pixels.truncate(frame.buffer_size());
        let rgba: Vec<u8> = match frame.color_type {
            png::ColorType::Rgba => pixels,
            png::ColorType::Rgb => pixels.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
            png::ColorType::GrayscaleAlpha => pixels.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
            png::ColorType::Grayscale => pixels.iter().flat_map(|&g| [g, g, g, 255]).collect(),
            png::ColorType::Indexed => return Err(format!("{path}: palette left after expansion")),
        };
        std::fs::write(out.join(format!("{name}.rgba")), rgba).map_err(|e| format!("{name}.rgba: {e}"))?;
        constants.push_str(&format!(
            "const {}: Image<'static> = Image::new(include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}.rgba\")), {}, {});\n",
            name.to_uppercase().replace('-', "_"),
            frame.width,
            frame.height,
        ));
    }
    std::fs::write(out.join("tray_icons.rs"), constants).map_err(|e| format!("tray_icons.rs: {e}"))
}
