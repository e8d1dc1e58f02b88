/**
 * The one place where the panel talks to the Rust core.
 *
 * Every command and event of the contract has a typed wrapper here; no other
 * module may import `invoke` or `listen`. Errors from Rust arrive as
 * `{code, message}` and are rethrown as {@link ApiError} so views can show
 * `message` to the user.
 */
import { invoke, type InvokeArgs } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';

// ---------------------------------------------------------------------------
// Types (mirror the Rust contract; timestamps are RFC 3339, durations seconds)
// ---------------------------------------------------------------------------

export type OldestState = 'none' | 'ok' | 'warning' | 'overdue';
export type PlanState = 'pending' | 'snoozed' | 'handled' | 'resolved';
export type PlanSource = 'webhook' | 'console';
export type Verdict = 'accepted' | 'duplicate' | 'ignored' | 'rejected';
export type Severity = 'info' | 'warning' | 'critical';
export type Scheme = 'zof' | 'standard_webhooks';
export type SecretRole = 'current' | 'previous';

export interface ReceiverStatus {
  webhook_url: string;
  ready: boolean;
  reason: string | null;
}

export interface Rejection {
  at: string;
  reason: string;
}

/** Refused deliveries of one refusal code: counted by the core, never listed one by one. */
export interface RefusalSummary {
  code: string;
  status: number;
  last_hour: number;
  last_24h: number;
  total: number;
  last_at: string | null;
  last_reason: string;
}

/** What needs a person's eye about a plan beyond its state. */
export type PlanFlag = 'tenant_mismatch' | 'not_notified' | 'console_disagrees';

export interface DeliveryHealth {
  accepted: number;
  duplicates: number;
  rejected: number;
  last_rejection: Rejection | null;
}

export interface Kpis {
  pending: number;
  oldest_waiting_secs: number | null;
  oldest_state: OldestState;
  received_24h: number;
  health: DeliveryHealth;
  /** From arrival to decision, the median over the plans decided in the last 7 days. */
  median_decision_secs_7d?: number | null;
}

export type Risk = 'low' | 'medium' | 'high' | 'critical';

/** Title, environment, risk and service: the Console's details every view of a plan shows. */
export interface Headline {
  title: string | null;
  environment: string | null;
  risk: Risk | null;
  service: string | null;
}

export interface PlanStep {
  action: string;
  target: string;
  detail: string;
}

/** A plan as the Console describes it for review; every review field may be absent. */
export interface PlanDetails {
  plan_id: string;
  status: string;
  organization_id: string;
  run_id: string;
  updated: string | null;
  decided_by: string | null;
  title: string | null;
  summary: string | null;
  risk: Risk | null;
  environment: string | null;
  service: string | null;
  policy_pack: { id: string; name: string } | null;
  requested_by: string | null;
  steps: PlanStep[];
  steps_omitted: number;
  diff: string | null;
  /** The diff was longer than the app keeps: the rest is in the Console. */
  diff_cut: boolean;
  revision: string | null;
  expires_at: string | null;
  viewer: { can_decide: boolean; reason: string | null } | null;
  fetched_at: string;
}

/** The plan to review: the Console's details, refreshed when it answered. */
export interface Review {
  plan: { plan_id: string; state: PlanState };
  details: PlanDetails | null;
  fresh: boolean;
  problem: string | null;
  /** Decided already (approved, rejected, expired, cancelled). */
  decided: boolean;
  /** The core's answer: Approve…/Reject… are offered only when true. */
  can_decide: boolean;
  /** Why not: the Console's reason, or who decided it and when. */
  cannot_decide_reason: string | null;
  /** Approving needs this environment's name typed first (high and critical risk). */
  type_to_approve: string | null;
}

export type DecisionVerdict = 'approve' | 'reject';
export type DecisionOutcome =
  | 'decided'
  | 'changed'
  | 'already_decided'
  | 'not_permitted'
  | 'expired'
  | 'comment_required'
  | 'reason_required'
  | 'not_decided'
  | 'unknown'
  | 'failed';

/** What a decision came to, in plain words, with the plan as the Console last described it. */
export interface DecisionReport {
  outcome: DecisionOutcome;
  message: string;
  details: PlanDetails | null;
}

