/** Expansion of the Console URL template from settings. */

export interface ConsoleIds {
  plan_id: string;
  run_id: string;
  organization_id: string;
}

const PLACEHOLDERS = ['plan_id', 'run_id', 'organization_id'] as const;

/**
 * Replace `{plan_id}`, `{run_id}` and `{organization_id}` (every occurrence)
 * with the URL-encoded ids. Returns null when the template is empty or the
 * result is not an http(s) URL, so callers never render a dangerous href.
 */
export function expandConsoleUrl(template: string | null | undefined, ids: ConsoleIds): string | null {
  const t = (template ?? '').trim();
  if (t === '') return null;
  let out = t;
  for (const key of PLACEHOLDERS) {
    out = out.split(`{${key}}`).join(encodeURIComponent(ids[key] ?? ''));
  }
  return isHttpUrl(out) ? out : null;
}

export function isHttpUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.host !== '';
  } catch {
    return false;
  }
}

/** Placeholders in a template that are not one of the known ones, e.g. `{plan}`. */
export function unknownPlaceholders(template: string): string[] {
  const found = template.match(/\{[^{}]*\}/g) ?? [];
  const known = new Set(PLACEHOLDERS.map((k) => `{${k}}`));
  return [...new Set(found.filter((p) => !known.has(p)))];
}
