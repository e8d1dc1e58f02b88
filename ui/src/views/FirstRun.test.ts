import { describe, expect, it } from 'vitest';
import App from '../App.svelte';
import { AppState } from '../lib/app-state.svelte';
import { click, mockBackend, push, render, type, until } from '../test/harness';
import { makeOverview, makeSecrets } from '../test/fixtures';

describe('First run setup', () => {
  it('sets the pasted secret, never shows it, and Home appears once Rust reports first_run false', async () => {
    const SECRET = 'whsec_first_run_secret_value';
    let secretSet = false;
    const b = mockBackend({
      get_overview: () => (secretSet ? makeOverview() : makeOverview({ first_run: true, queue: [] })),
      set_secret: () => {
        secretSet = true;
        return makeSecrets({ secrets: makeSecrets().secrets.slice(0, 1) });
      },
    });
    const ui = render(App, { app: new AppState() });
    await until(() => ui.byTestId('first-run'));
    expect(ui.byTestId('overlap-hours')).toBeNull();

    type(ui.byTestId('secret-input'), `  ${SECRET}\n`);
    click(ui.byTestId('secret-submit'));
    await until(() => expect(b.callsOf('set_secret')[0]?.args).toEqual({ secret: SECRET, overlapHours: 24 }));
    expect(ui.byTestId<HTMLInputElement>('secret-input')!.value).toBe('');
    expect(document.documentElement.outerHTML).not.toContain(SECRET);

    await push('zof://overview', makeOverview({ first_run: false }));
    await until(() => expect(ui.byTestId('first-run')).toBeNull());
    expect(ui.byTestId('kpi-pending')!.textContent).toBe('2');
  });

  it('can generate a secret instead', async () => {
    const b = mockBackend({
      get_overview: () => makeOverview({ first_run: true, queue: [] }),
      generate_secret: () => makeSecrets(),
    });
    const ui = render(App, { app: new AppState() });
    await until(() => ui.byTestId('first-run'));
    click(ui.byTestId('generate-secret'));
    await until(() => expect(b.callsOf('generate_secret')).toHaveLength(1));
    await until(() => expect(ui.byTestId('secret-status')!.textContent).toContain('paste it into Admin Center now'));
  });

  it('copies the webhook URL through Rust', async () => {
    const b = mockBackend({ get_overview: () => makeOverview({ first_run: true, queue: [] }) });
    const ui = render(App, { app: new AppState() });
    await until(() => ui.byTestId('first-run'));
    click(ui.byTestId('copy-webhook-url'));
    await until(() => expect(b.callsOf('copy_webhook_url')).toHaveLength(1));
  });
});
