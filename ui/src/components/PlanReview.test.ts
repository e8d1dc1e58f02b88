import { describe, expect, it } from 'vitest';
import PlanReview, { diffLines } from './PlanReview.svelte';
import { click, mockBackend, push, render, type, until } from '../test/harness';
import { makeDetails, reviewOf } from '../test/fixtures';
import type { DecisionReport, PlanDetails } from '../lib/api';

/** The review, with the Console's details as `console.details` says at each read. */
function renderReview(details = makeDetails()) {
  const console = { details };
  const b = mockBackend({ get_review: () => reviewOf(console.details) });
  const ui = render(PlanReview, { planId: 'pln_alpha', waitingSecs: 600, now: Date.now() });
  return { b, console, ...ui };
}

function decidedBy(who: string): PlanDetails {
  return makeDetails({ status: 'approved', decided_by: who });
}

describe('Plan review', () => {
  it('shows title, risk, environment, steps and the diff as text, coloured by line', async () => {
    const ui = renderReview();
    await until(() => ui.byTestId('review-title'));
    expect(ui.byTestId('review-title')!.textContent).toBe('Roll back checkout to 4.2.0');
    expect(ui.byTestId('review-risk')!.textContent).toBe('medium risk');
    expect(ui.byTestId('review-environment')!.textContent).toBe('prod-eu');
    expect(ui.byTestId('review-steps')!.textContent).toContain('rollback');
    const diff = ui.byTestId('review-diff')!;
    expect(diff.textContent).toContain('+<script>window.pwned = true</script>');
    expect(diff.querySelector('script')).toBeNull();
    expect((window as unknown as { pwned?: boolean }).pwned).toBeUndefined();
    expect(diff.querySelectorAll('.line.add').length).toBe(2);
    expect(diff.querySelectorAll('.line.del').length).toBe(1);
  });

  it('offers no Approve when the Console says this person may not decide, and says why', async () => {
    const ui = renderReview(makeDetails({ viewer: { can_decide: false, reason: 'You requested this plan' } }));
    await until(() => ui.byTestId('review-cannot-decide'));
    expect(ui.byTestId('review-cannot-decide')!.textContent).toBe('You requested this plan');
    expect(ui.byTestId('approve')).toBeNull();
    expect(ui.byTestId('reject')).toBeNull();
  });

  it('approving a high-risk plan needs its environment typed; Cancel is the default; the revision shown is sent', async () => {
    const ui = renderReview(makeDetails({ risk: 'high' }));
    ui.b.handlers.decide_plan = (): DecisionReport => {
      ui.console.details = decidedBy('Alice Example');
      return { outcome: 'decided', message: 'Approved by Alice Example at 14:02', details: decidedBy('Alice Example') };
    };
    await until(() => ui.byTestId('approve'));
    click(ui.byTestId('approve'));
    await until(() => ui.byTestId('decide-dialog'));
    expect(ui.byTestId('dialog-restated')!.textContent).toContain('prod-eu');
    await until(() => expect(document.activeElement).toBe(ui.byTestId('decision-cancel')));
    const confirm = ui.byTestId<HTMLButtonElement>('decision-confirm')!;
    expect(confirm.disabled).toBe(true);
    type(ui.byTestId('type-environment'), 'prod-e');
    expect(confirm.disabled).toBe(true);
    type(ui.byTestId('type-environment'), 'prod-eu');
    expect(confirm.disabled).toBe(false);
    type(ui.byTestId('decision-comment'), 'checked the diff');
    click(confirm);
    await until(() => ui.byTestId('decision-report'));
    expect(ui.b.callsOf('decide_plan')).toHaveLength(1);
    expect(ui.b.callsOf('decide_plan')[0].args).toEqual({
      planId: 'pln_alpha',
      verdict: 'approve',
      revision: 'rev_1',
      comment: 'checked the diff',
    });
    expect(ui.byTestId('decision-report')!.textContent!.trim()).toBe('Approved by Alice Example at 14:02');
    await until(() => expect(ui.byTestId('review-decided')!.textContent).toContain('Approved by Alice Example'));
    expect(ui.byTestId('approve')).toBeNull();
  });

  it('Cancel sends nothing', async () => {
    const ui = renderReview();
    await until(() => ui.byTestId('approve'));
    click(ui.byTestId('approve'));
    click(ui.byTestId('decision-cancel'));
    expect(ui.byTestId('decide-dialog')).toBeNull();
    expect(ui.b.callsOf('decide_plan')).toHaveLength(0);
  });

  it('a rejection needs a reason', async () => {
    const ui = renderReview();
    await until(() => ui.byTestId('reject'));
    click(ui.byTestId('reject'));
    const confirm = ui.byTestId<HTMLButtonElement>('decision-confirm')!;
    expect(confirm.disabled).toBe(true);
    type(ui.byTestId('decision-comment'), '   ');
    expect(confirm.disabled).toBe(true);
    type(ui.byTestId('decision-comment'), 'wrong version');
    expect(confirm.disabled).toBe(false);
  });

  it('a plan that changed shows its new content and says so; a slow answer says it is checking', async () => {
    const ui = renderReview();
    let answer: (r: DecisionReport) => void = () => undefined;
    ui.b.handlers.decide_plan = () => new Promise<DecisionReport>((resolve) => (answer = resolve));
    await until(() => ui.byTestId('approve'));
    click(ui.byTestId('approve'));
    click(ui.byTestId('decision-confirm'));
    await until(() => expect(ui.byTestId('decision-phase')!.textContent!.trim()).toBe('Sending to the Console…'));
    await push('zof://decision-checking', 'pln_alpha');
    await until(() => expect(ui.byTestId('decision-phase')!.textContent!.trim()).toBe('Checking with the Console…'));
    const changed = makeDetails({ revision: 'rev_2', summary: 'Now also restarts the payment workers' });
    ui.console.details = changed;
    answer({ outcome: 'changed', message: 'This plan changed since you opened it', details: changed });
    await until(() => ui.byTestId('decision-report'));
    expect(ui.byTestId('decision-report')!.dataset.outcome).toBe('changed');
    await until(() => expect(ui.byTestId('review-summary')!.textContent).toBe('Now also restarts the payment workers'));
  });

  it('splits a unified diff into coloured lines', () => {
    expect(diffLines('--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n z').map((l) => l.kind)).toEqual([
      'meta',
      'meta',
      'hunk',
      'del',
      'add',
      'ctx',
    ]);
  });
});
