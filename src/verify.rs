//! Signature verification against the raw body: the gate every delivery passes first.
//!
//! Two profiles: Zof's own `X-Zof-Signature: sha256=<hex>` and the Standard Webhooks scheme.
//! Secrets come as a [`SecretSet`]: the current secret plus earlier ones that stay valid until
//! their expiry (rotation overlap). A delivery passes if any unexpired secret verifies it, and
//! the verdict names the matching secret by its [`Fingerprint`], never by its bytes.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD as B64};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use hmac::digest::generic_array::GenericArray;
use hmac::digest::CtOutput;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

pub const ZOF_SIGNATURE_HEADER: &str = "x-zof-signature";
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";

/// At most this many signatures are considered in one header (a sender rotating uses two).
const MAX_SIGNATURES: usize = 8;

/// The key in a `whsec_` secret, with or without `=` padding: the Standard Webhooks reference
/// library and svix accept both, so senders hand out both.
const WHSEC_KEY: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Secret material. Its `Debug` never shows the bytes and its memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Accepts a secret as the user pasted it (surrounding whitespace removed).
    pub fn new(text: &str) -> Result<Secret, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        if text.len() < 16 {
            return Err(SecretError::TooShort);
        }
        if text.len() > 1024 || text.chars().any(char::is_control) {
            return Err(SecretError::Invalid);
        }
        // Refused here rather than used as raw bytes later, which would fail every delivery.
        if let Some(key) = text.strip_prefix("whsec_") {
            if WHSEC_KEY.decode(key).is_err() {
                return Err(SecretError::InvalidBase64);
            }
        }
        Ok(Secret(Zeroizing::new(text.to_owned())))
    }

    /// 32 random bytes from the OS RNG, in Standard Webhooks' printable form (`whsec_` + base64).
    pub fn generate() -> Result<Secret, SecretError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(|_| SecretError::Rng)?;
        Ok(Secret(Zeroizing::new(format!("whsec_{}", B64.encode(bytes.as_ref())))))
    }

    /// The secret text, for the keychain and for signing. Never log or display it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn fingerprint(&self) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(b"zof-approvals secret fingerprint v1\0");
        h.update(self.0.as_bytes());
        Fingerprint(hex::encode(&h.finalize()[..6]))
    }

    /// HMAC key for the Zof profile: the secret's UTF-8 bytes.
    fn zof_key(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// HMAC key for Standard Webhooks: base64 after `whsec_` (checked by [`Secret::new`]); other
    /// secrets are used as bytes.
    fn standard_key(&self) -> Zeroizing<Vec<u8>> {
        match self.0.strip_prefix("whsec_").map(|b| WHSEC_KEY.decode(b)) {
            Some(Ok(key)) => Zeroizing::new(key),
            _ => Zeroizing::new(self.0.as_bytes().to_vec()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret is empty")]
    Empty,
    #[error("the secret is too short (at least 16 characters)")]
    TooShort,
    #[error("the secret contains control characters or is longer than 1024 characters")]
    Invalid,
    /// Not the decoder's message: it would quote a character of the secret.
    #[error("the secret starts with `whsec_` but what follows is not valid base64; copy the whole secret again from Zof Admin Center")]
    InvalidBase64,
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// A short, non-reversible name for a secret (first 12 hex digits of a labelled SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub String);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One secret of the set, with the time after which it no longer verifies (`None`: current).
#[derive(Debug, Clone)]
pub struct ActiveSecret {
    pub secret: Secret,
    pub fingerprint: Fingerprint,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The secrets a delivery may be signed with. Swapped whole, so a delivery sees one consistent set.
#[derive(Debug, Clone, Default)]
pub struct SecretSet {
    secrets: Vec<ActiveSecret>,
}

impl SecretSet {
    pub fn new(entries: impl IntoIterator<Item = (Secret, Option<DateTime<Utc>>)>) -> SecretSet {
        let secrets = entries
            .into_iter()
            .map(|(secret, expires_at)| ActiveSecret { fingerprint: secret.fingerprint(), secret, expires_at })
            .collect();
        SecretSet { secrets }
    }

    pub fn single(secret: Secret) -> SecretSet {
        SecretSet::new([(secret, None)])
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn secrets(&self) -> &[ActiveSecret] {
        &self.secrets
    }

    /// The secret this side signs with: the one without an expiry (the newest rotation).
    pub fn current(&self) -> Option<&ActiveSecret> {
        self.secrets.iter().find(|s| s.expires_at.is_none()).or_else(|| self.secrets.first())
    }

    fn unexpired(&self, now: DateTime<Utc>) -> impl Iterator<Item = &ActiveSecret> {
        self.secrets.iter().filter(move |s| s.expires_at.is_none_or(|t| now < t))
    }

    fn expired(&self, now: DateTime<Utc>) -> impl Iterator<Item = &ActiveSecret> {
        self.secrets.iter().filter(move |s| s.expires_at.is_some_and(|t| now >= t))
    }
}

/// Which signature scheme the receiver expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    #[default]
    Zof,
    StandardWebhooks,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Scheme> {
        match s {
            "zof" => Some(Scheme::Zof),
            "standard_webhooks" | "standard-webhooks" => Some(Scheme::StandardWebhooks),
            _ => None,
        }
    }
}

/// Why a delivery did not verify. Each has a plain sentence for the sender and the activity view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no webhook secret is configured")]
    NoSecret,
    #[error("the signature header `{0}` is missing")]
    MissingHeader(&'static str),
    #[error("the signature header `{0}` is empty")]
    EmptyHeader(&'static str),
    #[error("the signature header `{0}` is malformed")]
    MalformedHeader(&'static str),
    #[error("the signature did not match any active secret (wrong secret, or the body changed after signing)")]
    NoMatch,
    #[error("the signature matches a secret that expired at {0}; sign with the current secret")]
    ExpiredSecret(DateTime<Utc>),
    #[error("the webhook timestamp is outside the allowed tolerance of {0} seconds")]
    TimestampOutOfTolerance(i64),
}

impl VerifyError {
    /// A stable code for the activity view and the UI.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::NoSecret => "no_secret",
            VerifyError::MissingHeader(_) => "missing_signature",
            VerifyError::EmptyHeader(_) => "empty_signature",
            VerifyError::MalformedHeader(_) => "malformed_signature",
            VerifyError::NoMatch => "signature_mismatch",
            VerifyError::ExpiredSecret(_) => "expired_secret",
            VerifyError::TimestampOutOfTolerance(_) => "timestamp_out_of_tolerance",
        }
    }
}

/// The headers a verifier reads; a closure keeps this module free of any HTTP crate.
pub trait HeaderSource: Sync {
    fn header(&self, name: &str) -> Option<&[u8]>;
}

/// Header name/value pairs, matched case-insensitively (tests, the CLI, examples).
impl<K: AsRef<str> + Sync, V: AsRef<[u8]> + Sync, const N: usize> HeaderSource for [(K, V); N] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref())
    }
}

/// Verifies deliveries for one scheme.
#[derive(Debug, Clone, Copy)]
pub struct Verifier {
    pub scheme: Scheme,
    /// Standard Webhooks: how far `webhook-timestamp` may be from now.
    pub tolerance: Duration,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier { scheme: Scheme::Zof, tolerance: Duration::seconds(300) }
    }
}

impl Verifier {
    /// Checks the signature over the raw body; returns the fingerprint of the secret that matched.
    pub fn verify(
        &self,
        secrets: &SecretSet,
        headers: &dyn HeaderSource,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Fingerprint, VerifyError> {
        if secrets.is_empty() {
            return Err(VerifyError::NoSecret);
        }
        match self.scheme {
            Scheme::Zof => {
                let value = required_header(headers, ZOF_SIGNATURE_HEADER, "X-Zof-Signature")?;
                let signatures = parse_zof_signatures(value).ok_or(VerifyError::MalformedHeader("X-Zof-Signature"))?;
                match_any(secrets, now, &signatures, |s| mac(s.zof_key(), &[body]).finalize())
            }
            Scheme::StandardWebhooks => {
                let id = required_header(headers, WEBHOOK_ID_HEADER, "webhook-id")?;
                let ts = required_header(headers, WEBHOOK_TIMESTAMP_HEADER, "webhook-timestamp")?;
                let sigs = required_header(headers, WEBHOOK_SIGNATURE_HEADER, "webhook-signature")?;
                let ts_secs = std::str::from_utf8(ts)
                    .ok()
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .ok_or(VerifyError::MalformedHeader("webhook-timestamp"))?;
                // abs_diff: a timestamp near i64::MIN or i64::MAX must not overflow the subtraction.
                let tolerance = u64::try_from(self.tolerance.num_seconds()).unwrap_or(0);
                if now.timestamp().abs_diff(ts_secs) > tolerance {
                    return Err(VerifyError::TimestampOutOfTolerance(self.tolerance.num_seconds()));
                }
                let signatures =
                    parse_standard_signatures(sigs).ok_or(VerifyError::MalformedHeader("webhook-signature"))?;
                let ts_text = ts_secs.to_string();
                match_any(secrets, now, &signatures, |s| {
                    mac(&s.standard_key(), &[id, b".", ts_text.as_bytes(), b".", body]).finalize()
                })
            }
        }
    }
}

fn required_header<'a>(
    headers: &'a dyn HeaderSource,
    name: &str,
    display: &'static str,
) -> Result<&'a [u8], VerifyError> {
    let value = headers.header(name).ok_or(VerifyError::MissingHeader(display))?;
    if value.iter().all(u8::is_ascii_whitespace) {
        return Err(VerifyError::EmptyHeader(display));
    }
    Ok(value)
}

