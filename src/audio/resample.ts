// Band-limited resampling with a Kaiser-windowed sinc.
//
// Output sample n sits at input time t = n·fin/fout. It is Σ_j x[j]·g(t − j), where g is a
// low-pass sinc (cutoff just below the lower of the two Nyquist frequencies) under a Kaiser window
// of half-width H input samples. For a rational ratio fout/fin = L/M (after gcd) t has only L
// distinct fractional parts, so the filter is tabulated once per phase (polyphase) and each output
// costs 2H multiply-adds. Ratios with a huge L fall back to a fixed fine phase grid with linear
// interpolation between neighbouring phases.

export interface ResampleOptions {
  /** Cutoff as a fraction of the lower Nyquist frequency. */
  cutoff?: number;
  /** Stopband attenuation in dB (sets the number of taps). */
  attenuationDb?: number;
}

const MAX_EXACT_PHASES = 4096;
const INTERP_PHASES = 4096;

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Zeroth-order modified Bessel function of the first kind (power series; converges fast for x < 30). */
function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 200; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

interface Design {
  half: number; // H: taps on each side of the output time
  fc: number; // cutoff in cycles per input sample
  beta: number;
}

function design(fin: number, fout: number, opts: ResampleOptions): Design {
  const cutoff = opts.cutoff ?? 0.94;
  const atten = opts.attenuationDb ?? 80;
  const nyqLow = Math.min(fin, fout) / 2;
  const fc = (cutoff * nyqLow) / fin;
  // The transition band is centred on the cutoff and ends at the lower Nyquist frequency.
  const width = (2 * (1 - cutoff) * nyqLow) / fin;
  const beta = atten > 50 ? 0.1102 * (atten - 8.7) : atten >= 21 ? 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21) : 0;
  // Kaiser's estimate of the filter length for this attenuation and transition width.
  const taps = (atten - 7.95) / (2.285 * 2 * Math.PI * width);
  const half = Math.max(2, Math.ceil(taps / 2) + 1);
  return { half, fc, beta };
}

/** Filter taps for one fractional position `frac` in [0, 1): tap i multiplies x[floor(t) − H + 1 + i]. */
function phaseTaps(d: Design, frac: number, out: Float64Array, offset: number): void {
  const { half, fc, beta } = d;
  const i0b = besselI0(beta);
  let sum = 0;
  for (let i = 0; i < 2 * half; i++) {
    const tau = frac + half - 1 - i; // t − j
    const r = tau / half;
    let v = 0;
    if (Math.abs(r) < 1) {
      const x = 2 * fc * tau;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      v = 2 * fc * sinc * (besselI0(beta * Math.sqrt(1 - r * r)) / i0b);
    }
    out[offset + i] = v;
    sum += v;
  }
  // Unit DC gain in every phase, so a constant stays exactly constant.
  for (let i = 0; i < 2 * half; i++) out[offset + i] /= sum;
}

/**
 * The taps at fractional position `frac` ∈ [0, 1), linearly interpolated between the two nearest rows
 * of a table of P + 1 phases (W taps each), into `out` (the one-shot and streaming resamplers share it,
 * so both give the same bits).
 */
function mixPhases(table: Float64Array, P: number, W: number, frac: number, out: Float64Array): void {
  const fp = frac * P;
  const p0 = Math.min(P - 1, Math.floor(fp));
  const w1 = fp - p0;
  const w0 = 1 - w1;
  const off0 = p0 * W;
  for (let i = 0; i < W; i++) out[i] = w0 * table[off0 + i]! + w1 * table[off0 + W + i]!;
}

/** Number of output samples for `n` input samples: ceil(n·fout/fin). */
export function resampledLength(n: number, fin: number, fout: number): number {
  const g = gcd(fin, fout);
  const L = fout / g;
  const M = fin / g;
  return Math.ceil((n * L) / M);
}

/**
 * Resample `x` from `fin` Hz to `fout` Hz (both positive integers). Samples outside the clip count
 * as zero; output sample n is at time n/fout, so the two signals are aligned at t = 0.
 * Same rate returns a copy.
 */
