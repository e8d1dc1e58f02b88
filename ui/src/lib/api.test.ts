import { describe, expect, it, vi } from 'vitest';
import { emit } from '@tauri-apps/api/event';
import { ApiError, api, errorMessage, onDelivery, onOverview, subscription, toApiError } from './api';
import { mockBackend } from '../test/harness';
import { makeDelivery, makeOverview, makeSettings } from '../test/fixtures';

describe('command wrappers', () => {
  it('send the contract command names with camelCase argument keys', async () => {
    const b = mockBackend({
      get_plan: () => ({}),
      set_secret: () => ({}),
      generate_secret: () => ({}),
      revoke_previous_secret: () => ({}),
      save_settings: (a) => a.settings,
    });
    await api.getOverview();
    await api.getPlan('pln_1');
    await api.listActivity(50);
    await api.markHandled('pln_1');
    await api.snoozePlan('pln_1', 60);
    await api.openInConsole('pln_1');
    await api.getSettings();
    const saved = await api.saveSettings(makeSettings({ listen: '127.0.0.1:1' }));
    await api.getSecrets();
    await api.setSecret('s3cret', 24);
    await api.generateSecret(12);
    await api.revokePreviousSecret();
    await api.muteNotifications(0);
    await api.copyWebhookUrl();

    expect(saved.listen).toBe('127.0.0.1:1');
    expect(b.calls.map((c) => [c.cmd, c.args])).toEqual([
      ['get_overview', {}],
      ['get_plan', { planId: 'pln_1' }],
      ['list_activity', { limit: 50 }],
      ['mark_handled', { planId: 'pln_1' }],
      ['snooze_plan', { planId: 'pln_1', minutes: 60 }],
      ['open_in_console', { planId: 'pln_1' }],
      ['get_settings', {}],
      ['save_settings', { settings: makeSettings({ listen: '127.0.0.1:1' }) }],
      ['get_secrets', {}],
      ['set_secret', { secret: 's3cret', overlapHours: 24 }],
      ['generate_secret', { overlapHours: 12 }],
      ['revoke_previous_secret', {}],
      ['mute_notifications', { minutes: 0 }],
      ['copy_webhook_url', {}],
    ]);
  });

  it('rethrow Rust errors as ApiError carrying code and message', async () => {
    mockBackend({
      mark_handled: () => {
        throw { code: 'not_found', message: 'That plan is no longer in the queue.' };
      },
    });
    const err = await api.markHandled('gone').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ code: 'not_found', message: 'That plan is no longer in the queue.' });
  });
});

describe('error normalisation', () => {
  it('handles the shapes invoke can reject with', () => {
    expect(toApiError({ code: 'bad', message: 'Bad thing' })).toMatchObject({ code: 'bad', message: 'Bad thing' });
    expect(toApiError('plain string from Tauri')).toMatchObject({ code: 'unknown', message: 'plain string from Tauri' });
    expect(toApiError(new Error('boom')).message).toBe('boom');
    expect(errorMessage(undefined)).toMatch(/Something went wrong/);
    expect(errorMessage({ code: 'x' })).toMatch(/Something went wrong/);
  });
});

describe('events', () => {
  it('deliver payloads to handlers and stop after cleanup', async () => {
    mockBackend();
    const seen: number[] = [];
    const stop = subscription(onOverview((o) => seen.push(o.kpis.pending)));
    await vi.waitFor(async () => {
      await emit('zof://overview', makeOverview({ queue: [] }));
      expect(seen.length).toBeGreaterThan(0);
    });
    expect(seen[seen.length - 1]).toBe(0);
    stop();
    await new Promise((r) => setTimeout(r, 0));
    const before = seen.length;
    await emit('zof://overview', makeOverview());
    expect(seen.length).toBe(before);
  });

  it('unsubscribes even when cleanup runs before listen resolved', async () => {
    mockBackend();
    const handler = vi.fn();
    const stop = subscription(onDelivery(handler));
    stop();
    await new Promise((r) => setTimeout(r, 0));
    await emit('zof://delivery', makeDelivery());
    expect(handler).not.toHaveBeenCalled();
  });
});