/// The tag over the signed content under one secret. Equality is constant time ([`CtOutput`]).
type Tag = CtOutput<HmacSha256>;

/// The secret that signed one of `signatures`. Each secret's tag is computed once, however many
/// signatures the header lists: a tag costs a pass over the body (up to `max_body_bytes`), a
/// comparison costs 32 bytes.
fn match_any(
    secrets: &SecretSet,
    now: DateTime<Utc>,
    signatures: &[Vec<u8>],
    tag_of: impl Fn(&Secret) -> Tag,
) -> Result<Fingerprint, VerifyError> {
    let verifies = |s: &Secret| {
        let tag = tag_of(s);
        signatures.iter().any(|sig| same_tag(&tag, sig))
    };
    if let Some(hit) = secrets.unexpired(now).find(|s| verifies(&s.secret)) {
        return Ok(hit.fingerprint.clone());
    }
    // Only to explain the refusal: a secret past its overlap never lets a delivery through.
    match secrets.expired(now).find(|s| verifies(&s.secret)) {
        Some(s) => Err(VerifyError::ExpiredSecret(s.expires_at.unwrap_or(now))),
        None => Err(VerifyError::NoMatch),
    }
}

/// Compares every byte whatever the first difference (no early exit an attacker could time); a
/// candidate of another length never matches.
fn same_tag(tag: &Tag, candidate: &[u8]) -> bool {
    GenericArray::from_exact_iter(candidate.iter().copied()).is_some_and(|bytes| Tag::new(bytes) == *tag)
}

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut m =
        <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for p in parts {
        m.update(p);
    }
    m
}

