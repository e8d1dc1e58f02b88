/** Geometry for the arrivals bar chart (24 hourly buckets, oldest first). */

export const BUCKETS = 24;

/** Pad (at the old end) or trim to exactly `size` non-negative whole buckets. */
export function normalizeBuckets(values: readonly number[] | null | undefined, size = BUCKETS): number[] {
  const v = (values ?? []).slice(-size).map((n) => (Number.isFinite(n) && n > 0 ? Math.floor(n) : 0));
  while (v.length < size) v.unshift(0);
  return v;
}

export interface Bar {
  x: number;
  y: number;
  width: number;
  height: number;
  count: number;
  /** Hours ago the bucket starts, e.g. bucket 23 (newest) covers the last hour. */
  hoursAgo: number;
  label: string;
}

export interface ChartGeometry {
  width: number;
  height: number;
  bars: Bar[];
  max: number;
  total: number;
}

export function barLabel(count: number, hoursAgo: number): string {
  const window = hoursAgo === 1 ? 'in the last hour' : `${hoursAgo - 1}–${hoursAgo} h ago`;
  return `${count} ${count === 1 ? 'plan' : 'plans'} ${window}`;
}

/** Bars scaled to the busiest hour; empty hours get a 1-unit stub so the axis reads. */
export function chartGeometry(values: readonly number[] | null | undefined, width = 240, height = 56): ChartGeometry {
  const buckets = normalizeBuckets(values);
  const max = Math.max(0, ...buckets);
  const total = buckets.reduce((a, b) => a + b, 0);
  const slot = width / buckets.length;
  const barWidth = Math.max(1, slot - 2);
  const bars = buckets.map((count, i) => {
    const h = max === 0 || count === 0 ? 1 : Math.max(2, Math.round((count / max) * (height - 2)));
    const hoursAgo = buckets.length - i;
    return {
      x: Math.round(i * slot * 100) / 100,
      y: height - h,
      width: Math.round(barWidth * 100) / 100,
      height: h,
      count,
      hoursAgo,
      label: barLabel(count, hoursAgo),
    };
  });
  return { width, height, bars, max, total };
}
