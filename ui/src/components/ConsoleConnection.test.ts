import { describe, expect, it } from 'vitest';
import App from '../App.svelte';
import Activity from '../views/Activity.svelte';
import PlanDetail from '../views/PlanDetail.svelte';
import Settings from '../views/Settings.svelte';
import { AppState, appContext } from '../lib/app-state.svelte';
import { click, mockBackend, render, submit, type, until } from '../test/harness';
import { makeConsoleStatus, makeDelivery, makeOverview, makePlan, makePlanDetail, makeSettings } from '../test/fixtures';

const TOKEN = 'zof_pat_DoNotShowMe_123';

describe('Console connection', () => {
  it('keeps a pasted token in the keychain through Rust, never shows it, and saves the URL', async () => {
    const b = mockBackend({
      set_console_token: () => '0123456789ab',
      save_settings: (args) => args.settings,
    });
    const app = new AppState();
    app.overview = makeOverview();
    const ui = render(Settings, {}, appContext(app));
    await until(() => ui.byTestId('console-connection'));
    await until(() => ui.byTestId('console-state'));
    type(ui.byTestId('console-api-url'), 'https://api.zof.example');
    type(ui.byTestId('console-token'), ` ${TOKEN}\n`);
    submit(ui.byTestId('console-connection'));
    await until(() => expect(b.callsOf('set_console_token')[0]?.args).toEqual({ token: TOKEN }));
    await until(() => expect(b.callsOf('save_settings')).toHaveLength(1));
    const saved = b.callsOf('save_settings')[0].args.settings as Record<string, unknown>;
    expect(saved).toMatchObject({ console_api_url: 'https://api.zof.example', reconcile_interval_secs: 300, listen: '127.0.0.1:8787' });
    await until(() => expect(ui.byTestId('console-result')!.textContent).toContain('0123456789ab'));
    expect(ui.byTestId<HTMLInputElement>('console-token')!.value).toBe('');
    expect(document.documentElement.outerHTML).not.toContain(TOKEN);
  });

  it('refuses an interval under 30 seconds without saving', async () => {
    const b = mockBackend();
    const app = new AppState();
    app.overview = makeOverview();
    const ui = render(Settings, {}, appContext(app));
    await until(() => ui.byTestId('console-state'));
    type(ui.byTestId('console-interval'), '10');
    submit(ui.byTestId('console-connection'));
    await until(() => expect(ui.byTestId('console-result')!.textContent).toContain('30 seconds'));
    expect(b.callsOf('save_settings')).toHaveLength(0);
  });

  it('subscribes this app in Zof and shows only the secret fingerprint', async () => {
    const b = mockBackend({
      get_settings: () => makeSettings({ public_url: 'https://laptop.example.net' }),
      subscribe_console: () => ({ webhook_id: 'wh_1', url: 'https://laptop.example.net/webhooks/zof', secret_fingerprint: 'fedcba987654' }),
    });
    const app = new AppState();
    app.overview = makeOverview();
    const ui = render(Settings, {}, appContext(app));
    await until(() => ui.byTestId('console-state'));
    click(ui.byTestId('console-subscribe'));
    await until(() => expect(b.callsOf('subscribe_console')[0]?.args).toEqual({ publicUrl: 'https://laptop.example.net' }));
    await until(() => expect(ui.byTestId('console-result')!.textContent).toContain('fedcba987654'));
  });

  it('"Check with Console" on the home view reconciles and says what changed', async () => {
    const b = mockBackend({
      get_console_status: () => makeConsoleStatus({ state: 'ok', api_url: 'https://api.zof.example' }),
      check_with_console: () => ({ checked: 3, resolved: 1, added: 1, flagged: 0, errors: 0 }),
    });
    const ui = render(App, { app: new AppState() });
    click(await until(() => ui.byTestId('check-with-console')));
    await until(() => expect(b.callsOf('check_with_console')).toHaveLength(1));
    await until(() =>
      expect(ui.byTestId('check-result')!.textContent).toBe('Checked 3 plans with the Console: 1 resolved there, 1 added.'),
    );
  });

  it('without a Console connection there is no "Check with Console"', async () => {
    mockBackend();
    const ui = render(App, { app: new AppState() });
    await until(() => ui.byTestId('kpi-pending'));
    expect(ui.byTestId('check-with-console')).toBeNull();
  });

  it('first run offers the Console instead', async () => {
    mockBackend({ get_overview: () => makeOverview({ first_run: true, queue: [] }) });
    const ui = render(App, { app: new AppState() });
    click(await until(() => ui.byTestId('first-run-console')));
    await until(() => ui.byTestId('console-connection'));
  });

  it('Activity shows the Console connection\'s lines as Console, not as deliveries', async () => {
    mockBackend({
      list_activity: () => [
        makeDelivery({
          verdict: 'ignored',
          code: 'console_disagrees',
          status: 200,
          reason: 'the Console disagrees about plan `pln_alpha`: it names run `run_9` there, `run_42` here',
        }),
      ],
    });
    const app = new AppState();
    app.overview = makeOverview();
    const ui = render(Activity, {}, appContext(app));
    const row = await until(() => ui.byTestId('activity-row'));
    expect(row.querySelector('[data-testid="verdict"]')!.textContent!.trim()).toBe('Console');
    expect(ui.byTestId('activity-status')!.textContent).toBe('—');
    expect(row.getAttribute('title')).toContain('Console: the Console disagrees');
  });

  it('a plan resolved in the Console says who decided it', async () => {
    const resolution = 'Approved in Console by alice@example.com at 2026-05-20 12:05 UTC';
    mockBackend({
      get_plan: () => makePlanDetail({ plan: makePlan({ state: 'resolved', console_status: 'approved', resolution, source: 'console' }) }),
    });
    const app = new AppState();
    app.overview = makeOverview();
    app.settings = makeSettings();
    const ui = render(PlanDetail, { planId: 'pln_alpha' }, appContext(app));
    await until(() => expect(ui.byTestId('plan-resolution')!.textContent).toBe(resolution));
    expect(ui.byTestId('plan-state')!.textContent!.trim()).toBe('Resolved in Console');
    expect(ui.byTestId('field-source')).not.toBeNull();
  });
});
