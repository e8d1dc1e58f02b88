/** Mount components against a mocked Tauri IPC and record every command. */
import { flushSync, mount, unmount, type Component } from 'svelte';
import { vi } from 'vitest';
import { mockIPC } from '@tauri-apps/api/mocks';
import { emit } from '@tauri-apps/api/event';
import type { InvokeArgs } from '@tauri-apps/api/core';
import { makeConsoleStatus, makeOverview, makeRelayView, makeReview, makeSecrets, makeSettings } from './fixtures';

export interface Call {
  cmd: string;
  args: Record<string, unknown>;
}

export type Handler = (args: Record<string, unknown>) => unknown;

/** Defaults for every command; override per test. A handler that throws rejects the invoke. */
export function mockBackend(overrides: Record<string, Handler> = {}) {
  const calls: Call[] = [];
  const handlers: Record<string, Handler> = {
    get_overview: () => makeOverview(),
    get_settings: () => makeSettings(),
    get_secrets: () => makeSecrets(),
    list_activity: () => [],
    list_audit: () => [],
    get_review: (args) => makeReview({ plan: { plan_id: String(args.planId ?? 'pln_alpha'), state: 'pending' } }),
    mark_handled: () => null,
    snooze_plan: () => null,
    open_in_console: () => null,
    mute_notifications: () => null,
    copy_webhook_url: () => null,
    get_console_status: () => makeConsoleStatus(),
    get_relay_status: () => makeRelayView(),
    ...overrides,
  };
  mockIPC(
    (cmd: string, payload?: InvokeArgs) => {
      const args = (payload ?? {}) as Record<string, unknown>;
      calls.push({ cmd, args });
      const h = handlers[cmd];
      if (!h) throw { code: 'unknown_command', message: `no mock for ${cmd}` };
      return h(args);
    },
    { shouldMockEvents: true },
  );
  return {
    calls,
    handlers,
    callsOf: (cmd: string) => calls.filter((c) => c.cmd === cmd),
  };
}

/** Push an event as Rust would. */
export async function push(event: string, payload: unknown): Promise<void> {
  await emit(event, payload);
  flushSync();
}

export function render<P extends Record<string, unknown>>(
  component: Component<P>,
  props: P = {} as P,
  context?: Map<unknown, unknown>,
) {
  const target = document.createElement('div');
  document.body.appendChild(target);
  const instance = mount(component, { target, props, context });
  flushSync();
  return {
    target,
    get: <T extends Element = HTMLElement>(sel: string) => target.querySelector<T>(sel),
    all: <T extends Element = HTMLElement>(sel: string) => [...target.querySelectorAll<T>(sel)],
    byTestId: <T extends Element = HTMLElement>(id: string) => target.querySelector<T>(`[data-testid="${id}"]`),
    allByTestId: <T extends Element = HTMLElement>(id: string) => [...target.querySelectorAll<T>(`[data-testid="${id}"]`)],
    destroy: () => unmount(instance),
  };
}

/**
 * Wait until `fn` neither throws nor returns null (querySelector's "not
 * found"), flushing Svelte between tries; resolves to its result. Assertions
 * (returning undefined) pass as soon as they hold.
 */
export async function until<T>(fn: () => T, timeout = 2000): Promise<Exclude<T, null>> {
  return vi.waitFor(
    () => {
      flushSync();
      const v = fn();
      if (v === null) throw new Error('not there yet');
      return v as Exclude<T, null>;
    },
    { timeout, interval: 5 },
  );
}

/** Let pending IPC promises (e.g. `listen` registration) resolve. */
export async function settle(ms = 0): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
  flushSync();
}

export function click(el: Element | null): void {
  if (!el) throw new Error('element not found');
  (el as HTMLElement).click();
  flushSync();
}

/** Type into an input the way a person would (fires `input`). */
export function type(el: Element | null, value: string): void {
  if (!el) throw new Error('element not found');
  const input = el as HTMLInputElement | HTMLTextAreaElement;
  input.value = value;
  input.dispatchEvent(new Event('input', { bubbles: true }));
  flushSync();
}

export function submit(form: Element | null): void {
  if (!form) throw new Error('form not found');
  (form as HTMLFormElement).requestSubmit();
  flushSync();
}
