import { describe, expect, it } from 'vitest';
import Settings from './Settings.svelte';
import { AppState, appContext } from '../lib/app-state.svelte';
import { click, mockBackend, render, submit, type, until } from '../test/harness';
import { makeAbout, makeOverview, makeSecrets, makeSettings } from '../test/fixtures';

const SECRET = 'whsec_DoNotShowMe_1234567890';

function renderSettings(app = new AppState()) {
  app.overview = makeOverview();
  const ui = render(Settings, {}, appContext(app));
  return { app, ...ui };
}

async function loaded(ui: ReturnType<typeof renderSettings>) {
  await until(() => ui.byTestId('save-settings'));
  await until(() => ui.byTestId('secret-row'));
}

describe('Settings form', () => {
  it('loads the settings into labelled fields', async () => {
    mockBackend({ get_settings: () => makeSettings({ quiet_hours: { start: '22:00', end: '07:00' } }) });
    const ui = renderSettings();
    await loaded(ui);
    const listen = ui.byTestId<HTMLInputElement>('settings-listen')!;
    expect(listen.value).toBe('127.0.0.1:8787');
    expect(ui.get(`label[for="${listen.id}"]`)!.textContent).toBe('Listen address');
    expect(ui.byTestId<HTMLInputElement>('settings-quiet-start')!.value).toBe('22:00');
    expect(ui.byTestId<HTMLTextAreaElement>('settings-allow-orgs')!.value).toBe('org_acme');
    expect(ui.byTestId<HTMLInputElement>('webhook-url')!.value).toBe('http://127.0.0.1:8787/webhooks/zof');
    expect(ui.byTestId('console-example')!.textContent).toBe(
      'https://console.example.test/orgs/org_acme/runs/run_42/plans/pln_alpha',
    );
  });

  it('shows validation messages next to a bad listen address and bad quiet hours, and does not save', async () => {
    const b = mockBackend();
    const ui = renderSettings();
    await loaded(ui);
    type(ui.byTestId('settings-listen'), '127.0.0.1');
    type(ui.byTestId('settings-quiet-start'), '25:00');
    type(ui.byTestId('settings-quiet-end'), '7am');
    type(ui.byTestId('settings-escalation'), '0');
    submit(ui.get('form'));
    await until(() => expect(ui.byTestId('error-listen')!.textContent).toMatch(/Add a port/));
    expect(ui.byTestId('error-quiet-start')!.textContent).toMatch(/HH:MM/);
    expect(ui.byTestId('error-quiet-end')!.textContent).toMatch(/HH:MM/);
    expect(ui.byTestId('error-escalation')!.textContent).toMatch(/greater than 0/);
    expect(ui.byTestId('settings-listen')!.getAttribute('aria-invalid')).toBe('true');
    expect(ui.byTestId('settings-listen')!.getAttribute('aria-describedby')).toBe('set-listen-error');
    expect(document.activeElement).toBe(ui.byTestId('settings-listen'));
    expect(b.callsOf('save_settings')).toHaveLength(0);
  });

  it('saves valid settings and clears earlier errors', async () => {
    const b = mockBackend({ save_settings: (a) => a.settings });
    const ui = renderSettings();
    await loaded(ui);
    type(ui.byTestId('settings-listen'), 'nope');
    click(ui.byTestId('save-settings'));
    await until(() => ui.byTestId('error-listen'));

    type(ui.byTestId('settings-listen'), '127.0.0.1:9000');
    type(ui.byTestId('settings-quiet-start'), '22:00');
    type(ui.byTestId('settings-quiet-end'), '7:00');
    type(ui.byTestId('settings-allow-orgs'), 'org_a\n\norg_b\n');
    type(ui.byTestId('settings-coalesce-window'), '30');
    click(ui.byTestId('settings-start-at-login'));
    click(ui.byTestId('save-settings'));

    await until(() => expect(b.callsOf('save_settings')).toHaveLength(1));
    expect(b.callsOf('save_settings')[0].args.settings).toEqual(
      makeSettings({
        listen: '127.0.0.1:9000',
        quiet_hours: { start: '22:00', end: '07:00' },
        allow_orgs: ['org_a', 'org_b'],
        coalesce_window_secs: 30,
        start_at_login: true,
      }),
    );
    await until(() => expect(ui.byTestId('save-result')!.textContent).toBe('Settings saved.'));
    expect(ui.byTestId('error-listen')).toBeNull();
  });

  it('shows the server-side error message from save_settings', async () => {
    mockBackend({
      save_settings: () => {
        throw { code: 'bind_failed', message: 'Port 9000 is already in use by another program.' };
      },
    });
    const ui = renderSettings();
    await loaded(ui);
    type(ui.byTestId('settings-listen'), '127.0.0.1:9000');
    click(ui.byTestId('save-settings'));
    await until(() =>
      expect(ui.byTestId('save-result')!.textContent).toBe('Port 9000 is already in use by another program.'),
    );
    expect(ui.byTestId('save-result')!.getAttribute('role')).toBe('alert');
  });

  it('mutes for 1 h and unmutes', async () => {
    const app = new AppState();
    const b = mockBackend({
      get_overview: () => makeOverview({ muted_until: new Date(Date.now() + 3600_000).toISOString() }),
    });
    const ui = renderSettings(app);
    await loaded(ui);
    expect(ui.byTestId('mute-toggle')!.textContent!.trim()).toBe('Mute for 1 h');
    click(ui.byTestId('mute-toggle'));
    await until(() => expect(b.callsOf('mute_notifications')[0]?.args).toEqual({ minutes: 60 }));
    await until(() => expect(ui.byTestId('mute-toggle')!.textContent!.trim()).toBe('Unmute'));
    click(ui.byTestId('mute-toggle'));
    await until(() => expect(b.callsOf('mute_notifications')[1]?.args).toEqual({ minutes: 0 }));
  });
});