export interface PlanView {
  plan_id: string;
  event_id: string;
  run_id: string;
  organization_id: string;
  received_at: string;
  created: string;
  state: PlanState;
  snoozed_until: string | null;
  escalated: boolean;
  age_secs: number;
  flags: PlanFlag[];
  /** The plan in Zof Console, built by the core from the Console URL template. */
  console_url: string;
  /** How the plan reached this app (optional: older cores do not say). */
  source?: PlanSource;
  /** The Console's status when last reconciled, as the Console said it. */
  console_status?: string | null;
  decided_by?: string | null;
  resolved_at?: string | null;
  /** "Approved in Console by alice@… at …", for a plan resolved in the Console. */
  resolution?: string | null;
  /** What the plan is about, once the Console's details came (optional: older cores). */
  headline?: Headline;
}

export interface NextAction {
  kind: string;
  severity: Severity;
  text: string;
}

export interface Overview {
  /** False when the app could not start its receiver: the store was not read, counts unknown. */
  started: boolean;
  first_run: boolean;
  receiver: ReceiverStatus;
  kpis: Kpis;
  queue: PlanView[];
  next_actions: NextAction[];
  /** 24 hourly buckets, oldest first. */
  arrivals_24h: number[];
  /** Refused deliveries per code, most in the last hour first. */
  refusals: RefusalSummary[];
  muted_until: string | null;
  notification_status: string | null;
  /** The team relay link (`off` when none is set); absent or null when the core did not start. */
  relay?: RelayView | null;
}

export interface DeliveryView {
  at: string;
  event_id: string | null;
  verdict: Verdict;
  /** A stable word for what happened; `console_*` lines come from the Console connection, not a delivery. */
  code?: string;
  status: number;
  reason: string;
  fingerprint: string | null;
}

export interface PlanDetail {
  plan: PlanView;
  payload: Record<string, unknown>;
  deliveries: DeliveryView[];
}

export interface QuietHours {
  start: string;
  end: string;
}

export interface Settings {
  listen: string;
  scheme: Scheme;
  allow_orgs: string[];
  console_url_template: string;
  quiet_hours: QuietHours | null;
  escalation_minutes: number;
  coalesce_threshold: number;
  /** Arrivals within this many seconds count as one burst for coalescing. */
  coalesce_window_secs: number;
  show_panel_on_arrival: boolean;
  start_at_login: boolean;
  /** The Console connection; absent: unchanged. Empty URL: off. */
  console_api_url?: string | null;
  reconcile_interval_secs?: number | null;
  public_url?: string | null;
  /** The name actions are recorded under; empty: the default `user@host`. Absent: unchanged. */
  display_name?: string | null;
  /** What an empty `display_name` stands for on this machine (shown, never saved). */
  default_display_name?: string;
  /** Settings → Team relay; absent: unchanged. Never a password (that is in the keychain). */
  relay?: RelaySettings | null;
}

/** The team relay this computer follows. Empty strings: not set. */
export interface RelaySettings {
  /** nats://… or tls://…, comma-separated for a cluster; empty: no relay. */
  url: string;
  creds_file: string;
  user: string;
  ca_file: string;
  stream: string;
  /** Empty: the default, `user@host` made valid (RelayView.default_consumer). */
  consumer: string;
}

export type RelayState = 'off' | 'failed' | 'connecting' | 'connected' | 'catching_up' | 'disconnected';

/** The team relay link as the core sees it. Never the password: only its fingerprint. */
export interface RelayView {
  state: RelayState;
  /** `off`, `connected`, `catching up 42`, `disconnected since …`, `not started: …`. */
  text: string;
  pending: number;
  since: string | null;
  reason: string | null;
  consumer: string | null;
  default_consumer: string;
  password_fingerprint: string | null;
  /** Set with `serve --relay`: the settings do not change it. */
  from_command_line: boolean;
}

export type AuditAction =
  | 'handled'
  | 'snoozed'
  | 'unsnoozed'
  | 'resolved'
  | 'secret_set'
  | 'secret_generated'
  | 'secret_revoked'
  | 'settings_changed'
  | 'mute_changed'
  | 'quiet_hours_changed'
  | 'relay_connected'
  | 'relay_disconnected'
  | 'console_connected'
  | 'console_disconnected'
  | 'ignored';

