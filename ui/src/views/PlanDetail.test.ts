import { describe, expect, it } from 'vitest';
import PlanDetail from './PlanDetail.svelte';
import { AppState, appContext } from '../lib/app-state.svelte';
import { click, mockBackend, push, render, settle, until } from '../test/harness';
import { makeDelivery, makeOverview, makePlan, makePlanDetail, makeSettings } from '../test/fixtures';

function renderDetail(planId = 'pln_alpha') {
  const app = new AppState();
  app.overview = makeOverview();
  app.settings = makeSettings();
  const ui = render(PlanDetail, { planId }, appContext(app));
  return { app, ...ui };
}

describe('Plan detail', () => {
  it('shows the payload fields, extra fields as JSON and the delivery history', async () => {
    const b = mockBackend({ get_plan: () => makePlanDetail() });
    const ui = renderDetail();
    await until(() => ui.byTestId('field-id'));
    expect(b.callsOf('get_plan')[0].args).toEqual({ planId: 'pln_alpha' });
    expect(ui.byTestId('plan-detail')!.dataset.planId).toBe('pln_alpha');
    expect(ui.byTestId('field-id')!.textContent).toBe('evt_1');
    expect(ui.byTestId('field-type')!.textContent).toBe('remediation.plan_pending');
    expect(ui.byTestId('field-plan')!.textContent).toBe('pln_alpha');
    expect(ui.byTestId('field-run')!.textContent).toBe('run_42');
    expect(ui.byTestId('field-organization')!.textContent).toBe('org_acme');
    expect(JSON.parse(ui.byTestId('payload-extra')!.textContent!)).toEqual({ data: { summary: 'Rotate 3 keys' } });

    const rows = ui.allByTestId('delivery-row');
    expect(rows.map((r) => r.dataset.verdict)).toEqual(['accepted', 'duplicate']);
    expect(rows[0].textContent).toContain('sha256:ab12cd34');
    expect(rows[1].textContent).toContain('already received');
    expect(ui.byTestId('plan-state')!.textContent!.trim()).toBe('Awaits approval');
    expect(document.activeElement?.tagName).toBe('H1');
  });

  it('Mark handled from the detail view calls the command and reloads the plan', async () => {
    let handled = false;
    const b = mockBackend({
      get_plan: () => makePlanDetail({ plan: makePlan({ state: handled ? 'handled' : 'pending' }) }),
      mark_handled: () => {
        handled = true;
        return null;
      },
    });
    const ui = renderDetail();
    await until(() => ui.byTestId('mark-handled'));
    click(ui.byTestId('mark-handled'));
    await until(() => expect(b.callsOf('mark_handled')[0]?.args).toEqual({ planId: 'pln_alpha' }));
    await until(() => expect(ui.byTestId('plan-state')!.textContent!.trim()).toBe('Handled'));
    expect(ui.byTestId<HTMLButtonElement>('mark-handled')!.disabled).toBe(true);
  });

  it('Open in Console and Snooze call their commands', async () => {
    const b = mockBackend({ get_plan: () => makePlanDetail() });
    const ui = renderDetail();
    await until(() => ui.byTestId('open-console'));
    expect(ui.byTestId('open-console')!.getAttribute('href')).toBe(
      'https://console.example.test/orgs/org_acme/runs/run_42/plans/pln_alpha',
    );
    click(ui.byTestId('open-console'));
    await until(() => expect(b.callsOf('open_in_console')[0]?.args).toEqual({ planId: 'pln_alpha' }));
    await until(() => expect(ui.target.textContent).toContain('Opened plan pln_alpha in the Console.'));
    click(ui.byTestId('snooze'));
    await until(() => expect(b.callsOf('snooze_plan')[0]?.args).toEqual({ planId: 'pln_alpha', minutes: 60 }));
  });

  it('falls back to an Open in Console button when the plan has no link', async () => {
    const detail = makePlanDetail();
    detail.plan = { ...detail.plan, console_url: '' };
    const b = mockBackend({ get_plan: () => detail });
    const app = new AppState();
    app.settings = makeSettings();
    const ui = render(PlanDetail, { planId: 'pln_alpha' }, appContext(app));
    const btn = await until(() => ui.byTestId('open-console'));
    expect(btn.tagName).toBe('BUTTON');
    click(btn);
    await until(() => expect(b.callsOf('open_in_console')).toHaveLength(1));
  });

  it('reloads when a new delivery of the same event arrives', async () => {
    const b = mockBackend({ get_plan: () => makePlanDetail() });
    const ui = renderDetail();
    await until(() => ui.byTestId('field-id'));
    await settle();
    await push('zof://delivery', makeDelivery({ event_id: 'evt_other' }));
    expect(b.callsOf('get_plan')).toHaveLength(1);
    await push('zof://delivery', makeDelivery({ event_id: 'evt_1', verdict: 'duplicate' }));
    await until(() => expect(b.callsOf('get_plan')).toHaveLength(2));
  });

  it('shows the error message when the plan cannot be loaded', async () => {
    mockBackend({
      get_plan: () => {
        throw { code: 'not_found', message: 'No plan pln_zzz is stored.' };
      },
    });
    const ui = renderDetail('pln_zzz');
    await until(() => expect(ui.get('[role="alert"]')!.textContent).toContain('No plan pln_zzz is stored.'));
  });

  it('shows the plan history from the audit log, newest first, and reloads it after an action', async () => {
    let handled = false;
    const rows = () => [
      ...(handled ? [{ at: new Date().toISOString(), who: 'alice@laptop-7', action: 'handled', plan_id: 'pln_alpha', detail: '', source: 'panel' }] : []),
      { at: new Date().toISOString(), who: 'bob@l2', action: 'snoozed', plan_id: 'pln_alpha', detail: 'until 2025-01-01T11:00:00Z', source: 'notification' },
    ];
    const b = mockBackend({
      get_plan: () => makePlanDetail({ plan: makePlan({ state: handled ? 'handled' : 'pending' }) }),
      list_audit: () => rows(),
      mark_handled: () => {
        handled = true;
        return null;
      },
    });
    const ui = renderDetail();
    await until(() => expect(ui.allByTestId('history-row')).toHaveLength(1));
    expect(b.callsOf('list_audit')[0].args).toEqual({ planId: 'pln_alpha', planActionsOnly: false, limit: 100 });
    expect(ui.allByTestId('history-row')[0].textContent!.trim()).toMatch(
      /^Snoozed by bob@l2 \(until 2025-01-01T11:00:00Z\) · notification · \d{2}:\d{2}/,
    );
    click(ui.byTestId('mark-handled'));
    await until(() => expect(ui.allByTestId('history-row')).toHaveLength(2));
    const first = ui.allByTestId('history-row')[0];
    expect(first.dataset.action).toBe('handled');
    expect(first.textContent!.trim()).toMatch(/^Handled by alice@laptop-7 · panel · \d{2}:\d{2}/);
  });

  it('says so when nobody has acted on the plan, and a history that fails to load does not hide the plan', async () => {
    mockBackend({ get_plan: () => makePlanDetail() });
    const ui = renderDetail();
    await until(() => ui.byTestId('history-empty'));
    mockBackend({
      get_plan: () => makePlanDetail(),
      list_audit: () => {
        throw { code: 'store', message: 'the store is shutting down' };
      },
    });
    const again = renderDetail();
    await until(() => expect(again.byTestId('plan-history')!.textContent).toContain('the store is shutting down'));
    expect(again.byTestId('field-id')!.textContent).toBe('evt_1');
  });
});
