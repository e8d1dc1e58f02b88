import { describe, expect, it } from 'vitest';
import App from './App.svelte';
import { AppState } from './lib/app-state.svelte';
import { click, mockBackend, push, render, until } from './test/harness';
import { makeOverview, makePlan, makePlanDetail } from './test/fixtures';

function renderApp() {
  const app = new AppState();
  const ui = render(App, { app });
  return { app, ...ui };
}

describe('first run', () => {
  it('shows the setup page instead of Home while first_run is true', async () => {
    mockBackend({ get_overview: () => makeOverview({ first_run: true, queue: [] }) });
    const ui = renderApp();
    const fr = await until(() => ui.byTestId('first-run')!);
    expect(fr.textContent).toContain('In Zof Admin Center → Webhooks, add this URL');
    expect(fr.textContent).toContain('remediation.plan_pending');
    expect(ui.byTestId<HTMLInputElement>('webhook-url')!.value).toBe('http://127.0.0.1:8787/webhooks/zof');
    expect(ui.byTestId('kpi-pending')).toBeNull();
  });

  it('switches to Home when an overview with first_run false arrives', async () => {
    mockBackend({ get_overview: () => makeOverview({ first_run: true, queue: [] }) });
    const ui = renderApp();
    await until(() => expect(ui.byTestId('first-run')).not.toBeNull());
    await push('zof://overview', makeOverview());
    expect(ui.byTestId('first-run')).toBeNull();
    expect(ui.byTestId('kpi-pending')!.textContent).toBe('2');
  });
});

