import { describe, expect, it } from 'vitest';
import Activity from './Activity.svelte';
import { AppState, appContext } from '../lib/app-state.svelte';
import { click, mockBackend, push, render, until } from '../test/harness';
import type { AuditEntry } from '../lib/api';
import { makeDelivery, makeOverview } from '../test/fixtures';

function renderActivity(state = new AppState()) {
  return render(Activity, {}, appContext(state));
}

describe('Activity', () => {
  it('lists recent deliveries with verdict badge, plain reason and HTTP status', async () => {
    const b = mockBackend({
      list_activity: () => [
        makeDelivery({ verdict: 'rejected', status: 401, reason: 'signature did not match any secret', fingerprint: null }),
        makeDelivery({ verdict: 'duplicate', status: 200, reason: 'already received; ignored' }),
        makeDelivery({ verdict: 'ignored', status: 202, reason: 'organization org_x is not on the allow-list' }),
        makeDelivery(),
      ],
    });
    const ui = renderActivity();
    const rows = await until(() => {
      const r = ui.allByTestId('activity-row');
      expect(r).toHaveLength(4);
      return r;
    });
    expect(b.callsOf('list_activity')[0].args).toEqual({ limit: 200 });
    const cells = (i: number) => ({
      verdict: rows[i].querySelector('[data-testid="verdict"]')!.textContent,
      reason: rows[i].querySelector('[data-testid="activity-reason"]')!.textContent,
      status: rows[i].querySelector('[data-testid="activity-status"]')!.textContent,
    });
    expect(cells(0)).toEqual({ verdict: 'Rejected', reason: 'signature did not match any secret', status: '401' });
    expect(cells(1)).toEqual({ verdict: 'Duplicate', reason: 'already received; ignored', status: '200' });
    expect(cells(2).verdict).toBe('Ignored');
    expect(cells(3)).toEqual({ verdict: 'Accepted', reason: 'signature valid; plan queued', status: '202' });
    expect(rows[0].querySelector('.badge')!.classList.contains('tone-danger')).toBe(true);
    expect(rows[0].getAttribute('title')).toBe('Rejected: signature did not match any secret (HTTP 401)');
  });

  it('prepends deliveries pushed via zof://delivery', async () => {
    mockBackend({ list_activity: () => [makeDelivery()] });
    const ui = renderActivity();
    await until(() => expect(ui.allByTestId('activity-row')).toHaveLength(1));
    await push(
      'zof://delivery',
      makeDelivery({ at: '2025-01-01T11:00:00Z', verdict: 'rejected', status: 400, reason: 'body is not valid JSON' }),
    );
    const rows = ui.allByTestId('activity-row');
    expect(rows).toHaveLength(2);
    expect(rows[0].dataset.verdict).toBe('rejected');
    expect(rows[0].textContent).toContain('body is not valid JSON');
  });

  it('keeps a delivery pushed while the list was loading, without duplicating it', async () => {
    let resolve!: (v: unknown) => void;
    const early = makeDelivery({ at: '2025-01-01T12:00:00Z', reason: 'early bird' });
    mockBackend({ list_activity: () => new Promise((r) => (resolve = r)) });
    const ui = renderActivity();
    await until(() => expect(resolve).toBeTypeOf('function'));
    await push('zof://delivery', early);
    await push('zof://delivery', makeDelivery({ at: '2025-01-01T12:01:00Z', reason: 'only pushed' }));
    resolve([early, makeDelivery()]);
    await until(() => expect(ui.allByTestId('activity-row')).toHaveLength(3));
    expect(ui.allByTestId('activity-reason').map((c) => c.textContent)).toEqual([
      'only pushed',
      'early bird',
      'signature valid; plan queued',
    ]);
  });

  it('shows the error message when the list cannot be loaded', async () => {
    mockBackend({
      list_activity: () => {
        throw { code: 'db', message: 'The activity log is unavailable.' };
      },
    });
    const ui = renderActivity();
    await until(() => expect(ui.get('[role="alert"]')!.textContent).toContain('The activity log is unavailable.'));
  });

  it('summarises refused deliveries per code instead of listing them', async () => {
    mockBackend({ list_activity: () => [makeDelivery()] });
    const state = new AppState();
    state.overview = makeOverview({
      refusals: [
        { code: 'missing_signature', status: 401, last_hour: 1234, last_24h: 1300, total: 5000, last_at: null, last_reason: 'x' },
        { code: 'browser_request_refused', status: 403, last_hour: 0, last_24h: 2, total: 2, last_at: null, last_reason: 'y' },
      ],
    });
    const ui = renderActivity(state);
    const lines = await until(() => {
      const l = ui.allByTestId('refusal-summary');
      expect(l).toHaveLength(2);
      return l;
    });
    expect(lines[0].textContent).toContain('1,234 refused, missing signature, last hour');
    expect(lines[1].textContent).toContain('2 refused, browser request refused, last 24 h');
  });

  it('Actions shows the audit log with who, action, plan and source, and follows changes', async () => {
    const at = new Date().toISOString();
    let rows: AuditEntry[] = [{ at, who: 'alice@laptop-7', action: 'handled', plan_id: 'pln_alpha', detail: '', source: 'panel' }];
    const b = mockBackend({ list_audit: () => rows });
    const ui = renderActivity();
    await until(() => ui.byTestId('tab-actions'));
    expect(ui.byTestId('tab-deliveries')!.getAttribute('aria-selected')).toBe('true');
    expect(b.callsOf('list_audit')).toHaveLength(0);
    click(ui.byTestId('tab-actions'));
    const row = await until(() => ui.byTestId('action-row'));
    expect(b.callsOf('list_audit')[0].args).toEqual({ planId: null, planActionsOnly: false, limit: 200 });
    expect(ui.byTestId('tab-actions')!.getAttribute('aria-selected')).toBe('true');
    expect(ui.byTestId('activity-row')).toBeNull();
    const cell = (id: string) => row.querySelector(`[data-testid="${id}"]`)!.textContent;
    expect([cell('action-who'), cell('action-label'), cell('action-plan'), cell('action-source')]).toEqual([
      'alice@laptop-7',
      'Handled',
      'pln_alpha',
      'panel',
    ]);
    rows = [
      { at, who: 'alice@laptop-7', action: 'secret_set', plan_id: null, detail: 'fingerprint 0a1b2c3d4e5f', source: 'cli' },
      ...rows,
    ];
    await push('zof://overview', makeOverview());
    await until(() => expect(ui.allByTestId('action-row')).toHaveLength(2));
    expect(ui.allByTestId('action-row')[0].querySelector('[data-testid="action-plan"]')!.textContent).toBe('—');
    click(ui.byTestId('tab-deliveries'));
    await until(() => expect(ui.byTestId('actions')).toBeNull());
  });
});
