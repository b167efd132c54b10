// AR&D explain: which named features fire when, for one clip's per-token activations.
// Input: residual rows [T, d] of one clip at the SAE's layer (on the GPU or host) and the seconds
// per row. Output: per feature its firing segments (maximal runs of rows with z > threshold, gaps
// of ≤ mergeGap rows bridged) with the peak activation, plus a compact terminal timeline.
// ExplainStream takes the activations a block of rows at a time (a long clip, window by window:
// stages.ts explainClip) and keeps only what the output needs.
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
  const W = timelineBuckets(T, width);
  return renderBuckets(rows.map((r) => ({ label: r.label, buckets: bucketPeaks(r.activations, T, W), scale: r.scale })), T * frameSeconds);
}

/** Buckets of a timeline over T rows. */
function timelineBuckets(T: number, width: number): number {
  return Math.max(1, Math.min(width, T));
}

/** Rows [t0, t1) of bucket b of W over T rows. */
function bucketRows(b: number, T: number, W: number): [number, number] {
  const t0 = Math.floor((b * T) / W);
  return [t0, Math.max(t0 + 1, Math.floor(((b + 1) * T) / W))];
}

/** Each bucket's peak activation (0 where none is above 0). */
function bucketPeaks(acts: ArrayLike<number>, T: number, W: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < W; b++) {
    const [t0, t1] = bucketRows(b, T, W);
    let m = 0;
    for (let t = t0; t < t1 && t < acts.length; t++) m = Math.max(m, acts[t]!);
    out.push(m);
  }
  return out;
}