describe('Home', () => {
  it('renders the KPI tiles from the overview', async () => {
    mockBackend();
    const ui = renderApp();
    const pending = await until(() => ui.byTestId('kpi-pending')!);
    expect(pending.textContent).toBe('2');
    expect(ui.byTestId('kpi-oldest')!.textContent).toBe('1 h 5 min');
    expect(ui.byTestId('kpi-oldest')!.dataset.tone).toBe('warning');
    expect(ui.byTestId('kpi-decision')!.textContent).toBe('25 min');
    expect(ui.target.textContent).toContain('Median time to decision · 7 days');
    expect(ui.byTestId('kpi-health')!.textContent).toBe('12 / 2 / 1');
    expect(ui.byTestId('last-rejection')!.textContent).toContain('signature did not match any secret');
    expect(ui.byTestId('last-rejection')!.textContent).toContain('5 min ago');
    expect(ui.target.textContent).toContain('01 · Pending approvals');
    expect(ui.target.textContent).toContain('Approve pln_alpha in the Console');
  });

  it('shows a dash and the overdue state for the oldest tile', async () => {
    mockBackend({
      get_overview: () =>
        makeOverview({
          kpis: { ...makeOverview().kpis, oldest_waiting_secs: 2 * 86400, oldest_state: 'overdue' },
        }),
    });
    const ui = renderApp();
    const oldest = await until(() => ui.byTestId('kpi-oldest')!);
    expect(oldest.textContent).toBe('2 d');
    expect(oldest.dataset.tone).toBe('overdue');
  });

  it('re-renders from a zof://overview event without fetching again', async () => {
    const b = mockBackend();
    const ui = renderApp();
    await until(() => expect(ui.byTestId('kpi-pending')!.textContent).toBe('2'));
    const fetches = b.callsOf('get_overview').length;

    const three = [makePlan(), makePlan({ plan_id: 'pln_beta' }), makePlan({ plan_id: 'pln_gamma' })];
    await push('zof://overview', makeOverview({ queue: three, kpis: { ...makeOverview().kpis, pending: 3 } }));

    expect(ui.byTestId('kpi-pending')!.textContent).toBe('3');
    expect(ui.allByTestId('queue-row').map((r) => r.dataset.planId)).toEqual(['pln_alpha', 'pln_beta', 'pln_gamma']);
    expect(b.callsOf('get_overview').length).toBe(fetches);
    expect(document.title).toBe('(3) Zof Approvals');
    expect(ui.get('[aria-live="polite"]')!.textContent).toContain('3 plans await approval');
  });

  it('renders a long queue 25 rows at a time, with the rest one click away', async () => {
    mockBackend();
    const ui = renderApp();
    await until(() => ui.byTestId('kpi-pending')!);
    const sixty = Array.from({ length: 60 }, (_, i) => makePlan({ plan_id: `pln_${String(i).padStart(2, '0')}` }));
    await push('zof://overview', makeOverview({ queue: sixty, kpis: { ...makeOverview().kpis, pending: 60 } }));

    expect(ui.allByTestId('queue-row')).toHaveLength(25);
    expect(ui.byTestId('queue-more')!.textContent).toBe('Show 25 more plans');
    expect(ui.get('.show-more .hint')!.textContent).toBe('35 not shown; 60 pending in all');
    click(ui.byTestId('queue-more'));
    await until(() => expect(ui.allByTestId('queue-row')).toHaveLength(50));
    click(ui.byTestId('queue-more'));
    await until(() => expect(ui.allByTestId('queue-row')).toHaveLength(60));
    expect(ui.byTestId('queue-more')).toBeNull();
  });

  it('past the 200 plans of the overview, "Show more" fetches the next ones from the core', async () => {
    const all = Array.from({ length: 230 }, (_, i) => makePlan({ plan_id: `pln_${String(i).padStart(3, '0')}` }));
    const b = mockBackend({ get_queue: (args) => all.slice(0, args.limit as number) });
    const ui = renderApp();
    await until(() => ui.byTestId('kpi-pending')!);
    await push('zof://overview', makeOverview({ queue: all.slice(0, 200), kpis: { ...makeOverview().kpis, pending: 230 } }));
    for (let rows = 50; rows <= 200; rows += 25) {
      click(ui.byTestId('queue-more'));
      await until(() => expect(ui.allByTestId('queue-row')).toHaveLength(rows));
    }
    expect(b.callsOf('get_queue')).toHaveLength(0);
    expect(ui.get('.show-more .hint')!.textContent).toBe('30 not shown; 230 pending in all');

    click(ui.byTestId('queue-more'));
    await until(() => expect(ui.allByTestId('queue-row')).toHaveLength(225));
    expect(b.callsOf('get_queue').map((c) => c.args.limit)).toEqual([225]);
    expect(ui.allByTestId('queue-row')[224].dataset.planId).toBe('pln_224');
    click(ui.byTestId('queue-more'));
    await until(() => expect(ui.allByTestId('queue-row')).toHaveLength(230));
    expect(ui.byTestId('queue-more')).toBeNull();

    // A fresh overview refreshes the longer list too.
    await push('zof://overview', makeOverview({ queue: all.slice(1, 201), kpis: { ...makeOverview().kpis, pending: 229 } }));
    await until(() => expect(b.callsOf('get_queue').length).toBe(3));
  });

  it('does not let a slower initial fetch overwrite a newer pushed overview', async () => {
    let resolve!: (o: unknown) => void;
    mockBackend({ get_overview: () => new Promise((r) => (resolve = r)) });
    const ui = renderApp();
    await until(() => expect(resolve).toBeTypeOf('function'));
    await push('zof://overview', makeOverview({ queue: [], kpis: { ...makeOverview().kpis, pending: 0 } }));
    resolve(makeOverview());
    await new Promise((r) => setTimeout(r, 10));
    await until(() => expect(ui.byTestId('kpi-pending')!.textContent).toBe('0'));
  });

  it('Mark handled calls mark_handled with the plan id and refreshes once', async () => {
    const b = mockBackend();
    const ui = renderApp();
    const row = await until(() => ui.get('[data-testid="queue-row"][data-plan-id="pln_beta"]')!);
    const before = b.callsOf('get_overview').length;
    click(row.querySelector('[data-testid="mark-handled"]'));
    await until(() => expect(b.callsOf('mark_handled')).toEqual([{ cmd: 'mark_handled', args: { planId: 'pln_beta' } }]));
    await until(() => expect(ui.byTestId('queue-notice')!.textContent).toBe('Plan pln_beta marked handled.'));
    expect(b.callsOf('get_overview').length).toBe(before + 1);
  });

  it('Snooze 1 h calls snooze_plan with 60 minutes', async () => {
    const b = mockBackend();
    const ui = renderApp();
    const row = await until(() => ui.get('[data-plan-id="pln_alpha"]')!);
    click(row.querySelector('[data-testid="snooze"]'));
    await until(() => expect(b.callsOf('snooze_plan')[0]?.args).toEqual({ planId: 'pln_alpha', minutes: 60 }));
  });

  it('shows the error message from Rust when an action fails', async () => {
    mockBackend({
      mark_handled: () => {
        throw { code: 'not_found', message: 'That plan is no longer in the queue.' };
      },
    });
    const ui = renderApp();
    const row = await until(() => ui.get('[data-plan-id="pln_alpha"]')!);
    click(row.querySelector('[data-testid="mark-handled"]'));
    await until(() => expect(ui.byTestId('queue-notice')!.textContent).toBe('That plan is no longer in the queue.'));
  });

  it('Open in Console is a link built from the template and opens via open_in_console', async () => {
    const b = mockBackend();
    const ui = renderApp();
    const link = await until(() => {
      const a = ui.get<HTMLAnchorElement>('[data-plan-id="pln_alpha"] a[data-testid="open-console"]');
      expect(a).not.toBeNull();
      return a!;
    });
    expect(link.getAttribute('href')).toBe('https://console.example.test/orgs/org_acme/runs/run_42/plans/pln_alpha');
    const ev = new MouseEvent('click', { bubbles: true, cancelable: true });
    link.dispatchEvent(ev);
    expect(ev.defaultPrevented).toBe(true);
    await until(() => expect(b.callsOf('open_in_console')[0]?.args).toEqual({ planId: 'pln_alpha' }));
    // A click on a row button must not also open the plan.
    expect(ui.byTestId('plan-detail')).toBeNull();
  });

  it('clicking a plan row opens Plan detail, and Back returns to the queue', async () => {
    const b = mockBackend({ get_plan: () => makePlanDetail() });
    const ui = renderApp();
    const row = await until(() => ui.get('[data-plan-id="pln_alpha"]')!);
    click(row.querySelector('td.mono'));
    const detail = await until(() => ui.byTestId('plan-detail')!);
    expect(detail.dataset.planId).toBe('pln_alpha');
    expect(b.callsOf('get_plan')[0].args).toEqual({ planId: 'pln_alpha' });
    click(ui.byTestId('back'));
    await until(() => expect(ui.allByTestId('queue-row')).toHaveLength(2));
    await until(() => expect(document.activeElement?.getAttribute('data-plan-button')).toBe('pln_alpha'));
  });
});

