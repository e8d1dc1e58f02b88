/** Splitting a webhook payload into the well-known fields and the rest. */
import type { PlanView } from './api';

export interface PayloadSummary {
  id: string;
  type: string;
  created: string;
  plan_id: string;
  run_id: string;
  organization_id: string;
  /** Everything else in the payload, or null when nothing is left. */
  extra: Record<string, unknown> | null;
}

const TOP_KNOWN = ['id', 'type', 'created'] as const;
const DATA_KNOWN = ['plan_id', 'run_id', 'organization_id'] as const;

function str(v: unknown): string | undefined {
  return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The event's `id`, `type`, `created` are read from the top level; plan, run
 * and organization ids from the top level or a nested `data` object, falling
 * back to the stored plan. Whatever remains is returned as `extra`.
 */
export function summarizePayload(payload: unknown, plan: PlanView): PayloadSummary {
  const top: Record<string, unknown> = isObject(payload) ? { ...payload } : {};
  const data: Record<string, unknown> | null = isObject(top.data) ? { ...top.data } : null;

  const pick = (key: (typeof DATA_KNOWN)[number]): string | undefined => {
    const fromTop = str(top[key]);
    if (fromTop !== undefined) {
      delete top[key];
      return fromTop;
    }
    if (data) {
      const fromData = str(data[key]);
      if (fromData !== undefined) {
        delete data[key];
        return fromData;
      }
    }
    return undefined;
  };

  const summary: PayloadSummary = {
    id: str(top.id) ?? plan.event_id,
    type: str(top.type) ?? '—',
    created: str(top.created) ?? plan.created,
    plan_id: pick('plan_id') ?? plan.plan_id,
    run_id: pick('run_id') ?? plan.run_id,
    organization_id: pick('organization_id') ?? plan.organization_id,
    extra: null,
  };
  for (const k of TOP_KNOWN) delete top[k];
  if (data) {
    if (Object.keys(data).length > 0) top.data = data;
    else delete top.data;
  }
  summary.extra = Object.keys(top).length > 0 ? top : null;
  return summary;
}

