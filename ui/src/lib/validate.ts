/** Client-side validation of the Settings form and the secret inputs. */
import type { RelaySettings, Scheme, Settings } from './api';
import { isHttpUrl, unknownPlaceholders } from './console-url';

/** The Settings form as edited: text fields stay strings until validated. */
export interface SettingsForm {
  listen: string;
  scheme: Scheme;
  allow_orgs: string;
  console_url_template: string;
  quiet_start: string;
  quiet_end: string;
  escalation_minutes: string;
  coalesce_threshold: string;
  coalesce_window_secs: string;
  show_panel_on_arrival: boolean;
  start_at_login: boolean;
  display_name: string;
}

export type SettingsField = keyof SettingsForm;
export type FieldErrors = Partial<Record<SettingsField, string>>;

export type ValidationResult =
  | { ok: true; settings: Settings }
  | { ok: false; errors: FieldErrors };

export function formFromSettings(s: Settings): SettingsForm {
  return {
    listen: s.listen,
    scheme: s.scheme,
    allow_orgs: s.allow_orgs.join('\n'),
    console_url_template: s.console_url_template,
    quiet_start: s.quiet_hours?.start ?? '',
    quiet_end: s.quiet_hours?.end ?? '',
    escalation_minutes: String(s.escalation_minutes),
    coalesce_threshold: String(s.coalesce_threshold),
    coalesce_window_secs: String(s.coalesce_window_secs),
    show_panel_on_arrival: s.show_panel_on_arrival,
    start_at_login: s.start_at_login,
    display_name: s.display_name ?? '',
  };
}

const LISTEN_EXAMPLE = 'for example 127.0.0.1:8787';
const HOSTNAME =
  /^(?=.{1,253}$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

function portError(port: string): string | null {
  if (port === '') return `Add a port after the colon, ${LISTEN_EXAMPLE}.`;
  if (!/^\d+$/.test(port)) return 'The port must be a number.';
  const n = Number(port);
  if (n < 1 || n > 65535) return 'The port must be between 1 and 65535.';
  return null;
}

function ipv4Error(host: string): string | null {
  const parts = host.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    return `"${host}" is not a valid IPv4 address.`;
  }
  return null;
}

/** Validate a listen address `host:port`; returns an error message or null. */
export function validateListen(value: string): string | null {
  const v = value.trim();
  if (v === '') return `Enter the listen address as host:port, ${LISTEN_EXAMPLE}.`;
  if (/\s/.test(v)) return 'The listen address cannot contain spaces.';
  if (v.startsWith('[')) {
    const m = /^\[([0-9a-fA-F:.]+)\](?::(.*))?$/.exec(v);
    if (!m || !m[1].includes(':')) return 'Write IPv6 addresses as [address]:port, for example [::1]:8787.';
    if (m[2] === undefined) return `Add a port, ${LISTEN_EXAMPLE}.`;
    return portError(m[2]);
  }
  const colon = v.lastIndexOf(':');
  if (colon === -1) return `Add a port, ${LISTEN_EXAMPLE}.`;
  const host = v.slice(0, colon);
  const port = v.slice(colon + 1);
  if (host === '') return `Add a host before the port, ${LISTEN_EXAMPLE}.`;
  if (host.includes(':')) return 'Write IPv6 addresses in brackets, for example [::1]:8787.';
  if (/^[\d.]+$/.test(host)) {
    const err = ipv4Error(host);
    if (err) return err;
  } else if (!HOSTNAME.test(host)) {
    return `"${host}" is not a valid host name or IP address.`;
  }
  return portError(port);
}

/** Normalise `H:MM`/`HH:MM` to `HH:MM`, or null when it is not a valid time of day. */
export function normalizeHHMM(value: string): string | null {
  const m = /^(\d{1,2}):(\d{2})$/.exec(value.trim());
  if (!m) return null;
  const h = Number(m[1]);
  const min = Number(m[2]);
  if (h > 23 || min > 59) return null;
  return `${String(h).padStart(2, '0')}:${m[2]}`;
}

const HHMM_ERROR = 'Use 24-hour HH:MM, for example 22:00.';

/** Parse a whole number greater than zero, or null. */
export function parsePositiveInt(value: string): number | null {
  const v = value.trim();
  if (!/^\d+$/.test(v)) return null;
  const n = Number(v);
  return n > 0 && Number.isSafeInteger(n) ? n : null;
}

/** Overlap hours for secret rotation: a whole number, 0 to 8760 (one year). */
export function validateOverlapHours(value: string | number): string | null {
  const v = String(value).trim();
  if (!/^\d+$/.test(v) || Number(v) > 8760) return 'Enter a whole number of hours from 0 to 8760.';
  return null;
}

/** One organization ID per line; blank lines ignored, duplicates dropped. */
export function parseOrgList(text: string): string[] {
  const seen = new Set<string>();
  for (const line of text.split(/\r?\n/)) {
    const id = line.trim();
    if (id !== '') seen.add(id);
  }
  return [...seen];
}

function orgListError(text: string): string | null {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    if (/\s/.test(lines[i].trim())) {
      return `Line ${i + 1}: put one organization ID per line (IDs contain no spaces).`;
    }
  }
  return null;
}

function consoleTemplateError(template: string): string | null {
  const t = template.trim();
  if (t === '') return null;
  const unknown = unknownPlaceholders(t);
  if (unknown.length > 0) {
    return `Unknown placeholder ${unknown.join(', ')}. Use {plan_id}, {run_id} or {organization_id}.`;
  }
  const sample = t.replace(/\{(plan_id|run_id|organization_id)\}/g, 'x');
  if (!isHttpUrl(sample)) return 'Enter an https:// (or http://) URL, for example https://…/plans/{plan_id}.';
  return null;
}

