import { describe, expect, it } from 'vitest';
import { humanizeDuration, isFuture, plural, timeAgo, timeUntil } from './format';

describe('humanizeDuration', () => {
  it.each([
    [0, '< 1 min'],
    [59, '< 1 min'],
    [60, '1 min'],
    [59 * 60 + 59, '59 min'],
    [3600, '1 h'],
    [3900, '1 h 5 min'],
    [23 * 3600 + 59 * 60, '23 h 59 min'],
    [86400, '1 d'],
    [2 * 86400 + 4 * 3600 + 30 * 60, '2 d 4 h'],
    [12.9 * 60, '12 min'],
  ])('%s s → %s', (secs, text) => {
    expect(humanizeDuration(secs)).toBe(text);
  });

  it('renders unknown and invalid values as a dash', () => {
    expect(humanizeDuration(null)).toBe('—');
    expect(humanizeDuration(undefined)).toBe('—');
    expect(humanizeDuration(Number.NaN)).toBe('—');
  });

  it('clamps negative durations (clock skew) to zero', () => {
    expect(humanizeDuration(-120)).toBe('< 1 min');
  });
});

describe('relative times', () => {
  const now = Date.parse('2025-01-01T12:00:00Z');

  it('timeAgo', () => {
    expect(timeAgo('2025-01-01T11:59:30Z', now)).toBe('just now');
    expect(timeAgo('2025-01-01T11:55:00Z', now)).toBe('5 min ago');
    expect(timeAgo('2025-01-01T09:30:00Z', now)).toBe('2 h 30 min ago');
    expect(timeAgo('2024-12-30T12:00:00Z', now)).toBe('2 d ago');
    expect(timeAgo('not a date', now)).toBe('not a date');
  });

  it('timeUntil', () => {
    expect(timeUntil('2025-01-02T11:00:00Z', now)).toBe('in 23 h');
    expect(timeUntil('2025-01-01T12:00:30Z', now)).toBe('in < 1 min');
    expect(timeUntil('2025-01-01T11:00:00Z', now)).toBe('now');
  });

  it('isFuture', () => {
    expect(isFuture('2025-01-01T13:00:00Z', now)).toBe(true);
    expect(isFuture('2025-01-01T11:00:00Z', now)).toBe(false);
    expect(isFuture(null, now)).toBe(false);
    expect(isFuture('garbage', now)).toBe(false);
  });
});

it('plural', () => {
  expect(plural(1, 'plan')).toBe('1 plan');
  expect(plural(0, 'plan')).toBe('0 plans');
  expect(plural(3, 'plan')).toBe('3 plans');
});