describe('navigation', () => {
  it('tabs switch views', async () => {
    mockBackend();
    const ui = renderApp();
    await until(() => ui.byTestId('kpi-pending')!);
    click(ui.byTestId('nav-activity'));
    expect(ui.get('h1')!.textContent).toBe('Activity');
    expect(ui.byTestId('nav-activity')!.getAttribute('aria-current')).toBe('page');
    click(ui.byTestId('nav-settings'));
    await until(() => expect(ui.byTestId('save-settings')).not.toBeNull());
    click(ui.byTestId('nav-home'));
    expect(ui.byTestId('kpi-pending')).not.toBeNull();
  });

  it('follows zof://navigate requests from Rust', async () => {
    mockBackend({ get_plan: () => makePlanDetail() });
    const ui = renderApp();
    await until(() => ui.byTestId('kpi-pending')!);

    await push('zof://navigate', { view: 'settings' });
    expect(ui.get('h1')!.textContent).toBe('Settings');

    await push('zof://navigate', { view: 'plan', plan_id: 'pln_alpha' });
    await until(() => expect(ui.byTestId('plan-detail')?.dataset.planId).toBe('pln_alpha'));

    await push('zof://navigate', { view: 'queue' });
    await until(() => expect(document.activeElement?.id).toBe('queue-heading'));

    await push('zof://navigate', { view: 'activity' });
    expect(ui.get('h1')!.textContent).toBe('Activity');
  });

  it('shows receiver status in the top bar', async () => {
    mockBackend({
      get_overview: () =>
        makeOverview({ receiver: { webhook_url: 'http://x', ready: false, reason: 'port 8787 is already in use' } }),
    });
    const ui = renderApp();
    const status = await until(() => ui.byTestId('receiver-status')!);
    expect(status.dataset.ready).toBe('false');
    expect(status.textContent).toContain('Receiver not ready: port 8787 is already in use');
  });

  it('when the receiver could not start, shows its counts as unknown, not zero', async () => {
    mockBackend({
      get_overview: () =>
        makeOverview({
          started: false,
          queue: [],
          kpis: { ...makeOverview().kpis, pending: 0, received_24h: 0 },
          receiver: { webhook_url: 'http://x', ready: false, reason: 'cannot listen on 127.0.0.1:8787' },
        }),
    });
    const ui = renderApp();
    const pending = await until(() => ui.byTestId('kpi-pending')!);
    expect(pending.textContent).toBe('—');
    expect(ui.byTestId('kpi-decision')!.textContent).toBe('—');
    expect(ui.get('.kpis')!.textContent).toContain('Not known until the receiver starts');
    expect(ui.get('.kpis')!.textContent).not.toContain('Queue is clear');
  });

  it('shows the load error with a Retry button', async () => {
    let fail = true;
    mockBackend({
      get_overview: () => {
        if (fail) throw { code: 'db', message: 'The queue database is locked.' };
        return makeOverview();
      },
    });
    const ui = renderApp();
    await until(() => expect(ui.get('[role="alert"]')!.textContent).toContain('The queue database is locked.'));
    fail = false;
    click(ui.get('[role="alert"] button'));
    await until(() => expect(ui.byTestId('kpi-pending')!.textContent).toBe('2'));
  });
});