/// Parses `sha256=<hex>[, sha256=<hex>]...` (comma or whitespace separated). Entries with another
/// algorithm are skipped; `None` when no usable signature is present.
pub fn parse_zof_signatures(value: &[u8]) -> Option<Vec<Vec<u8>>> {
    let text = std::str::from_utf8(value).ok()?;
    let sigs: Vec<Vec<u8>> = text
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
        .filter_map(|t| t.strip_prefix("sha256="))
        .filter_map(|h| if h.len() == 64 { hex::decode(h).ok() } else { None })
        .take(MAX_SIGNATURES)
        .collect();
    (!sigs.is_empty()).then_some(sigs)
}

/// Parses Standard Webhooks' `v1,<base64> v1,<base64>`; other versions are skipped.
pub fn parse_standard_signatures(value: &[u8]) -> Option<Vec<Vec<u8>>> {
    let text = std::str::from_utf8(value).ok()?;
    let sigs: Vec<Vec<u8>> = text
        .split_ascii_whitespace()
        .filter_map(|t| t.strip_prefix("v1,"))
        .filter_map(|b| B64.decode(b).ok())
        .filter(|s| s.len() == 32)
        .take(MAX_SIGNATURES)
        .collect();
    (!sigs.is_empty()).then_some(sigs)
}

/// The `X-Zof-Signature` value for a body.
pub fn sign_zof(secret: &Secret, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret.zof_key(), &[body]).finalize().into_bytes()))
}

/// The signature headers of `scheme` for `body` (message id `id`, signed at `at`): what a
/// delivery carries, and what a team action carries, so one verifier reads both.
pub fn signature_headers(
    scheme: Scheme,
    secret: &Secret,
    id: &str,
    at: DateTime<Utc>,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    match scheme {
        Scheme::Zof => vec![(ZOF_SIGNATURE_HEADER, sign_zof(secret, body))],
        Scheme::StandardWebhooks => vec![
            (WEBHOOK_ID_HEADER, id.to_owned()),
            (WEBHOOK_TIMESTAMP_HEADER, at.timestamp().to_string()),
            (WEBHOOK_SIGNATURE_HEADER, sign_standard(secret, id, at.timestamp(), body)),
        ],
    }
}

/// The `webhook-signature` value for a Standard Webhooks delivery.
pub fn sign_standard(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let tag = mac(&secret.standard_key(), &[id.as_bytes(), b".", ts.as_bytes(), b".", body]).finalize();
    format!("v1,{}", B64.encode(tag.into_bytes()))
}

#[cfg(test)]
mod tests;