/** Validate the whole form; on success returns the Settings to send to Rust. */
export function validateSettingsForm(form: SettingsForm): ValidationResult {
  const errors: FieldErrors = {};

  const listenErr = validateListen(form.listen);
  if (listenErr) errors.listen = listenErr;

  if (form.scheme !== 'zof' && form.scheme !== 'standard_webhooks') {
    errors.scheme = 'Choose a signature scheme.';
  }

  const orgErr = orgListError(form.allow_orgs);
  if (orgErr) errors.allow_orgs = orgErr;

  const tmplErr = consoleTemplateError(form.console_url_template);
  if (tmplErr) errors.console_url_template = tmplErr;

  const qs = form.quiet_start.trim();
  const qe = form.quiet_end.trim();
  let quiet: Settings['quiet_hours'] = null;
  if (qs !== '' || qe !== '') {
    const start = qs === '' ? null : normalizeHHMM(qs);
    const end = qe === '' ? null : normalizeHHMM(qe);
    if (qs === '') errors.quiet_start = 'Set a start time too, or clear both to turn quiet hours off.';
    else if (start === null) errors.quiet_start = HHMM_ERROR;
    if (qe === '') errors.quiet_end = 'Set an end time too, or clear both to turn quiet hours off.';
    else if (end === null) errors.quiet_end = HHMM_ERROR;
    if (start !== null && end !== null) {
      if (start === end) errors.quiet_end = 'Quiet hours must end at a different time than they start.';
      else quiet = { start, end };
    }
  }

  const escalation = parsePositiveInt(form.escalation_minutes);
  if (escalation === null) errors.escalation_minutes = 'Enter a whole number of minutes greater than 0.';

  const coalesce = parsePositiveInt(form.coalesce_threshold);
  if (coalesce === null) errors.coalesce_threshold = 'Enter a whole number greater than 0.';

  const burst = parsePositiveInt(form.coalesce_window_secs);
  if (burst === null || burst > 3600) errors.coalesce_window_secs = 'Enter a whole number of seconds from 1 to 3600.';

  const name = form.display_name.trim();
  // As the core checks it: at most 128 bytes of UTF-8, no control characters.
  if (new TextEncoder().encode(name).length > 128 || /[\u0000-\u001f\u007f-\u009f]/.test(name)) {
    errors.display_name = 'Use at most 128 characters (fewer with accents or other scripts), on one line.';
  }

  if (Object.keys(errors).length > 0) return { ok: false, errors };

  return {
    ok: true,
    settings: {
      listen: form.listen.trim(),
      scheme: form.scheme,
      allow_orgs: parseOrgList(form.allow_orgs),
      console_url_template: form.console_url_template.trim(),
      quiet_hours: quiet,
      escalation_minutes: escalation as number,
      coalesce_threshold: coalesce as number,
      coalesce_window_secs: burst as number,
      show_panel_on_arrival: form.show_panel_on_arrival,
      start_at_login: form.start_at_login,
      display_name: name,
    },
  };
}

export type RelayAuth = 'none' | 'creds' | 'user';

/** Settings → Team relay as typed; `auth` picks which credentials are kept. */
export interface RelayForm {
  url: string;
  auth: RelayAuth;
  creds_file: string;
  user: string;
  ca_file: string;
  stream: string;
  consumer: string;
}

export type RelayValidation = { ok: true; relay: RelaySettings } | { ok: false; error: string };

/** The same rules as the core's (`RelaySettings::validate`), said before anything is sent. */
export function validateRelayForm(form: RelayForm, hasPassword: boolean): RelayValidation {
  const url = form.url.trim();
  const servers = url === '' ? [] : url.split(',').map((u) => u.trim());
  for (const s of servers) {
    const rest = /^(nats|tls):\/\/(.*)$/.exec(s)?.[2];
    if (rest === undefined) return { ok: false, error: 'Each NATS address starts with nats:// or tls://.' };
    if (rest === '' || rest.startsWith(':') || /\s/.test(rest)) {
      return { ok: false, error: 'Each NATS address needs a host, e.g. nats://nats.example.com:4222.' };
    }
    if (rest.split('/')[0].includes('@')) {
      return { ok: false, error: 'Put no user or password in the address: use the User field (the password goes to the keychain).' };
    }
  }
  const creds_file = form.auth === 'creds' ? form.creds_file.trim() : '';
  const user = form.auth === 'user' ? form.user.trim() : '';
  if (form.auth === 'creds' && creds_file === '') return { ok: false, error: 'Enter the path of the .creds file.' };
  if (form.auth === 'user' && user === '') return { ok: false, error: 'Enter the NATS user.' };
  if (form.auth === 'user' && url !== '' && !hasPassword) return { ok: false, error: 'Enter the NATS password.' };
  const stream = form.stream.trim() || 'ZOF';
  if (/[.*>/\\\s]/.test(stream)) return { ok: false, error: 'A stream name has no spaces, dots, `*`, `>` or slashes.' };
  const consumer = form.consumer.trim();
  if (!/^[A-Za-z0-9_-]*$/.test(consumer)) {
    return { ok: false, error: 'A consumer name has letters, digits, `-` and `_` only (empty: the default).' };
  }
  return { ok: true, relay: { url: servers.join(','), creds_file, user, ca_file: form.ca_file.trim(), stream, consumer } };
}