/** One row of the audit log: who did what, when and from where (`panel`, `notification`, `cli`, `console`, `team:<consumer>`). */
export interface AuditEntry {
  at: string;
  who: string;
  action: AuditAction;
  plan_id: string | null;
  /** Until when, which keys, which fingerprint; never a secret or a body. */
  detail: string;
  source: string;
}

export interface AuditQuery {
  planId?: string | null;
  /** Only handled, snoozed, un-snoozed and resolved. */
  planActionsOnly?: boolean;
  limit?: number;
}

export type ConsoleState = 'off' | 'no_token' | 'connecting' | 'ok' | 'token_rejected' | 'unreachable';

export interface ReconcileReport {
  checked: number;
  resolved: number;
  added: number;
  flagged: number;
  errors: number;
}

/** The Console connection. Never the token: only its fingerprint. */
export interface ConsoleStatus {
  state: ConsoleState;
  api_url: string;
  token_fingerprint: string | null;
  message: string | null;
  last_attempt_at: string | null;
  last_success_at: string | null;
  last_report: ReconcileReport | null;
  next_at: string | null;
  interval_secs: number;
  requests: number;
  public_url: string;
}

export interface Subscription {
  webhook_id: string;
  url: string;
  secret_fingerprint: string;
}

export interface SecretView {
  role: SecretRole;
  fingerprint: string;
  created_at: string;
  age_days: number;
  expires_at: string | null;
  last_matched_at: string | null;
  matches: number;
  due_for_rotation: boolean;
}

export interface KeychainStatus {
  ok: boolean;
  message: string | null;
}

export interface Secrets {
  keychain: KeychainStatus;
  secrets: SecretView[];
}

/** Settings → About: this build and where its files are (absolute paths). */
export interface About {
  version: string;
  /** The git commit it was built from, or "unknown". */
  commit: string;
  profile: 'debug' | 'release';
  os: string;
  data_dir: string;
  config_dir: string;
  log_dir: string;
}

export type NavigateView = 'home' | 'queue' | 'settings' | 'activity' | 'plan';

export interface NavigateRequest {
  view: NavigateView;
  plan_id?: string;
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

export class ApiError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
  }
}

/** Normalise whatever `invoke` rejected with into an {@link ApiError}. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e && typeof e === 'object') {
    const o = e as { code?: unknown; message?: unknown };
    if (typeof o.message === 'string' && o.message !== '') {
      return new ApiError(typeof o.code === 'string' ? o.code : 'unknown', o.message);
    }
  }
  if (typeof e === 'string' && e !== '') return new ApiError('unknown', e);
  return new ApiError('unknown', 'Something went wrong talking to Zof Approvals.');
}

/** The text to show a person for a failed call. */
export function errorMessage(e: unknown): string {
  return toApiError(e).message;
}

async function call<T>(cmd: string, args?: InvokeArgs): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    throw toApiError(e);
  }
}

// ---------------------------------------------------------------------------
// Commands (argument keys are camelCase; Tauri maps them to snake_case)
// ---------------------------------------------------------------------------

