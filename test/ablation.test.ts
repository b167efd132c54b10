// The ablation table (src/ard/ablation.ts) on hand-made clip statistics with answers worked out by
// hand: which clips each variant picks as representatives, the monosemanticity of those picks, and
// the P/R/F1/mAP that follow from the concepts they claim.
import { describe, expect, it } from 'vitest';
import { ablations, majorityLabel, selectRepresentatives } from '../src/ard/ablation.js';
import { evalSplits, evaluateAll } from '../src/ard/evaluate.js';
import { mulberry32 } from '../src/util/random.js';

describe('representatives', () => {
  it('top / bottom p firing clips by score, ties by clip index; null when too few fire', () => {
    const score = Float32Array.from([0.5, 0.9, 0.1, 0.9, 0.3, 1.0]);
    const fires = (c: number) => c !== 5;
    expect(selectRepresentatives([0, 1, 2, 3, 4, 5], fires, score, 2)).toEqual({ H: [1, 3], L: [2, 4], firing: 5 });
    // only validation clips count: clip 1 is not among them
    expect(selectRepresentatives([0, 2, 3, 4], fires, score, 2)).toEqual({ H: [3, 0], L: [2, 4], firing: 4 });
    expect(selectRepresentatives([0, 1, 2, 3, 4, 5], fires, score, 6)).toBeNull();
    // p firing clips exactly: H takes them all, L is empty
    expect(selectRepresentatives([0, 1, 2, 3, 4, 5], fires, score, 5)).toBeNull();
  });

  it('random representatives: a seeded shuffle of the firing clips, H and L disjoint', () => {
    const fires = (c: number) => c % 3 !== 0;
    const a = selectRepresentatives([...Array(30).keys()], fires, null, 4, mulberry32(7))!;
    const b = selectRepresentatives([...Array(30).keys()], fires, null, 4, mulberry32(7))!;
    const c = selectRepresentatives([...Array(30).keys()], fires, null, 4, mulberry32(8))!;
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(a.H).toHaveLength(4);
    expect(a.L).toHaveLength(4);
    expect(a.firing).toBe(20);
    for (const x of [...a.H, ...a.L]) expect(fires(x)).toBe(true);
    expect(new Set([...a.H, ...a.L]).size).toBe(8);
  });

  it('majority label of H, ties to the first label; -1 without labels', () => {
    const clipLabels = [['a'], ['b', 'a'], ['b'], []];
    expect(majorityLabel([0, 1, 2], clipLabels, ['a', 'b'])).toBe(0);
    expect(majorityLabel([1, 2], clipLabels, ['a', 'b'])).toBe(1);
    expect(majorityLabel([0, 2], clipLabels, ['a', 'b'])).toBe(0);
    expect(majorityLabel([2], clipLabels, ['a', 'b'])).toBe(1);
    expect(majorityLabel([3], clipLabels, ['a', 'b'])).toBe(-1);
  });
});

// Val clips 0–7 and test clips 8–15 hold the same statistics: a1..a4 then b1..b4.
// Feature 0: on a clips mean 0.5, coverage 1 (sustained); on b1, b2 mean 1, coverage 0.1 (brief,
// strong); on b3, b4 mean 0.05, coverage 0.05. Feature 1: on b clips mean 0.8, coverage 0.8; on a1
// mean 0.1, coverage 0.1; silent elsewhere. Residual clip means: a = (1, 0), b = (0, 1), so the
// normalised clip vectors of a and b are opposite unit vectors (cosine −1 across, 1 within).
function world() {
  const labelsOf = ['a', 'a', 'a', 'a', 'b', 'b', 'b', 'b'];
  const clips = [...labelsOf.map((l) => ({ labels: [l], split: 'val' })), ...labelsOf.map((l) => ({ labels: [l], split: 'test' }))];
  const n = clips.length;
  const m = 2;
  const mean = new Float32Array(n * m);
  const coverage = new Float32Array(n * m);
  const residMean = new Float32Array(n * 2);
  for (let c = 0; c < n; c++) {
    const i = c % 8;
    const set = (f: number, mu: number, cov: number) => ((mean[c * m + f] = mu), (coverage[c * m + f] = cov));
    if (i < 4) set(0, 0.5, 1);
    else if (i < 6) set(0, 1, 0.1);
    else set(0, 0.05, 0.05);
    if (i >= 4) set(1, 0.8, 0.8);
    else if (i === 0) set(1, 0.1, 0.1);
    residMean[c * 2 + (i < 4 ? 0 : 1)] = 1;
  }
  // retrieve's score: mean / max over clips of mean × coverage
  const score = new Float32Array(n * m);
  for (let f = 0; f < m; f++) {
    let mx = 0;
    for (let c = 0; c < n; c++) mx = Math.max(mx, mean[c * m + f]!);
    for (let c = 0; c < n; c++) score[c * m + f] = (mean[c * m + f]! / mx) * coverage[c * m + f]!;
  }
  return { clips, n, m, mean, coverage, score, residMean, rows: new Float32Array(n).fill(10) };
}

