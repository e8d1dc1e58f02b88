//! `notification-recorder [--log FILE]`: a recording `org.freedesktop.Notifications` server on
//! the session bus, for end-to-end tests of the desktop app. Prints `ready` once it owns the
//! name, then one JSON line per call (to FILE with `--log`). Commands on stdin:
//!
//! ```text
//! invoke <id> <action_key>     ActionInvoked(id, action_key)   (a click: "default", or a button)
//! closed <id> <reason>         NotificationClosed(id, reason)
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncBufReadExt;
use zof_testkit::{Call, NotificationRecorder};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out: Box<dyn Write + Send> = match args.iter().position(|a| a == "--log").and_then(|i| args.get(i + 1)) {
        Some(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(std::io::stdout()),
    };
    let out = Arc::new(Mutex::new(out));
    let sink = Arc::new(move |call: &Call| {
        if let (Ok(mut out), Ok(line)) = (out.lock(), serde_json::to_string(call)) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    });
    let address = std::env::var("DBUS_SESSION_BUS_ADDRESS").map_err(|_| "DBUS_SESSION_BUS_ADDRESS is not set")?;
    let recorder = NotificationRecorder::start_with_sink(&address, Some(sink)).await?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["invoke", id, key] => recorder.invoke(id.parse()?, key).await?,
            ["closed", id, reason] => recorder.closed(id.parse()?, reason.parse()?).await?,
            [] => {}
            other => eprintln!("unknown command {other:?}"),
        }
    }
    // Stdin closed: keep serving until killed.
    std::future::pending::<()>().await;
    Ok(())
}