function renderBuckets(rows: { label: string; buckets: readonly number[]; scale: number }[], duration: number): string {
  if (!rows.length) return '(no feature fires)';
  const W = rows[0]!.buckets.length;
  const labelW = Math.min(24, Math.max(...rows.map((r) => r.label.length)));
  const lines: string[] = [];
  for (const r of rows) {
    let bar = '';
    let peak = 0;
    for (const m of r.buckets) {
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

/** An explained feature less its per-row activations (what a streamed explanation keeps). */
export type FeatureSummary = Omit<ExplainedFeature, 'activations'>;

/** An Explanation less the per-row activations. */
export interface ExplanationSummary {
  duration: number;
  features: FeatureSummary[];
  timeline: string;
}

export interface ExplainStreamOptions {
  /** The clip's rows, all told (the timeline's buckets depend on it). */
  rows: number;
  frameSeconds: number;
  features: ExplainOptions['features'];
  threshold?: number;
  mergeGap?: number;
  width?: number;
  /**
   * Keep every segment (default). false keeps each feature's first only, which orders the
   * timeline's rows: memory then does not grow with the clip at all, and only timeline() answers.
   */
  keepSegments?: boolean;
}

function r4(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}

/**
 * explain() with the activations handed over a block of rows at a time, in order: it keeps, per
 * feature, its segments, peak, firing count and the timeline's bucket peaks, never the rows
 * themselves, so a long clip's explanation needs memory for its output only. finish() gives what
 * explain() gives for all the rows, less the per-row activations.
 */
export class ExplainStream {
  private readonly T: number;
  private readonly W: number;
  private readonly gap: number;
  private readonly keep: boolean;
  private readonly state: {
    thr: number;
    segments: Segment[];
    cur: { s: number; e: number; peak: number } | null;
    peak: number;
    on: number;
    buckets: number[];
    /** The bucket row t falls in, and the first row past it. */
    b: number;
    bEnd: number;
  }[];
  private t = 0;

  constructor(private readonly o: ExplainStreamOptions) {
    if (!(o.frameSeconds > 0)) throw new ArdError(`explain: frameSeconds must be > 0 (got ${o.frameSeconds})`);
    if (!(Number.isInteger(o.rows) && o.rows >= 0)) throw new ArdError(`explain: rows = ${o.rows} must be a non-negative integer`);
    this.T = o.rows;
    this.W = timelineBuckets(o.rows, o.width ?? 60);
    this.gap = o.mergeGap ?? 1;
    this.keep = o.keepSegments ?? true;
    this.state = o.features.map((f) => ({
      thr: (o.threshold ?? 0) * (f.scores?.maxMean ?? 0),
      segments: [],
      cur: null,
      peak: 0,
      on: 0,
      buckets: new Array<number>(this.W).fill(0),
      b: 0,
      bEnd: bucketRows(0, this.T, this.W)[1],
    }));
  }

  /** The next rows' activations, one array per feature (in the features' order), all of one length. */
  push(acts: readonly Float32Array[]): void {
    if (acts.length !== this.state.length) throw new ArdError(`explain: ${acts.length} activation rows for ${this.state.length} features`);
    const n = acts[0]?.length ?? 0;
    if (acts.some((a) => a.length !== n)) throw new ArdError('explain: activation blocks of different lengths');
    if (this.t + n > this.T) throw new ArdError(`explain: more than the ${this.T} rows announced`);
    const fs = this.o.frameSeconds;
    this.state.forEach((st, j) => {
      const a = acts[j]!;
      for (let i = 0; i < n; i++) {
        const t = this.t + i;
        const v = a[i]!;
        // segmentsOf, a row at a time
        if (v > st.thr) {
          st.on++;
          if (st.cur && t - st.cur.e - 1 <= this.gap) {
            st.cur.e = t;
            st.cur.peak = Math.max(st.cur.peak, v);
          } else {
            if (st.cur && (this.keep || !st.segments.length)) st.segments.push(seg(st.cur, fs));
            st.cur = { s: t, e: t, peak: v };
          }
        }
        st.peak = Math.max(st.peak, v);
        while (t >= st.bEnd) st.bEnd = bucketRows(++st.b, this.T, this.W)[1];
        st.buckets[st.b] = Math.max(st.buckets[st.b]!, r4(v));
      }
    });
    this.t += n;
  }

  finish(): ExplanationSummary {
    if (!this.keep) throw new Error('ExplainStream: finish() needs keepSegments (timeline() does not)');
    return this.finishIndexed().r;
  }

  /** The duration and the terminal timeline (all that keepSegments false allows). */
  timeline(): { duration: number; timeline: string } {
    const { duration, timeline } = this.finishIndexed().r;
    return { duration, timeline };
  }

  /** @internal finish(), with each feature's index in the features given. */
  finishIndexed(): { r: ExplanationSummary; index: number[] } {
    if (this.t !== this.T) throw new ArdError(`explain: ${this.t} rows of the ${this.T} announced`);
    const { T } = this;
    const fs = this.o.frameSeconds;
    const feats: (FeatureSummary & { buckets: number[]; j: number })[] = [];
    this.o.features.forEach((f, j) => {
      const st = this.state[j]!;
      const segments = st.cur ? [...st.segments, seg(st.cur, fs)] : st.segments;
      if (!segments.length) return;
      feats.push({ feature: f.id, name: f.name ?? `#${f.id}`, segments, peak: r4(st.peak), coverage: T ? st.on / T : 0, buckets: st.buckets, j });
    });
    feats.sort((a, b) => a.segments[0]!.start - b.segments[0]!.start || b.peak - a.peak || a.feature - b.feature);
    const scaleOf = (id: number) => {
      const f = this.o.features.find((g) => g.id === id);
      const ref = f?.scores?.maxMean ?? 0;
      const peak = feats.find((g) => g.feature === id)?.peak ?? 0;
      return Math.max(ref, peak); // a token may exceed the best clip mean
    };
    const timeline = renderBuckets(
      feats.map((f) => ({ label: `${f.name} (#${f.feature})`, buckets: f.buckets, scale: scaleOf(f.feature) })),
      T * fs,
    );
    return { r: { duration: r3(T * fs), features: feats.map(({ buckets: _b, j: _j, ...rest }) => rest), timeline }, index: feats.map((f) => f.j) };
  }
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
    const s = new ExplainStream({ ...o, rows: T });
    s.push(acts);
    const { r, index } = s.finishIndexed();
    return { ...r, features: r.features.map((f, i) => ({ ...f, activations: Array.from(acts[index[i]!]!, r4) })) };
  } finally {
    if (owned) x.dispose();
  }
}
