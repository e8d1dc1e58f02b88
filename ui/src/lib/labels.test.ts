import { describe, expect, it } from 'vitest';
import { auditActionLabel, describeAudit, describeDelivery, describeRefusals, nextActionTarget, verdictLabel, verdictTone } from './labels';

describe('verdicts in plain words', () => {
  it('labels every verdict', () => {
    expect(verdictLabel('accepted')).toBe('Accepted');
    expect(verdictLabel('duplicate')).toBe('Duplicate');
    expect(verdictLabel('ignored')).toBe('Ignored');
    expect(verdictLabel('rejected')).toBe('Rejected');
    expect(verdictLabel('something_new')).toBe('something_new');
  });

  it('gives rejected deliveries the danger tone', () => {
    expect(verdictTone('rejected')).toBe('danger');
    expect(verdictTone('accepted')).toBe('ok');
    expect(verdictTone('whatever')).toBe('neutral');
  });

  it('describes a delivery with its reason and HTTP status', () => {
    expect(describeDelivery({ verdict: 'rejected', reason: 'timestamp is 9 minutes old', status: 401 })).toBe(
      'Rejected: timestamp is 9 minutes old (HTTP 401)',
    );
    expect(describeDelivery({ verdict: 'accepted', reason: '  ', status: 202 })).toBe('Accepted (HTTP 202)');
  });
});

it('maps next-action kinds to a view', () => {
  expect(nextActionTarget({ kind: 'rotate_secret' })).toBe('settings');
  expect(nextActionTarget({ kind: 'receiver_not_ready' })).toBe('settings');
  expect(nextActionTarget({ kind: 'deliveries_rejected' })).toBe('activity');
  expect(nextActionTarget({ kind: 'approve_oldest' })).toBeNull();
});

describe('describeRefusals', () => {
  it('names the count, the code in words and the window', () => {
    expect(describeRefusals({ code: 'missing_signature', last_hour: 1234, last_24h: 2000 })).toBe(
      '1,234 refused, missing signature, last hour',
    );
    expect(describeRefusals({ code: 'browser_request_refused', last_hour: 0, last_24h: 3 })).toBe(
      '3 refused, browser request refused, last 24 h',
    );
  });
});

describe('describeAudit', () => {
  it('says what was done, by whom, from where and when', () => {
    expect(describeAudit({ action: 'handled', who: 'alice@laptop-7', source: 'panel', detail: '' }, '14:02')).toBe(
      'Handled by alice@laptop-7 · panel · 14:02',
    );
    expect(
      describeAudit({ action: 'snoozed', who: 'bob', source: 'team:bob_l2', detail: 'until 2026-05-20T15:00:00Z' }, '14:05'),
    ).toBe('Snoozed by bob (until 2026-05-20T15:00:00Z) · team:bob_l2 · 14:05');
    expect(auditActionLabel('something_new')).toBe('something_new');
  });
});