describe('ablation table', () => {
  const w = world();
  const sp = evalSplits(w.clips);
  const table = ablations({
    sp, clipLabels: w.clips.map((c) => c.labels), nClips: w.n, m: w.m, d: 2, mean: w.mean, coverage: w.coverage, score: w.score,
    residMean: w.residMean, rows: w.rows, p: 2, C: 10, maxFiringShare: 1, seed: 0,
  });

  it('AR&D and coverage pick the sustained a clips for feature 0; mean activation picks the brief b clips', () => {
    const { ard, mean, coverage } = table.rows;
    // feature 0 (ard): H = a1, a2, L = b3, b4 → coherence 1 − (−1) = 2, separation 0.5 − 0.0025 → 0.995;
    // feature 1: H = b1, b2, L = a1, b3 → coherence 1 − 0 = 1, separation 0.8 − (0.0125 + 0.8)/2 → 0.39375
    expect(ard.mono).toBeCloseTo((0.995 + 0.39375) / 2, 5);
    expect(coverage.mono).toBeCloseTo((0.995 + 0.39375) / 2, 5);
    // mean only: feature 0's H = b1, b2 and L = b3, b4 are all b clips → coherence 0 → mono 0
    expect(mean.mono).toBeCloseTo(0.39375 / 2, 5);
    for (const r of [ard, coverage]) {
      expect(r.perLabel.a!.feature).toBe(0);
      expect(r.perLabel.b!.feature).toBe(1);
      expect([r.precision, r.recall, r.f1, r.map]).toEqual([1, 1, 1, 1]);
      expect(r.labelsCovered).toBe(2);
    }
    // both features claim b under mean-only, none claims a: a scores 0, b gets feature 1 (AP 1)
    expect(mean.perLabel.a).toEqual({ feature: null, ap: 0, precision: 0, recall: 0, f1: 0 });
    expect(mean.perLabel.b!.feature).toBe(1);
    expect([mean.precision, mean.recall, mean.f1, mean.map]).toEqual([0.5, 0.5, 0.5, 0.5]);
    expect(mean.labelsCovered).toBe(1);
    expect(ard.kept).toBe(2);
  });

  it('neurons: each dimension and sign is a perfect detector here, ties to the lower candidate', () => {
    const r = table.rows.neurons;
    // +0 / −1 claim a, −0 / +1 claim b; every H vs L is a vs b → coherence 2, separation 1
    expect(r.mono).toBeCloseTo(2, 5);
    expect(r.kept).toBe(4);
    expect(r.perLabel.a!.feature).toBe('+0');
    expect(r.perLabel.b!.feature).toBe('-0');
    expect([r.precision, r.recall, r.f1, r.map]).toEqual([1, 1, 1, 1]);
  });

  it('random representatives are seeded, and the top-C cut and firing-share rule apply', () => {
    const again = ablations({
      sp, clipLabels: w.clips.map((c) => c.labels), nClips: w.n, m: w.m, d: 2, mean: w.mean, coverage: w.coverage, score: w.score,
      residMean: w.residMean, rows: w.rows, p: 2, C: 1, maxFiringShare: 0.7, seed: 0,
    });
    // feature 0 fires on 8 of 8 validation clips > 0.7 × 8: only feature 1 is eligible
    expect(again.rows.ard.eligible).toBe(1);
    expect(again.rows.ard.perLabel.a!.feature).toBeNull();
    expect(again.rows.ard.map).toBeCloseTo(0.5, 10);
    expect(again.rows.neurons.kept).toBe(1);
    expect(table.rows.random.kept).toBe(2);
    const again2 = ablations({
      sp, clipLabels: w.clips.map((c) => c.labels), nClips: w.n, m: w.m, d: 2, mean: w.mean, coverage: w.coverage, score: w.score,
      residMean: w.residMean, rows: w.rows, p: 2, C: 10, maxFiringShare: 1, seed: 0,
    });
    expect(again2.rows.random).toEqual(table.rows.random);
    expect(table.published['coverage only']!.map).toBe(0.39);
    expect(table.comparedWith.random).toBe('random representatives');
  });

  it('evaluateAll writes the table into eval.json when given retrieval statistics', () => {
    const ev = evaluateAll({
      clips: w.clips, clipMean: w.mean, m: w.m, residMean: w.residMean, d: 2, seed: 0,
      ablation: { coverage: w.coverage, score: w.score, rows: w.rows, p: 2, C: 10, maxFiringShare: 1 },
    });
    expect(ev.ablations!.rows.ard).toEqual(table.rows.ard);
    expect(evaluateAll({ clips: w.clips, clipMean: w.mean, m: w.m, residMean: w.residMean, d: 2 }).ablations).toBeUndefined();
  });
});

describe('report', () => {
  it('shows the ablation table beside the published rows', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { writeReport } = await import('../src/ard/report.js');
    const w = world();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ard-abl-'));
    const ev = evaluateAll({
      clips: w.clips, clipMean: w.mean, m: w.m, residMean: w.residMean, d: 2, seed: 0,
      ablation: { coverage: w.coverage, score: w.score, rows: w.rows, p: 2, C: 10, maxFiringShare: 1 },
    });
    fs.writeFileSync(path.join(dir, 'eval.json'), JSON.stringify(ev));
    const html = fs.readFileSync(writeReport(dir).file, 'utf8');
    expect(html).toContain('Ablation: how representatives are chosen');
    expect(html).toMatch(/coverage only<\/td>(<td class="num">[^<]*<\/td>){4}<td class="num"><b>1\.000<\/b>/);
    expect(html).toMatch(/mean activation only<\/td>(<td class="num">[^<]*<\/td>){4}<td class="num"><b>0\.500<\/b>/);
    expect(html).toContain('<td class="dim">random representatives</td>');
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
