/** Shared, reactive panel state: the latest overview, settings and the current view. */
import { getContext, setContext } from 'svelte';
import { api, errorMessage, type NavigateRequest, type Overview, type Settings } from './api';

export type Route =
  | { name: 'home'; focus?: 'queue' | { plan: string } }
  | { name: 'activity' }
  | { name: 'settings' }
  | { name: 'plan'; planId: string };

export type Tab = 'home' | 'activity' | 'settings';

export class AppState {
  /** Latest overview snapshot from `get_overview` or a `zof://overview` event. */
  overview = $state.raw<Overview | null>(null);
  /** `Date.now()` when {@link overview} arrived; ages advance locally from there. */
  overviewAt = $state(0);
  /** Local clock, ticked by the App (no IPC). */
  now = $state(Date.now());
  settings = $state.raw<Settings | null>(null);
  /** Why the first overview could not be loaded (shown with a Retry button). */
  loadError = $state<string | null>(null);
  /** Why live updates are unavailable (listen failed). */
  liveError = $state<string | null>(null);
  route = $state<Route>({ name: 'home' });

  /** Bumped for every pushed overview, so a slower fetch never overwrites a newer push. */
  #pushes = 0;

  get tab(): Tab {
    return this.route.name === 'plan' ? 'home' : this.route.name;
  }

  /** Apply an overview pushed by Rust. */
  applyOverview(o: Overview): void {
    this.#pushes++;
    this.#set(o);
  }

  #set(o: Overview): void {
    this.overview = o;
    this.overviewAt = Date.now();
    this.now = this.overviewAt;
    this.loadError = null;
  }

  /** Fetch the overview once (initial load, or right after an action). */
  async refreshOverview(): Promise<void> {
    const seq = this.#pushes;
    try {
      const o = await api.getOverview();
      if (seq === this.#pushes) this.#set(o);
    } catch (e) {
      if (!this.overview) this.loadError = errorMessage(e);
    }
  }

  async loadSettings(): Promise<void> {
    try {
      this.settings = await api.getSettings();
    } catch {
      // Settings only feed the Console links here; the Settings view shows its own error.
    }
  }

  /** Seconds a plan has waited, advanced locally since the snapshot arrived. */
  liveAge(snapshotSecs: number | null): number | null {
    if (snapshotSecs === null) return null;
    const elapsed = this.overviewAt === 0 ? 0 : Math.max(0, (this.now - this.overviewAt) / 1000);
    return snapshotSecs + elapsed;
  }

  navigate(route: Route): void {
    this.route = route;
  }

  /** Handle a `zof://navigate` request from Rust. */
  handleNavigate(req: NavigateRequest): void {
    switch (req.view) {
      case 'home':
        this.navigate({ name: 'home' });
        break;
      case 'queue':
        this.navigate({ name: 'home', focus: 'queue' });
        break;
      case 'activity':
        this.navigate({ name: 'activity' });
        break;
      case 'settings':
        this.navigate({ name: 'settings' });
        break;
      case 'plan':
        if (req.plan_id) this.navigate({ name: 'plan', planId: req.plan_id });
        else this.navigate({ name: 'home', focus: 'queue' });
        break;
      default:
        this.navigate({ name: 'home' });
    }
  }
}

const KEY = Symbol('zof-approvals.app');

export function provideApp(state: AppState): AppState {
  return setContext(KEY, state);
}

export function useApp(): AppState {
  const state = getContext<AppState | undefined>(KEY);
  if (!state) throw new Error('AppState is not provided');
  return state;
}

/** Context map for mounting a single view in tests. */
export function appContext(state: AppState): Map<unknown, unknown> {
  return new Map([[KEY, state]]);
}
