import { describe, expect, it } from 'vitest';
import { barLabel, chartGeometry, normalizeBuckets } from './chart';

describe('arrivals chart', () => {
  it('normalizes to 24 buckets, padding the old end', () => {
    expect(normalizeBuckets([1, 2])).toEqual([...Array(22).fill(0), 1, 2]);
    expect(normalizeBuckets(Array.from({ length: 30 }, (_, i) => i))).toEqual(Array.from({ length: 24 }, (_, i) => i + 6));
    expect(normalizeBuckets([-1, Number.NaN, 2.7])).toEqual([...Array(21).fill(0), 0, 0, 2]);
    expect(normalizeBuckets(null)).toHaveLength(24);
  });

  it('scales bars to the busiest hour, oldest first', () => {
    const values = Array(24).fill(0);
    values[0] = 2;
    values[23] = 4;
    const g = chartGeometry(values, 240, 50);
    expect(g.bars).toHaveLength(24);
    expect(g.max).toBe(4);
    expect(g.total).toBe(6);
    expect(g.bars[23].height).toBe(48);
    expect(g.bars[0].height).toBe(24);
    expect(g.bars[23].y + g.bars[23].height).toBe(50);
    expect(g.bars[0].x).toBeLessThan(g.bars[23].x);
    expect(g.bars[23].label).toBe('4 plans in the last hour');
    expect(g.bars[0].label).toBe('2 plans 23–24 h ago');
  });

  it('draws stubs when nothing arrived', () => {
    const g = chartGeometry(Array(24).fill(0));
    expect(g.max).toBe(0);
    expect(g.bars.every((b) => b.height === 1)).toBe(true);
  });

  it('labels single plans', () => {
    expect(barLabel(1, 3)).toBe('1 plan 2–3 h ago');
  });
});
