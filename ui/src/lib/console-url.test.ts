import { describe, expect, it } from 'vitest';
import { expandConsoleUrl, unknownPlaceholders } from './console-url';

const ids = { plan_id: 'pln_1', run_id: 'run_2', organization_id: 'org_3' };

describe('expandConsoleUrl', () => {
  it('replaces every placeholder', () => {
    expect(
      expandConsoleUrl('https://console.zof.test/o/{organization_id}/runs/{run_id}/plans/{plan_id}', ids),
    ).toBe('https://console.zof.test/o/org_3/runs/run_2/plans/pln_1');
  });

  it('replaces repeated placeholders and query parameters', () => {
    expect(expandConsoleUrl('https://c.test/{plan_id}?focus={plan_id}&org={organization_id}', ids)).toBe(
      'https://c.test/pln_1?focus=pln_1&org=org_3',
    );
  });

  it('URL-encodes ids so they cannot change the URL structure', () => {
    const url = expandConsoleUrl('https://c.test/plans/{plan_id}', { ...ids, plan_id: '../admin?x=1#y' });
    expect(url).toBe('https://c.test/plans/..%2Fadmin%3Fx%3D1%23y');
  });

  it('leaves unknown placeholders alone', () => {
    expect(expandConsoleUrl('https://c.test/{plan}/{plan_id}', ids)).toBe('https://c.test/{plan}/pln_1');
  });

  it('returns null for empty or non-http templates', () => {
    expect(expandConsoleUrl('', ids)).toBeNull();
    expect(expandConsoleUrl('   ', ids)).toBeNull();
    expect(expandConsoleUrl(null, ids)).toBeNull();
    expect(expandConsoleUrl('javascript:alert({plan_id})', ids)).toBeNull();
    expect(expandConsoleUrl('file:///etc/{plan_id}', ids)).toBeNull();
    expect(expandConsoleUrl('/relative/{plan_id}', ids)).toBeNull();
  });
});

it('unknownPlaceholders lists placeholders that will not be expanded', () => {
  expect(unknownPlaceholders('https://c.test/{plan}/{plan_id}/{org}/{plan}')).toEqual(['{plan}', '{org}']);
  expect(unknownPlaceholders('https://c.test/{plan_id}/{run_id}/{organization_id}')).toEqual([]);
});
