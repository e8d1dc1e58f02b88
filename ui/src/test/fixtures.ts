import type { About, ConsoleStatus, DeliveryView, Overview, PlanDetail, PlanDetails, PlanView, RelayView, Review, Secrets, Settings } from '../lib/api';

export function makeConsoleStatus(over: Partial<ConsoleStatus> = {}): ConsoleStatus {
  return {
    state: 'off',
    api_url: '',
    token_fingerprint: null,
    message: null,
    last_attempt_at: null,
    last_success_at: null,
    last_report: null,
    next_at: null,
    interval_secs: 300,
    requests: 0,
    public_url: '',
    ...over,
  };
}

export function makeRelayView(over: Partial<RelayView> = {}): RelayView {
  return {
    state: 'off',
    text: 'off',
    pending: 0,
    since: null,
    reason: null,
    consumer: null,
    default_consumer: 'alice_laptop',
    password_fingerprint: null,
    from_command_line: false,
    ...over,
  };
}

export function makePlan(over: Partial<PlanView> = {}): PlanView {
  const plan = {
    plan_id: 'pln_alpha',
    event_id: 'evt_1',
    run_id: 'run_42',
    organization_id: 'org_acme',
    received_at: '2025-01-01T10:00:00Z',
    created: '2025-01-01T09:59:58Z',
    state: 'pending' as const,
    snoozed_until: null,
    escalated: false,
    flags: [],
    age_secs: 3900,
    ...over,
  };
  // As the core builds it from the template in makeSettings().
  const console_url =
    over.console_url ??
    `https://console.example.test/orgs/${plan.organization_id}/runs/${plan.run_id}/plans/${plan.plan_id}`;
  return { ...plan, console_url };
}

export function makeOverview(over: Partial<Overview> = {}): Overview {
  const queue = over.queue ?? [
    makePlan(),
    makePlan({ plan_id: 'pln_beta', event_id: 'evt_2', run_id: 'run_43', age_secs: 600 }),
  ];
  return {
    started: true,
    first_run: false,
    receiver: { webhook_url: 'http://127.0.0.1:8787/webhooks/zof', ready: true, reason: null },
    kpis: {
      pending: queue.length,
      oldest_waiting_secs: 3900,
      oldest_state: 'warning',
      received_24h: 7,
      median_decision_secs_7d: 1500,
      health: {
        accepted: 12,
        duplicates: 2,
        rejected: 1,
        last_rejection: { at: new Date(Date.now() - 5 * 60_000).toISOString(), reason: 'signature did not match any secret' },
      },
    },
    queue,
    next_actions: [{ kind: 'approve_oldest', severity: 'warning', text: 'Approve pln_alpha in the Console' }],
    refusals: [],
    arrivals_24h: Array.from({ length: 24 }, (_, i) => (i === 23 ? 3 : i % 5 === 0 ? 1 : 0)),
    muted_until: null,
    notification_status: null,
    ...over,
  };
}

export function makeSettings(over: Partial<Settings> = {}): Settings {
  return {
    listen: '127.0.0.1:8787',
    scheme: 'zof',
    allow_orgs: ['org_acme'],
    console_url_template: 'https://console.example.test/orgs/{organization_id}/runs/{run_id}/plans/{plan_id}',
    quiet_hours: null,
    escalation_minutes: 30,
    coalesce_threshold: 3,
    coalesce_window_secs: 10,
    show_panel_on_arrival: true,
    start_at_login: false,
    display_name: '',
    ...over,
  };
}

export function makeSecrets(over: Partial<Secrets> = {}): Secrets {
  return {
    keychain: { ok: true, message: null },
    secrets: [
      {
        role: 'current',
        fingerprint: 'sha256:ab12cd34',
        created_at: '2025-01-01T00:00:00Z',
        age_days: 95,
        expires_at: null,
        last_matched_at: '2025-01-01T09:00:00Z',
        matches: 40,
        due_for_rotation: true,
      },
      {
        role: 'previous',
        fingerprint: 'sha256:99ff0011',
        created_at: '2024-09-01T00:00:00Z',
        age_days: 200,
        expires_at: '2099-01-02T00:00:00Z',
        last_matched_at: null,
        matches: 0,
        due_for_rotation: false,
      },
    ],
    ...over,
  };
}