describe('Secrets', () => {
  it('lists secrets with rotation badge and keychain status', async () => {
    mockBackend({ get_secrets: () => makeSecrets({ keychain: { ok: false, message: 'Secret Service is not running' } }) });
    const ui = renderSettings();
    await loaded(ui);
    const rows = ui.allByTestId('secret-row');
    expect(rows.map((r) => r.dataset.role)).toEqual(['current', 'previous']);
    expect(rows[0].textContent).toContain('sha256:ab12cd34');
    expect(rows[0].textContent).toContain('95 d');
    expect(rows[0].querySelector('[data-testid="due-for-rotation"]')!.textContent).toBe('Due for rotation');
    expect(rows[1].querySelector('[data-testid="due-for-rotation"]')).toBeNull();
    expect(rows[1].textContent).toContain('Never');
    expect(ui.byTestId('keychain-status')!.textContent).toBe('Keychain unavailable: Secret Service is not running');
  });

  it('set_secret sends the secret, clears the input and never renders it', async () => {
    const b = mockBackend({ set_secret: () => makeSecrets() });
    const ui = renderSettings();
    await loaded(ui);
    const input = ui.byTestId<HTMLInputElement>('secret-input')!;
    expect(input.type).toBe('password');
    type(input, SECRET);
    type(ui.byTestId('overlap-hours'), '48');
    click(ui.byTestId('secret-submit'));
    await until(() => expect(b.callsOf('set_secret')[0]?.args).toEqual({ secret: SECRET, overlapHours: 48 }));
    await until(() => expect(ui.byTestId('secret-status')!.textContent).toMatch(/Secret saved/));
    expect(input.value).toBe('');
    expect(document.documentElement.outerHTML).not.toContain(SECRET);
    expect(document.body.textContent).not.toContain(SECRET);
  });

  it('clears the input and shows the error when set_secret fails', async () => {
    mockBackend({
      set_secret: () => {
        throw { code: 'keychain', message: 'The keychain refused to store the secret.' };
      },
    });
    const ui = renderSettings();
    await loaded(ui);
    type(ui.byTestId('secret-input'), SECRET);
    click(ui.byTestId('secret-submit'));
    await until(() => expect(ui.byTestId('secret-status')!.textContent).toBe('The keychain refused to store the secret.'));
    expect(ui.byTestId<HTMLInputElement>('secret-input')!.value).toBe('');
    expect(document.documentElement.outerHTML).not.toContain(SECRET);
  });

  it('does not call set_secret with an empty secret or bad overlap', async () => {
    const b = mockBackend({ set_secret: () => makeSecrets() });
    const ui = renderSettings();
    await loaded(ui);
    click(ui.byTestId('secret-submit'));
    await until(() => expect(ui.target.textContent).toContain('Paste the webhook secret first.'));
    type(ui.byTestId('secret-input'), SECRET);
    type(ui.byTestId('overlap-hours'), '-5');
    click(ui.byTestId('secret-submit'));
    await until(() => expect(ui.target.textContent).toContain('Enter a whole number of hours'));
    expect(b.callsOf('set_secret')).toHaveLength(0);
  });

  it('generate_secret shows the clipboard message, not a secret', async () => {
    const b = mockBackend({ generate_secret: () => makeSecrets() });
    const ui = renderSettings();
    await loaded(ui);
    click(ui.byTestId('generate-secret'));
    await until(() => expect(b.callsOf('generate_secret')[0]?.args).toEqual({ overlapHours: 24 }));
    await until(() =>
      expect(ui.byTestId('secret-status')!.textContent).toBe(
        'A new secret was copied to your clipboard: paste it into Admin Center now',
      ),
    );
  });

  it('revoking the previous secret needs a confirm step', async () => {
    const b = mockBackend({
      revoke_previous_secret: () => makeSecrets({ secrets: makeSecrets().secrets.slice(0, 1) }),
    });
    const ui = renderSettings();
    await loaded(ui);
    click(ui.byTestId('revoke-previous'));
    expect(b.callsOf('revoke_previous_secret')).toHaveLength(0);
    click(ui.byTestId('revoke-previous-cancel'));
    expect(ui.byTestId('revoke-previous-confirm')).toBeNull();

    click(ui.byTestId('revoke-previous'));
    await until(() => expect(document.activeElement).toBe(ui.byTestId('revoke-previous-confirm')));
    click(ui.byTestId('revoke-previous-confirm'));
    await until(() => expect(b.callsOf('revoke_previous_secret')).toHaveLength(1));
    await until(() => expect(ui.allByTestId('secret-row')).toHaveLength(1));
    expect(ui.byTestId<HTMLButtonElement>('revoke-previous')!.disabled).toBe(true);
  });

  it('Copy calls copy_webhook_url', async () => {
    const b = mockBackend();
    const ui = renderSettings();
    await loaded(ui);
    click(ui.byTestId('copy-webhook-url'));
    await until(() => expect(b.callsOf('copy_webhook_url')).toHaveLength(1));
    await until(() => expect(ui.target.textContent).toContain('Copied to the clipboard.'));
  });
});

