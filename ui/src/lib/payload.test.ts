import { describe, expect, it } from 'vitest';
import { summarizePayload } from './payload';
import { makePlan } from '../test/fixtures';

describe('summarizePayload', () => {
  const plan = makePlan();

  it('reads well-known fields from the envelope and its data object', () => {
    const s = summarizePayload(
      {
        id: 'evt_9',
        type: 'remediation.plan_pending',
        created: '2025-01-01T00:00:00Z',
        data: { plan_id: 'pln_x', run_id: 'run_x', organization_id: 'org_x', steps: 3 },
        attempt: 2,
      },
      plan,
    );
    expect(s).toMatchObject({
      id: 'evt_9',
      type: 'remediation.plan_pending',
      created: '2025-01-01T00:00:00Z',
      plan_id: 'pln_x',
      run_id: 'run_x',
      organization_id: 'org_x',
    });
    expect(s.extra).toEqual({ data: { steps: 3 }, attempt: 2 });
  });

  it('reads ids from the top level too, and has no extra when nothing is left', () => {
    const s = summarizePayload(
      { id: 'e', type: 't', created: 'c', plan_id: 'p', run_id: 'r', organization_id: 'o', data: {} },
      plan,
    );
    expect(s).toMatchObject({ plan_id: 'p', run_id: 'r', organization_id: 'o' });
    expect(s.extra).toBeNull();
  });

  it('falls back to the stored plan when the payload lacks fields', () => {
    const s = summarizePayload({}, plan);
    expect(s).toMatchObject({
      id: plan.event_id,
      type: '—',
      created: plan.created,
      plan_id: plan.plan_id,
      run_id: plan.run_id,
      organization_id: plan.organization_id,
      extra: null,
    });
    expect(summarizePayload(null, plan).plan_id).toBe(plan.plan_id);
  });

  it('does not mutate the payload', () => {
    const payload = { id: 'e', data: { plan_id: 'p', x: 1 } };
    summarizePayload(payload, plan);
    expect(payload).toEqual({ id: 'e', data: { plan_id: 'p', x: 1 } });
  });
});