export function makeDelivery(over: Partial<DeliveryView> = {}): DeliveryView {
  return {
    at: '2025-01-01T10:00:00Z',
    event_id: 'evt_1',
    verdict: 'accepted',
    status: 202,
    reason: 'signature valid; plan queued',
    fingerprint: 'sha256:ab12cd34',
    ...over,
  };
}

export function makePlanDetail(over: Partial<PlanDetail> = {}): PlanDetail {
  return {
    plan: makePlan(),
    payload: {
      id: 'evt_1',
      type: 'remediation.plan_pending',
      created: '2025-01-01T09:59:58Z',
      data: { plan_id: 'pln_alpha', run_id: 'run_42', organization_id: 'org_acme', summary: 'Rotate 3 keys' },
    },
    deliveries: [
      makeDelivery(),
      makeDelivery({ at: '2025-01-01T10:00:05Z', verdict: 'duplicate', status: 200, reason: 'already received' }),
    ],
    ...over,
  };
}

export function makeAbout(over: Partial<About> = {}): About {
  return {
    version: '0.1.0',
    commit: '5ae0a6f1c2d3',
    profile: 'release',
    os: 'linux x86_64',
    data_dir: '/home/ada/.local/share/zof-approvals',
    config_dir: '/home/ada/.config/zof-approvals',
    log_dir: '/home/ada/.local/state/zof-approvals/logs',
    ...over,
  };
}

/** The Console's details of a plan, with every review field. */
export function makeDetails(over: Partial<PlanDetails> = {}): PlanDetails {
  return {
    plan_id: 'pln_alpha',
    status: 'pending',
    organization_id: 'org_acme',
    run_id: 'run_42',
    updated: null,
    decided_by: null,
    title: 'Roll back checkout to 4.2.0',
    summary: 'Error rate rose after 4.3.0',
    risk: 'medium',
    environment: 'prod-eu',
    service: 'checkout',
    policy_pack: { id: 'pp_1', name: 'Production changes' },
    requested_by: 'carol@example.com',
    steps: [{ action: 'rollback', target: 'deploy/checkout', detail: 'to 4.2.0' }],
    steps_omitted: 0,
    diff: '--- a/deploy.yaml\n+++ b/deploy.yaml\n-image: checkout:4.3.0\n+image: checkout:4.2.0\n+<script>window.pwned = true</script>',
    diff_cut: false,
    revision: 'rev_1',
    expires_at: null,
    viewer: { can_decide: true, reason: null },
    fetched_at: new Date().toISOString(),
    ...over,
  };
}

export function makeReview(over: Partial<Review> = {}): Review {
  return {
    plan: { plan_id: 'pln_alpha', state: 'pending' },
    details: null,
    fresh: false,
    problem: 'no Console connection',
    decided: false,
    can_decide: false,
    cannot_decide_reason: 'no details from the Console',
    type_to_approve: null,
    ...over,
  };
}

/** The review of `details` as the core answers it (what the person may do, decided there). */
export function reviewOf(details: PlanDetails): Review {
  const decided = ['approved', 'rejected', 'expired', 'cancelled'].includes(details.status);
  const allowed = !decided && (details.viewer?.can_decide ?? true);
  return makeReview({
    details,
    fresh: true,
    problem: null,
    decided,
    can_decide: allowed,
    cannot_decide_reason: decided
      ? `Approved by ${details.decided_by}`
      : allowed
        ? null
        : (details.viewer?.reason ?? 'the Console does not let you decide this plan'),
    type_to_approve: !decided && (details.risk === 'high' || details.risk === 'critical') ? details.environment : null,
  });
}