export function resample(
  x: Float32Array | Float64Array,
  fin: number,
  fout: number,
  opts: ResampleOptions = {},
): Float32Array {
  if (!Number.isInteger(fin) || !Number.isInteger(fout) || fin <= 0 || fout <= 0) {
    throw new RangeError(`resample: rates must be positive integers (got ${fin} → ${fout})`);
  }
  if (fin === fout) return Float32Array.from(x);
  const g = gcd(fin, fout);
  const L = fout / g;
  const M = fin / g;
  const d = design(fin, fout, opts);
  const H = d.half;
  const W = 2 * H;
  const n = x.length;
  const nOut = resampledLength(n, fin, fout);
  const y = new Float32Array(nOut);
  if (n === 0) return y;

  // Samples outside [0, n) are zero: outputs whose taps all fall inside take the fast loop.
  const dot = (start: number, table: Float64Array, off: number): number => {
    let acc = 0;
    if (start >= 0 && start + W <= n) {
      // W is even: two accumulators shorten the dependency chain.
      let acc2 = 0;
      for (let i = 0; i < W; i += 2) {
        acc += x[start + i] * table[off + i];
        acc2 += x[start + i + 1] * table[off + i + 1];
      }
      acc += acc2;
    } else {
      const i0 = Math.max(0, -start);
      const i1 = Math.min(W, n - start);
      for (let i = i0; i < i1; i++) acc += x[start + i] * table[off + i];
    }
    return acc;
  };

  if (L <= MAX_EXACT_PHASES) {
    const table = new Float64Array(L * W);
    for (let p = 0; p < L; p++) phaseTaps(d, p / L, table, p * W);
    // t = n·M/L; base = floor(t), phase = (n·M) mod L, tracked incrementally in integers.
    let base = 0;
    let phase = 0;
    const step = Math.floor(M / L);
    const stepRem = M % L;
    for (let o = 0; o < nOut; o++) {
      y[o] = dot(base - H + 1, table, phase * W);
      base += step;
      phase += stepRem;
      if (phase >= L) {
        phase -= L;
        base += 1;
      }
    }
    return y;
  }

  // Fine phase grid (INTERP_PHASES + 1 rows so phase P interpolates towards frac = 1).
  const P = INTERP_PHASES;
  const table = new Float64Array((P + 1) * W);
  for (let p = 0; p <= P; p++) phaseTaps(d, p / P, table, p * W);
  const mixed = new Float64Array(W);
  for (let o = 0; o < nOut; o++) {
    // Exact integer arithmetic for the position: o·M = base·L + rem.
    const num = o * M;
    const base = Math.floor(num / L);
    mixPhases(table, P, W, (num - base * L) / L, mixed);
    y[o] = dot(base - H + 1, mixed, 0);
  }
  return y;
}

/**
 * resample() a block at a time, for audio read as a stream: push() each block of input as it comes
 * and end() after the last. The outputs, concatenated, are resample() of the whole signal bit for
 * bit: the same taps, and each output sample summed in the same order over the same inputs (an
 * output whose taps reach past the input so far waits for more input or for end()). Memory is the
 * filter and about 2H input samples, whatever the length of the signal.
 */
export class StreamResampler {
  readonly fin: number;
  readonly fout: number;
  private readonly L: number;
  private readonly M: number;
  private readonly H: number;
  private readonly W: number;
  private readonly exact: boolean;
  private readonly table: Float64Array;
  private readonly mixed: Float64Array;
  /** Input samples [bufStart, bufStart + bufLen) of the signal. */
  private buf = new Float32Array(0);
  private bufStart = 0;
  private bufLen = 0;
  /** Input samples pushed so far. */
  private n = 0;
  /** The next output sample, and its position base + phase/L in the input (exact path). */
  private o = 0;
  private base = 0;
  private phase = 0;
  private ended = false;

  constructor(fin: number, fout: number, opts: ResampleOptions = {}) {
    if (!Number.isInteger(fin) || !Number.isInteger(fout) || fin <= 0 || fout <= 0) {
      throw new RangeError(`resample: rates must be positive integers (got ${fin} → ${fout})`);
    }
    this.fin = fin;
    this.fout = fout;
    const g = gcd(fin, fout);
    this.L = fout / g;
    this.M = fin / g;
    if (fin === fout) {
      this.H = this.W = 0;
      this.exact = true;
      this.table = this.mixed = new Float64Array(0);
      return;
    }
    const d = design(fin, fout, opts);
    this.H = d.half;
    this.W = 2 * d.half;
    this.exact = this.L <= MAX_EXACT_PHASES;
    if (this.exact) {
      this.table = new Float64Array(this.L * this.W);
      for (let p = 0; p < this.L; p++) phaseTaps(d, p / this.L, this.table, p * this.W);
      this.mixed = new Float64Array(0);
    } else {
      const P = INTERP_PHASES;
      this.table = new Float64Array((P + 1) * this.W);
      for (let p = 0; p <= P; p++) phaseTaps(d, p / P, this.table, p * this.W);
      this.mixed = new Float64Array(this.W);
    }
  }