describe('About', () => {
  it('shows the version, the build and the data, settings and logs folders', async () => {
    mockBackend({ get_about: () => makeAbout() });
    const ui = renderSettings();
    await until(() => ui.byTestId('about'));
    expect(ui.byTestId('about-version')!.textContent).toBe('0.1.0');
    expect(ui.byTestId('about-build')!.textContent).toBe('5ae0a6f1c2d3 · release');
    expect(ui.byTestId('about-os')!.textContent).toBe('linux x86_64');
    expect(ui.byTestId('about-data-dir')!.textContent).toBe('/home/ada/.local/share/zof-approvals');
    expect(ui.byTestId('about-config-dir')!.textContent).toBe('/home/ada/.config/zof-approvals');
    expect(ui.byTestId('about-log-dir')!.textContent).toBe('/home/ada/.local/state/zof-approvals/logs');
    expect(ui.get('#sec-about')!.textContent).toBe('About');
  });

  it('Open logs folder calls open_logs_folder and says it opened', async () => {
    const b = mockBackend({ get_about: () => makeAbout(), open_logs_folder: () => null });
    const ui = renderSettings();
    await until(() => ui.byTestId('about'));
    click(ui.byTestId('open-logs-folder'));
    await until(() => expect(b.callsOf('open_logs_folder')).toEqual([{ cmd: 'open_logs_folder', args: {} }]));
    await until(() => expect(ui.byTestId('about-result')!.textContent).toBe('The logs folder was opened.'));
  });

  it('Copy diagnostics calls copy_diagnostics and says the text went to the clipboard', async () => {
    const b = mockBackend({ get_about: () => makeAbout(), copy_diagnostics: () => null });
    const ui = renderSettings();
    await until(() => ui.byTestId('about'));
    click(ui.byTestId('copy-diagnostics'));
    await until(() => expect(b.callsOf('copy_diagnostics')).toHaveLength(1));
    await until(() => expect(ui.byTestId('about-result')!.textContent).toBe('Diagnostics copied to the clipboard.'));
    expect(ui.byTestId('about-result')!.getAttribute('role')).toBe('status');
    expect(ui.byTestId('copy-diagnostics')!.getAttribute('aria-describedby')).toBe('diagnostics-hint');
  });

  it('a folder that cannot be opened is reported as an alert with the reason', async () => {
    mockBackend({
      get_about: () => makeAbout(),
      open_logs_folder: () => {
        throw { code: 'open_failed', message: 'could not open the logs folder: no file manager is installed' };
      },
    });
    const ui = renderSettings();
    await until(() => ui.byTestId('about'));
    click(ui.byTestId('open-logs-folder'));
    await until(() =>
      expect(ui.byTestId('about-result')!.textContent).toBe('could not open the logs folder: no file manager is installed'),
    );
    expect(ui.byTestId('about-result')!.getAttribute('role')).toBe('alert');
    expect(ui.byTestId<HTMLButtonElement>('open-logs-folder')!.disabled).toBe(false);
  });

  it('an About that cannot load says why and loads on retry', async () => {
    let fail = true;
    mockBackend({
      get_about: () => {
        if (fail) throw { code: 'paths', message: 'cannot find the home directory' };
        return makeAbout();
      },
    });
    const ui = renderSettings();
    await until(() => expect(ui.target.textContent).toContain('Could not load the version and folders: cannot find the home directory'));
    fail = false;
    click(ui.byTestId('about-retry'));
    await until(() => expect(ui.byTestId('about-version')!.textContent).toBe('0.1.0'));
  });

  it('edits the display name, with the default user@host as placeholder, and refuses a control character', async () => {
    const b = mockBackend({
      get_settings: () => makeSettings({ default_display_name: 'alice@laptop-7' }),
      save_settings: (a) => a.settings,
    });
    const ui = renderSettings();
    await loaded(ui);
    const input = ui.byTestId<HTMLInputElement>('settings-display-name')!;
    expect(input.placeholder).toBe('alice@laptop-7');
    expect(input.value).toBe('');
    expect(ui.target.textContent).toContain('Your name in the audit log and to teammates');
    type(input, 'Alice\u0007');
    click(ui.byTestId('save-settings'));
    await until(() => ui.byTestId('error-display-name'));
    expect(b.callsOf('save_settings')).toHaveLength(0);
    type(input, '  Alice Martin ');
    click(ui.byTestId('save-settings'));
    await until(() => expect(b.callsOf('save_settings')).toHaveLength(1));
    expect(b.callsOf('save_settings')[0].args.settings).toMatchObject({ display_name: 'Alice Martin' });
  });
});
