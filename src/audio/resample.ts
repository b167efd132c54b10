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
    const frac = (num - base * L) / L;
    const fp = frac * P;
    const p0 = Math.min(P - 1, Math.floor(fp));
    const w1 = fp - p0;
    const w0 = 1 - w1;
    const off0 = p0 * W;
    for (let i = 0; i < W; i++) mixed[i] = w0 * table[off0 + i] + w1 * table[off0 + W + i];
    y[o] = dot(base - H + 1, mixed, 0);
  }
  return y;
}