export const api = {
  getOverview: () => call<Overview>('get_overview'),
  /** The first `limit` pending plans, oldest first (the overview carries the first 200). */
  getQueue: (limit: number) => call<PlanView[]>('get_queue', { limit }),
  getPlan: (planId: string) => call<PlanDetail>('get_plan', { planId }),
  /** The plan's details, read again from the Console. */
  getReview: (planId: string) => call<Review>('get_review', { planId }),
  /** Approve or reject as shown at `revision`; the Console's answer comes back as a report. */
  decidePlan: (planId: string, verdict: DecisionVerdict, revision: string | null, comment: string) =>
    call<DecisionReport>('decide_plan', { planId, verdict, revision, comment }),
  listActivity: (limit: number) => call<DeliveryView[]>('list_activity', { limit }),
  /** The audit log, newest first: one plan's history, or every action. */
  listAudit: (q: AuditQuery = {}) =>
    call<AuditEntry[]>('list_audit', {
      planId: q.planId ?? null,
      planActionsOnly: q.planActionsOnly ?? false,
      limit: q.limit ?? 200,
    }),
  markHandled: (planId: string) => call<void>('mark_handled', { planId }),
  snoozePlan: (planId: string, minutes: number) => call<void>('snooze_plan', { planId, minutes }),
  openInConsole: (planId: string) => call<void>('open_in_console', { planId }),
  getSettings: () => call<Settings>('get_settings'),
  saveSettings: (settings: Settings) => call<Settings>('save_settings', { settings }),
  getSecrets: () => call<Secrets>('get_secrets'),
  setSecret: (secret: string, overlapHours: number) =>
    call<Secrets>('set_secret', { secret, overlapHours }),
  generateSecret: (overlapHours: number) => call<Secrets>('generate_secret', { overlapHours }),
  revokePreviousSecret: () => call<Secrets>('revoke_previous_secret'),
  /** `minutes` 0 unmutes. */
  muteNotifications: (minutes: number) => call<void>('mute_notifications', { minutes }),
  copyWebhookUrl: () => call<void>('copy_webhook_url'),
  getAbout: () => call<About>('get_about'),
  /** Opens the logs folder in the desktop's file manager. */
  openLogsFolder: () => call<void>('open_logs_folder'),
  /** Copies the diagnostics (built by the core, no secret or body) to the clipboard; the text never reaches the page. */
  copyDiagnostics: () => call<void>('copy_diagnostics'),
  /** "Check with Console": reconcile the queue with the Console now. */
  checkWithConsole: () => call<ReconcileReport>('check_with_console'),
  getConsoleStatus: () => call<ConsoleStatus>('get_console_status'),
  /** The token goes to the keychain; the answer is its fingerprint. */
  setConsoleToken: (token: string) => call<string>('set_console_token', { token }),
  subscribeConsole: (publicUrl: string) => call<Subscription>('subscribe_console', { publicUrl }),
  getRelayStatus: () => call<RelayView>('get_relay_status'),
  /** The password goes to the keychain; the answer is its fingerprint. */
  setRelayPassword: (password: string) => call<string>('set_relay_password', { password }),
};

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

export const EVENTS = {
  overview: 'zof://overview',
  delivery: 'zof://delivery',
  navigate: 'zof://navigate',
  decisionChecking: 'zof://decision-checking',
} as const;

export function onOverview(handler: (overview: Overview) => void): Promise<UnlistenFn> {
  return listen<Overview>(EVENTS.overview, (e) => handler(e.payload));
}

export function onDelivery(handler: (delivery: DeliveryView) => void): Promise<UnlistenFn> {
  return listen<DeliveryView>(EVENTS.delivery, (e) => handler(e.payload));
}

/** A decision got no answer: the core is reading the plan to learn its outcome. */
export function onDecisionChecking(handler: (planId: string) => void): Promise<UnlistenFn> {
  return listen<string>(EVENTS.decisionChecking, (e) => handler(e.payload));
}

export function onNavigate(handler: (request: NavigateRequest) => void): Promise<UnlistenFn> {
  return listen<NavigateRequest>(EVENTS.navigate, (e) => handler(e.payload));
}

/**
 * Turn an async subscription into a synchronous cleanup function, suitable
 * for returning from a Svelte `$effect`. Unsubscribes even when the cleanup
 * runs before `listen` resolved.
 */
export function subscription(
  pending: Promise<UnlistenFn>,
  onError?: (message: string) => void,
): () => void {
  let unlisten: UnlistenFn | null = null;
  let closed = false;
  pending.then(
    (fn) => {
      if (closed) release(fn);
      else unlisten = fn;
    },
    (e) => onError?.(errorMessage(e)),
  );
  return () => {
    closed = true;
    if (unlisten) release(unlisten);
    unlisten = null;
  };
}

function release(fn: UnlistenFn): void {
  try {
    // Tauri's unlisten is async; a failure to unregister is not actionable.
    const result: unknown = fn();
    if (result instanceof Promise) result.catch(() => undefined);
  } catch {
    /* ignore */
  }
}
