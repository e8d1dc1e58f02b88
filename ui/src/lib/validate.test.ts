import { describe, expect, it } from 'vitest';
import {
  formFromSettings,
  normalizeHHMM,
  parseOrgList,
  parsePositiveInt,
  validateListen,
  validateOverlapHours,
  validateSettingsForm,
  type SettingsForm,
} from './validate';
import { makeSettings } from '../test/fixtures';

describe('validateListen', () => {
  it.each(['127.0.0.1:8787', '0.0.0.0:1', 'localhost:65535', '[::1]:8787', '[fe80::1]:443', ' 127.0.0.1:8787 '])(
    'accepts %s',
    (v) => expect(validateListen(v)).toBeNull(),
  );

  it.each([
    ['', /host:port/],
    ['127.0.0.1', /Add a port/],
    ['127.0.0.1:', /Add a port/],
    [':8787', /Add a host/],
    ['127.0.0.1:0', /between 1 and 65535/],
    ['127.0.0.1:70000', /between 1 and 65535/],
    ['127.0.0.1:http', /must be a number/],
    ['300.0.0.1:8787', /not a valid IPv4/],
    ['1.2.3:8787', /not a valid IPv4/],
    ['::1:8787', /brackets/],
    ['[::1]', /Add a port/],
    ['bad host:80', /spaces/],
    ['exa_mple:80', /not a valid host/],
  ])('rejects %j', (v, msg) => {
    expect(validateListen(v)).toMatch(msg);
  });
});

describe('time and number fields', () => {
  it('normalizes HH:MM', () => {
    expect(normalizeHHMM('22:00')).toBe('22:00');
    expect(normalizeHHMM('7:05')).toBe('07:05');
    expect(normalizeHHMM('00:00')).toBe('00:00');
    expect(normalizeHHMM('24:00')).toBeNull();
    expect(normalizeHHMM('12:60')).toBeNull();
    expect(normalizeHHMM('1200')).toBeNull();
    expect(normalizeHHMM('noon')).toBeNull();
  });

  it('parses positive integers only', () => {
    expect(parsePositiveInt('30')).toBe(30);
    expect(parsePositiveInt(' 5 ')).toBe(5);
    expect(parsePositiveInt('0')).toBeNull();
    expect(parsePositiveInt('-3')).toBeNull();
    expect(parsePositiveInt('2.5')).toBeNull();
    expect(parsePositiveInt('1e3')).toBeNull();
    expect(parsePositiveInt('')).toBeNull();
  });

  it('validates overlap hours', () => {
    expect(validateOverlapHours('24')).toBeNull();
    expect(validateOverlapHours('0')).toBeNull();
    expect(validateOverlapHours(48)).toBeNull();
    expect(validateOverlapHours('-1')).toMatch(/whole number/);
    expect(validateOverlapHours('1.5')).toMatch(/whole number/);
    expect(validateOverlapHours('9000')).toMatch(/0 to 8760/);
  });

  it('parses the organization allow-list one per line', () => {
    expect(parseOrgList('org_a\n\n  org_b  \r\norg_a\n')).toEqual(['org_a', 'org_b']);
    expect(parseOrgList('')).toEqual([]);
  });
});

describe('validateSettingsForm', () => {
  const good = (): SettingsForm => formFromSettings(makeSettings());

  it('round-trips valid settings', () => {
    const s = makeSettings({ quiet_hours: { start: '22:00', end: '07:00' } });
    const r = validateSettingsForm(formFromSettings(s));
    expect(r).toEqual({ ok: true, settings: s });
  });

  it('turns empty quiet hours into null and normalizes times', () => {
    const r1 = validateSettingsForm({ ...good(), quiet_start: '', quiet_end: '' });
    expect(r1.ok && r1.settings.quiet_hours).toBeNull();
    const r2 = validateSettingsForm({ ...good(), quiet_start: '7:00', quiet_end: '9:30' });
    expect(r2.ok && r2.settings.quiet_hours).toEqual({ start: '07:00', end: '09:30' });
  });

  it('reports every bad field with a message', () => {
    const r = validateSettingsForm({
      ...good(),
      listen: 'localhost',
      quiet_start: '25:00',
      quiet_end: '',
      escalation_minutes: '0',
      coalesce_threshold: 'three',
      coalesce_window_secs: '5000',
      console_url_template: 'ftp://x/{plan}',
      allow_orgs: 'org_a\norg b',
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.listen).toMatch(/Add a port/);
    expect(r.errors.quiet_start).toMatch(/HH:MM/);
    expect(r.errors.quiet_end).toMatch(/end time too/);
    expect(r.errors.escalation_minutes).toMatch(/greater than 0/);
    expect(r.errors.coalesce_threshold).toMatch(/greater than 0/);
    expect(r.errors.coalesce_window_secs).toMatch(/from 1 to 3600/);
    expect(r.errors.console_url_template).toMatch(/Unknown placeholder \{plan\}/);
    expect(r.errors.allow_orgs).toMatch(/Line 2/);
  });

  it('rejects identical quiet hours start and end', () => {
    const r = validateSettingsForm({ ...good(), quiet_start: '22:00', quiet_end: '22:00' });
    expect(!r.ok && r.errors.quiet_end).toMatch(/different time/);
  });

  it('rejects a non-http console template but allows an empty one', () => {
    const r = validateSettingsForm({ ...good(), console_url_template: 'javascript:alert(1)' });
    expect(!r.ok && r.errors.console_url_template).toMatch(/https:\/\//);
    const empty = validateSettingsForm({ ...good(), console_url_template: '' });
    expect(empty.ok).toBe(true);
  });

  it('trims and de-duplicates what it sends', () => {
    const r = validateSettingsForm({ ...good(), listen: ' 127.0.0.1:9000 ', allow_orgs: 'a\na\n b ' });
    expect(r.ok && r.settings.listen).toBe('127.0.0.1:9000');
    expect(r.ok && r.settings.allow_orgs).toEqual(['a', 'b']);
  });
});
