import { flushSync } from 'svelte';
import { describe, expect, it } from 'vitest';
import Settings from '../views/Settings.svelte';
import App from '../App.svelte';
import { AppState, appContext } from '../lib/app-state.svelte';
import { validateRelayForm } from '../lib/validate';
import { click, mockBackend, push, render, submit, type, until } from '../test/harness';
import { makeOverview, makeRelayView, makeSettings } from '../test/fixtures';
import { EVENTS, type RelaySettings } from '../lib/api';

const PASSWORD = 'nats-DoNotShowMe-4242';

function choose(el: Element | null, value: string): void {
  if (!el) throw new Error('element not found');
  (el as HTMLSelectElement).value = value;
  el.dispatchEvent(new Event('change', { bubbles: true }));
  flushSync();
}

function relay(over: Partial<RelaySettings> = {}): RelaySettings {
  return { url: '', creds_file: '', user: '', ca_file: '', stream: 'ZOF', consumer: '', ...over };
}

function settingsApp() {
  const app = new AppState();
  app.overview = makeOverview({ relay: makeRelayView() });
  return app;
}

describe('Settings → Team relay', () => {
  it('keeps the typed password in the keychain through Rust, never shows it, and saves the rest', async () => {
    const b = mockBackend({
      get_settings: () => makeSettings({ relay: relay() }),
      set_relay_password: () => 'a1b2c3d4e5f6',
      save_settings: (args) => args.settings,
      get_relay_status: () => makeRelayView({ state: 'connected', text: 'connected', consumer: 'alice_laptop', password_fingerprint: 'a1b2c3d4e5f6' }),
    });
    const ui = render(Settings, {}, appContext(settingsApp()));
    await until(() => ui.byTestId('team-relay'));
    await until(() => expect(b.callsOf('get_relay_status').length).toBeGreaterThan(0));
    expect(ui.byTestId<HTMLInputElement>('relay-consumer')!.placeholder).toBe('alice_laptop');
    type(ui.byTestId('relay-url'), ' nats://10.0.0.5:4222, nats://10.0.0.6:4222 ');
    choose(ui.byTestId('relay-auth'), 'user');
    type(ui.byTestId('relay-user'), 'alice');
    type(ui.byTestId('relay-password'), PASSWORD);
    submit(ui.byTestId('team-relay'));
    await until(() => expect(b.callsOf('set_relay_password')[0]?.args).toEqual({ password: PASSWORD }));
    await until(() => expect(b.callsOf('save_settings')).toHaveLength(1));
    const saved = b.callsOf('save_settings')[0].args.settings as Record<string, unknown>;
    expect(saved.relay).toEqual(relay({ url: 'nats://10.0.0.5:4222,nats://10.0.0.6:4222', user: 'alice' }));
    expect(saved.listen).toBe('127.0.0.1:8787');
    await until(() => expect(ui.byTestId('relay-result')!.textContent).toContain('a1b2c3d4e5f6'));
    await until(() => expect(ui.byTestId('relay-state')!.textContent).toContain('relay: connected'));
    expect(ui.byTestId<HTMLInputElement>('relay-password')!.value).toBe('');
    expect(ui.byTestId<HTMLInputElement>('relay-password')!.placeholder).toBe('set (a1b2c3d4e5f6)');
    expect(document.documentElement.outerHTML).not.toContain(PASSWORD);
    expect(JSON.stringify(b.callsOf('save_settings'))).not.toContain(PASSWORD);
  });

  it('Disconnect saves the relay without its URL', async () => {
    const b = mockBackend({
      get_settings: () => makeSettings({ relay: relay({ url: 'nats://10.0.0.5:4222', consumer: 'desk' }) }),
      save_settings: (args) => args.settings,
    });
    const ui = render(Settings, {}, appContext(settingsApp()));
    await until(() => expect(ui.byTestId<HTMLInputElement>('relay-url')!.value).toBe('nats://10.0.0.5:4222'));
    click(ui.byTestId('relay-disconnect'));
    await until(() => expect(b.callsOf('save_settings')).toHaveLength(1));
    expect((b.callsOf('save_settings')[0].args.settings as { relay: RelaySettings }).relay).toEqual(relay({ consumer: 'desk' }));
    await until(() => expect(ui.byTestId('relay-result')!.textContent).toContain('Disconnected'));
  });

  it('refuses an address that is not NATS, or holds a password, without saving', async () => {
    const b = mockBackend({ get_settings: () => makeSettings({ relay: relay() }) });
    const ui = render(Settings, {}, appContext(settingsApp()));
    await until(() => ui.byTestId('team-relay'));
    type(ui.byTestId('relay-url'), 'https://nats.example.com');
    submit(ui.byTestId('team-relay'));
    await until(() => expect(ui.byTestId('relay-result')!.textContent).toContain('nats:// or tls://'));
    type(ui.byTestId('relay-url'), 'nats://alice:secret@nats.example.com:4222');
    submit(ui.byTestId('team-relay'));
    await until(() => expect(ui.byTestId('relay-result')!.textContent).toContain('no user or password'));
    expect(b.callsOf('save_settings')).toHaveLength(0);
  });

  it('the status line follows the pushed overviews', async () => {
    mockBackend({
      get_settings: () => makeSettings({ relay: relay({ url: 'nats://10.0.0.5:4222' }) }),
      get_overview: () => makeOverview({ relay: makeRelayView({ state: 'catching_up', text: 'catching up 42', pending: 42 }) }),
      get_relay_status: () => makeRelayView({ state: 'catching_up', text: 'catching up 42', pending: 42 }),
    });
    const ui = render(App, { app: new AppState() });
    await until(() => expect(ui.byTestId('topbar-relay')!.textContent).toBe('relay: catching up 42'));
    await push(EVENTS.overview, makeOverview({ relay: makeRelayView({ state: 'connected', text: 'connected' }) }));
    await until(() => expect(ui.byTestId('topbar-relay')!.textContent).toBe('relay: connected'));
    await push(EVENTS.overview, makeOverview({ relay: makeRelayView() }));
    await until(() => expect(ui.byTestId('topbar-relay')).toBeNull());
  });

  it('validates like the core', () => {
    const form = { url: 'tls://a:4222', auth: 'user' as const, creds_file: '/x', user: ' bob ', ca_file: '', stream: '', consumer: '' };
    expect(validateRelayForm(form, false)).toEqual({ ok: false, error: 'Enter the NATS password.' });
    expect(validateRelayForm(form, true)).toEqual({ ok: true, relay: relay({ url: 'tls://a:4222', user: 'bob' }) });
    expect(validateRelayForm({ ...form, stream: 'Z.OF' }, true).ok).toBe(false);
    expect(validateRelayForm({ ...form, consumer: 'a@b' }, true).ok).toBe(false);
    expect(validateRelayForm({ ...form, url: '' }, false).ok).toBe(true);
  });
});