  /** Output samples given so far. */
  get outputs(): number {
    return this.o;
  }

  /** Take the next block of input; returns the output samples it completes. */
  push(x: Float32Array): Float32Array {
    if (this.ended) throw new Error('StreamResampler: push after end');
    if (this.fin === this.fout) {
      this.n += x.length;
      this.o += x.length;
      return Float32Array.from(x);
    }
    this.append(x);
    return this.run(Infinity);
  }

  /** The signal has ended: returns the output samples still due (resampledLength in all). */
  end(): Float32Array {
    if (this.ended) return new Float32Array(0);
    this.ended = true;
    if (this.fin === this.fout || this.n === 0) return new Float32Array(0);
    return this.run(resampledLength(this.n, this.fin, this.fout));
  }

  private append(x: Float32Array): void {
    // Input before the next output's first tap is never read again.
    const keepFrom = Math.max(this.bufStart, this.nextStart());
    const drop = Math.min(this.bufLen, keepFrom - this.bufStart);
    const need = this.bufLen - drop + x.length;
    if (need > this.buf.length) {
      const grown = new Float32Array(Math.max(need, 2 * this.buf.length, 2 * this.W + 1024));
      grown.set(this.buf.subarray(drop, this.bufLen));
      this.buf = grown;
    } else if (drop > 0) {
      this.buf.copyWithin(0, drop, this.bufLen);
    }
    this.bufStart += drop;
    this.bufLen -= drop;
    this.buf.set(x, this.bufLen);
    this.bufLen += x.length;
    this.n += x.length;
  }

  /** First input index the next output's taps cover. */
  private nextStart(): number {
    if (this.exact) return this.base - this.H + 1;
    return Math.floor((this.o * this.M) / this.L) - this.H + 1;
  }

  /**
   * Outputs from this.o on, while their taps lie in the input so far (or, after end(), up to
   * `until`). The sum is resample()'s: two accumulators where all taps fall inside the signal,
   * one over the taps inside it otherwise.
   */
  private run(until: number): Float32Array {
    const { H, W, L, M, buf, bufStart } = this;
    const n = this.n;
    const ended = this.ended;
    // Room for the outputs due: all up to `until` at the end, else those whose last tap
    // (floor(o·M/L) + H) is below n, o < (n − H)·L/M (+1 against rounding).
    const due = ended ? until - this.o : Math.max(0, Math.ceil(((n - H) * L) / M) - this.o + 1);
    const y = new Float32Array(due);
    let k = 0;
    const dot = (start: number, table: Float64Array, off: number): number => {
      let acc = 0;
      const at = start - bufStart;
      if (start >= 0 && start + W <= n) {
        let acc2 = 0;
        for (let i = 0; i < W; i += 2) {
          acc += buf[at + i]! * table[off + i]!;
          acc2 += buf[at + i + 1]! * table[off + i + 1]!;
        }
        acc += acc2;
      } else {
        const i0 = Math.max(0, -start);
        const i1 = Math.min(W, n - start);
        for (let i = i0; i < i1; i++) acc += buf[at + i]! * table[off + i]!;
      }
      return acc;
    };
    // the loop state in locals (written back below): this is the hot loop
    let o = this.o;
    if (this.exact) {
      const step = Math.floor(M / L);
      const stepRem = M % L;
      const table = this.table;
      let base = this.base;
      let phase = this.phase;
      while (o < until) {
        const start = base - H + 1;
        if (!ended && start + W > n) break;
        if (k === y.length) throw new Error('StreamResampler: output estimate too small');
        y[k++] = dot(start, table, phase * W);
        o++;
        base += step;
        phase += stepRem;
        if (phase >= L) {
          phase -= L;
          base += 1;
        }
      }
      this.base = base;
      this.phase = phase;
    } else {
      const P = INTERP_PHASES;
      const { table, mixed } = this;
      while (o < until) {
        const num = o * M;
        const base = Math.floor(num / L);
        const start = base - H + 1;
        if (!ended && start + W > n) break;
        mixPhases(table, P, W, (num - base * L) / L, mixed);
        if (k === y.length) throw new Error('StreamResampler: output estimate too small');
        y[k++] = dot(start, mixed, 0);
        o++;
      }
    }
    this.o = o;
    return k === y.length ? y : y.slice(0, k);
  }
}
