// AR&D explain: which named features fire when, for one clip's per-token activations.
// Input: residual rows [T, d] of one clip at the SAE's layer (on the GPU or host) and the seconds
// per row. Output: per feature its firing segments (maximal runs of rows with z > threshold, gaps
// of ≤ mergeGap rows bridged) with the peak activation, plus a compact terminal timeline.
import type { Engine } from '../gpu/engine.js';
import { Tensor, tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import type { FeatureEntry } from './rank.js';
import type { SparseEncoder } from '../sae/types.js';
import { encodeFeatureActivations } from './retrieve.js';

export interface Segment {
  /** Seconds. */
  start: number;
  end: number;
  peak: number;
}

export interface ExplainedFeature {
  feature: number;
  name: string;
  segments: Segment[];
  /** Highest activation in the clip. */
  peak: number;
  /** Share of rows where the feature fires. */
  coverage: number;
  /** Per-row activation (for plots). */
  activations: number[];
}

export interface ExplainOptions {
  engine: Engine;
  sae: SparseEncoder;
  /** Residual rows [T, d]: a GPU tensor or row-major host data (then give d). */
  acts: Tensor | Float32Array;
  d?: number;
  frameSeconds: number;
  /** The features to look for (usually RUN/features-L.json's kept, named features). */
  features: readonly Pick<FeatureEntry, 'id' | 'name' | 'scores'>[];
  /** Fire when z > threshold × the feature's reference scale (scores.maxMean; default 0). */
  threshold?: number;
  /** Gaps of at most this many rows inside a segment are bridged (default 1). */
  mergeGap?: number;
  /** Timeline width in characters (default 60). */
  width?: number;
}

export interface Explanation {
  duration: number;
  features: ExplainedFeature[];
  /** Terminal rendering, one row per firing feature. */
  timeline: string;
}

/** Segments of `acts` above `thr` (rows → seconds), bridging gaps of ≤ mergeGap rows. */
export function segmentsOf(acts: ArrayLike<number>, frameSeconds: number, thr = 0, mergeGap = 1): Segment[] {
  const out: Segment[] = [];
  let cur: { s: number; e: number; peak: number } | null = null;
  for (let t = 0; t < acts.length; t++) {
    const v = acts[t]!;
    if (!(v > thr)) continue;
    if (cur && t - cur.e - 1 <= mergeGap) {
      cur.e = t;
      cur.peak = Math.max(cur.peak, v);
    } else {
      if (cur) out.push(seg(cur, frameSeconds));
      cur = { s: t, e: t, peak: v };
    }
  }
  if (cur) out.push(seg(cur, frameSeconds));
  return out;
}

function seg(c: { s: number; e: number; peak: number }, fs: number): Segment {
  return { start: r3(c.s * fs), end: r3((c.e + 1) * fs), peak: Math.round(c.peak * 1e4) / 1e4 };
}
function r3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

const LEVELS = ['▁', '▂', '▃', '▅', '▇'];

/**
 * One text row per feature: the clip's duration cut into `width` buckets, each showing the bucket's
 * peak activation relative to `scale` (blank where the feature is silent), then the peak value.
 */
export function renderTimeline(rows: { label: string; activations: ArrayLike<number>; scale: number }[], frameSeconds: number, width = 60): string {
  if (!rows.length) return '(no feature fires)';
  const T = Math.max(...rows.map((r) => r.activations.length));
  const W = Math.max(1, Math.min(width, T));
  const labelW = Math.min(24, Math.max(...rows.map((r) => r.label.length)));
  const duration = T * frameSeconds;
  const lines: string[] = [];
  for (const r of rows) {
    let bar = '';
    let peak = 0;
    for (let b = 0; b < W; b++) {
      const t0 = Math.floor((b * T) / W);
      const t1 = Math.max(t0 + 1, Math.floor(((b + 1) * T) / W));
      let m = 0;
      for (let t = t0; t < t1 && t < r.activations.length; t++) m = Math.max(m, r.activations[t]!);
      peak = Math.max(peak, m);
      if (m <= 0) bar += ' ';
      else bar += LEVELS[Math.min(LEVELS.length - 1, Math.floor((m / (r.scale > 0 ? r.scale : 1)) * LEVELS.length))]!;
    }
    const label = r.label.length > labelW ? r.label.slice(0, labelW - 1) + '…' : r.label.padEnd(labelW);
    lines.push(`${label} │${bar}│ ${peak.toFixed(2)}`);
  }
  const axis = `${' '.repeat(labelW)} └${'─'.repeat(W)}┘`;
  const ticks = `${' '.repeat(labelW)}  0s${`${duration.toFixed(1)}s`.padStart(W - 1)}`;
  return [...lines, axis, ticks].join('\n');
}

/** Which of `features` fire when in one clip. */
export async function explain(o: ExplainOptions): Promise<Explanation> {
  if (!(o.frameSeconds > 0)) throw new ArdError(`explain: frameSeconds must be > 0 (got ${o.frameSeconds})`);
  let x: Tensor;
  let owned = false;
  if (o.acts instanceof Float32Array) {
    if (!o.d || o.acts.length % o.d) throw new ArdError(`explain: ${o.acts.length} values are not rows of d = ${o.d}`);
    x = tensor(o.engine, o.acts, [o.acts.length / o.d, o.d]);
    owned = true;
  } else {
    x = o.acts;
    if (x.rank !== 2) throw new ArdError(`explain: acts must be [T, d], got [${x.shape.join(', ')}]`);
  }
  const T = x.shape[0]!;
  try {
    const ids = o.features.map((f) => f.id);
    const acts = T ? await encodeFeatureActivations(o.engine, o.sae, x, ids) : ids.map(() => new Float32Array(0));
    const feats: ExplainedFeature[] = [];
    o.features.forEach((f, j) => {
      const a = acts[j]!;
      const ref = f.scores?.maxMean ?? 0;
      const thr = (o.threshold ?? 0) * ref;
      const segments = segmentsOf(a, o.frameSeconds, thr, o.mergeGap ?? 1);
      if (!segments.length) return;
      let peak = 0;
      let on = 0;
      for (const v of a) {
        peak = Math.max(peak, v);
        if (v > thr) on++;
      }
      feats.push({ feature: f.id, name: f.name ?? `#${f.id}`, segments, peak: Math.round(peak * 1e4) / 1e4, coverage: T ? on / T : 0, activations: Array.from(a, (v) => Math.round(v * 1e4) / 1e4) });
    });
    feats.sort((a, b) => a.segments[0]!.start - b.segments[0]!.start || b.peak - a.peak || a.feature - b.feature);
    const scaleOf = (id: number) => {
      const f = o.features.find((g) => g.id === id);
      const ref = f?.scores?.maxMean ?? 0;
      const peak = feats.find((g) => g.feature === id)?.peak ?? 0;
      return Math.max(ref, peak); // a token may exceed the best clip mean
    };
    const timeline = renderTimeline(
      feats.map((f) => ({ label: `${f.name} (#${f.feature})`, activations: f.activations, scale: scaleOf(f.feature) })),
      o.frameSeconds,
      o.width ?? 60,
    );
    return { duration: r3(T * o.frameSeconds), features: feats, timeline };
  } finally {
    if (owned) x.dispose();
  }
}
