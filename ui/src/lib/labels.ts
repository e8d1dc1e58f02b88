/** Plain-word labels for the contract's enums. */
import type { AuditEntry, PlanFlag, RefusalSummary, NextAction, OldestState, PlanState, RelayState, RelayView, Severity, Verdict } from './api';
import { formatDateTime } from './format';

export const VERDICT_LABEL: Record<Verdict, string> = {
  accepted: 'Accepted',
  duplicate: 'Duplicate',
  ignored: 'Ignored',
  rejected: 'Rejected',
};

/** Badge tone for a verdict: maps to CSS classes `tone-*`. */
export const VERDICT_TONE: Record<Verdict, 'ok' | 'neutral' | 'warning' | 'danger'> = {
  accepted: 'ok',
  duplicate: 'neutral',
  ignored: 'warning',
  rejected: 'danger',
};

export function verdictLabel(v: string): string {
  return (VERDICT_LABEL as Record<string, string>)[v] ?? v;
}

export function verdictTone(v: string): string {
  return (VERDICT_TONE as Record<string, string>)[v] ?? 'neutral';
}

/** A line the Console connection wrote in Activity (a plan resolved there, a disagreement), not a delivery. */
export function isConsoleLine(d: { code?: string }): boolean {
  return d.code?.startsWith('console_') ?? false;
}

/** One sentence for a delivery: `Rejected: signature did not match (HTTP 401)`. */
export function describeDelivery(d: { verdict: string; reason: string; status: number; code?: string }): string {
  const reason = d.reason.trim();
  if (isConsoleLine(d)) return `Console: ${reason}`;
  return `${verdictLabel(d.verdict)}${reason ? `: ${reason}` : ''} (HTTP ${d.status})`;
}

export const OLDEST_CAPTION: Record<OldestState, string> = {
  none: 'Nothing awaits approval',
  ok: 'Within the escalation window',
  warning: 'Nearing escalation',
  overdue: 'Overdue: past the escalation delay',
};

export const SEVERITY_LABEL: Record<Severity, string> = {
  info: 'Info',
  warning: 'Warning',
  critical: 'Critical',
};

export const PLAN_STATE_LABEL: Record<PlanState, string> = {
  pending: 'Awaits approval',
  snoozed: 'Snoozed',
  handled: 'Handled',
  resolved: 'Resolved in Console',
};

export type ActionTarget = 'settings' | 'activity' | null;

/**
 * Where a next action points. The contract does not enumerate `kind`, so
 * this matches on words in it (`secret_rotation` → Settings,
 * `delivery_rejected` → Activity); unknown kinds get no button.
 */
export function nextActionTarget(action: Pick<NextAction, 'kind'>): ActionTarget {
  const k = action.kind.toLowerCase();
  if (/secret|settings|receiver|listen|notif|quiet|mute|keychain|login/.test(k)) return 'settings';
  if (/deliver|reject|signature|activity|webhook|tenant/.test(k)) return 'activity';
  return null;
}

/**
 * One refusal code in plain words: "1,234 refused, missing signature, last hour"
 * (or "…, last 24 h" when the last hour had none).
 */
export function describeRefusals(r: Pick<RefusalSummary, 'code' | 'last_hour' | 'last_24h'>): string {
  const inHour = r.last_hour > 0;
  const n = (inHour ? r.last_hour : r.last_24h).toLocaleString('en-US');
  return `${n} refused, ${r.code.replace(/_/g, ' ')}, ${inHour ? 'last hour' : 'last 24 h'}`;
}

export const PLAN_FLAG_LABEL: Record<PlanFlag, string> = {
  tenant_mismatch: 'Tenant mismatch',
  not_notified: 'Not notified',
  console_disagrees: 'Console disagrees',
};

export const PLAN_FLAG_HINT: Record<PlanFlag, string> = {
  tenant_mismatch: 'A delivery named this plan under another organization; it was not merged (see Activity).',
  not_notified: 'Notifications failed for 24 hours, so telling you about this plan was given up.',
  console_disagrees: 'The Console names another run or organization for this plan, or does not know it (see Activity).',
};

/** One sentence for a reconciliation: "Checked 12 plans with the Console: 2 resolved, 1 added." */
export function describeReconcile(r: { checked: number; resolved: number; added: number; flagged: number; errors: number }): string {
  const parts = [
    r.resolved > 0 ? `${r.resolved} resolved there` : null,
    r.added > 0 ? `${r.added} added` : null,
    r.flagged > 0 ? `${r.flagged} flagged` : null,
    r.errors > 0 ? `${r.errors} could not be checked` : null,
  ].filter((p): p is string => p !== null);
  const plans = `${r.checked} plan${r.checked === 1 ? '' : 's'}`;
  return `Checked ${plans} with the Console: ${parts.length > 0 ? parts.join(', ') : 'all in step'}.`;
}

export const CONSOLE_STATE_LABEL: Record<string, string> = {
  off: 'Not connected',
  no_token: 'No API token',
  connecting: 'Connecting…',
  ok: 'Connected',
  token_rejected: 'The Console refused the API token',
  unreachable: 'The Console cannot be reached',
};

/** The tone of the team relay link's dot. */
export const RELAY_STATE_TONE: Record<RelayState, 'ok' | 'warning' | 'danger' | 'neutral'> = {
  off: 'neutral',
  failed: 'danger',
  connecting: 'warning',
  connected: 'ok',
  catching_up: 'warning',
  disconnected: 'danger',
};

/** "relay: connected", "relay: catching up 42", "relay: disconnected since 5/20/2026, 12:00 (why)". */
export function relayLine(r: RelayView): string {
  if (r.state === 'disconnected' && r.since) {
    return `relay: disconnected since ${formatDateTime(r.since)}${r.reason ? ` (${r.reason})` : ''}`;
  }
  return `relay: ${r.text}`;
}

export const AUDIT_ACTION_LABEL: Record<string, string> = {
  handled: 'Handled',
  snoozed: 'Snoozed',
  unsnoozed: 'Snooze ended',
  resolved: 'Resolved in Console',
  secret_set: 'Secret set',
  secret_generated: 'Secret generated',
  secret_revoked: 'Secret revoked',
  settings_changed: 'Settings changed',
  mute_changed: 'Notifications paused or resumed',
  quiet_hours_changed: 'Quiet hours changed',
  relay_connected: 'Relay connected',
  relay_disconnected: 'Relay disconnected',
  console_connected: 'Console connected',
  console_disconnected: 'Console disconnected',
  ignored: 'Ignored',
};

export function auditActionLabel(action: string): string {
  return AUDIT_ACTION_LABEL[action] ?? action;
}

/** One history line: `Handled by alice@laptop-7 · panel · 14:02` (`time` is already formatted). */
export function describeAudit(e: Pick<AuditEntry, 'action' | 'who' | 'source' | 'detail'>, time: string): string {
  const what = `${auditActionLabel(e.action)} by ${e.who}`;
  const detail = e.detail.trim() ? ` (${e.detail.trim()})` : '';
  return `${what}${detail} · ${e.source} · ${time}`;
}
