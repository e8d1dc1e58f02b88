/** Pure formatting helpers: durations, relative and absolute times. */

const MINUTE = 60;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * Humanize a duration in seconds, compactly: `< 1 min`, `42 min`, `3 h 5 min`,
 * `2 d 4 h`. Unknown or invalid input renders as an em dash.
 */
export function humanizeDuration(secs: number | null | undefined): string {
  if (secs === null || secs === undefined || !Number.isFinite(secs)) return '—';
  const s = Math.max(0, Math.floor(secs));
  if (s < MINUTE) return '< 1 min';
  if (s < HOUR) return `${Math.floor(s / MINUTE)} min`;
  if (s < DAY) {
    const h = Math.floor(s / HOUR);
    const m = Math.floor((s % HOUR) / MINUTE);
    return m === 0 ? `${h} h` : `${h} h ${m} min`;
  }
  const d = Math.floor(s / DAY);
  const h = Math.floor((s % DAY) / HOUR);
  return h === 0 ? `${d} d` : `${d} d ${h} h`;
}

function parse(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** `just now`, `5 min ago`, `2 h 3 min ago`; the raw string if unparsable. */
export function timeAgo(iso: string, now: number = Date.now()): string {
  const t = parse(iso);
  if (t === null) return iso;
  const secs = (now - t) / 1000;
  if (secs < MINUTE) return 'just now';
  return `${humanizeDuration(secs)} ago`;
}

/** `in 23 h`, or `now` once the moment has passed. */
export function timeUntil(iso: string, now: number = Date.now()): string {
  const t = parse(iso);
  if (t === null) return iso;
  const secs = (t - now) / 1000;
  if (secs <= 0) return 'now';
  if (secs < MINUTE) return 'in < 1 min';
  return `in ${humanizeDuration(secs)}`;
}

/** True when the timestamp is valid and later than `now`. */
export function isFuture(iso: string | null | undefined, now: number = Date.now()): boolean {
  const t = parse(iso);
  return t !== null && t > now;
}

const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayClock = new Intl.DateTimeFormat(undefined, {
  day: 'numeric',
  month: 'short',
  hour: '2-digit',
  minute: '2-digit',
});
const full = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** Local clock time today (`14:05`), or day + time for other days. */
export function formatTime(iso: string | null | undefined, now: number = Date.now()): string {
  const t = parse(iso);
  if (t === null) return iso ?? '—';
  const d = new Date(t);
  const n = new Date(now);
  const sameDay =
    d.getFullYear() === n.getFullYear() && d.getMonth() === n.getMonth() && d.getDate() === n.getDate();
  return sameDay ? clock.format(d) : dayClock.format(d);
}

/** Full local date and time, for tooltips and detail views. */
export function formatDateTime(iso: string | null | undefined): string {
  const t = parse(iso);
  if (t === null) return iso ?? '—';
  return full.format(new Date(t));
}

/** `1 plan`, `3 plans`. */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
