//! Argument types more than one command takes: durations (`--overlap`, `--for`, `--since`) and
//! how to reach NATS (`relay` and `serve --relay`).

use std::path::PathBuf;

use zeroize::Zeroizing;
use zof_approvals::relay::{self, NatsAuth, NatsConfig};

/// `0`, `30s`, `90m`, `24h`, `7d`.
pub fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(chrono::Duration::zero());
    }
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = number.parse().map_err(|_| format!("`{s}` is not a duration like 24h, 90m or 30s"))?;
    match unit {
        "s" => Ok(chrono::Duration::seconds(n)),
        "m" => Ok(chrono::Duration::minutes(n)),
        "h" => Ok(chrono::Duration::hours(n)),
        "d" => Ok(chrono::Duration::days(n)),
        _ => Err(format!("`{s}` is not a duration like 24h, 90m or 30s")),
    }
}

/// How to reach and authenticate to NATS; shared by `relay` and `serve --relay`.
#[derive(Debug, clap::Args)]
pub struct NatsArgs {
    /// JetStream stream name.
    #[arg(long, value_name = "NAME", default_value = relay::DEFAULT_STREAM)]
    pub stream: String,
    /// A NATS credentials file (JWT and NKey seed).
    #[arg(long, value_name = "FILE", conflicts_with = "nats_user")]
    pub nats_creds: Option<PathBuf>,
    /// NATS user name (with --nats-password-env).
    #[arg(long, value_name = "U", requires = "nats_password_env")]
    pub nats_user: Option<String>,
    /// The environment variable that holds the NATS password.
    #[arg(long, value_name = "VAR", requires = "nats_user")]
    pub nats_password_env: Option<String>,
    /// A CA certificate (PEM) to trust for the NATS server's TLS, besides the system's.
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
}

impl NatsArgs {
    pub fn config(&self, url: &str, name: String) -> anyhow::Result<NatsConfig> {
        let auth = match (&self.nats_creds, &self.nats_user, &self.nats_password_env) {
            (Some(path), _, _) => NatsAuth::CredsFile(path.clone()),
            (None, Some(user), Some(var)) => {
                let password = std::env::var(var)
                    .map_err(|_| anyhow::anyhow!("the environment variable {var} (the NATS password) is not set"))?;
                NatsAuth::UserPassword { user: user.clone(), password: Zeroizing::new(password) }
            }
            _ => NatsAuth::None,
        };
        Ok(NatsConfig { url: url.to_owned(), auth, ca_file: self.nats_ca.clone(), name })
    }
}
