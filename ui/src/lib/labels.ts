/** Plain-word labels for the contract's enums. */
import type { NextAction, OldestState, PlanState, Severity, Verdict } from './api';

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

/** One sentence for a delivery: `Rejected: signature did not match (HTTP 401)`. */
export function describeDelivery(d: { verdict: string; reason: string; status: number }): string {
  const reason = d.reason.trim();
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
  if (/deliver|reject|signature|activity|webhook/.test(k)) return 'activity';
  return null;
}
