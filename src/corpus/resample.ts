// Band-limited resampler for the corpus (espeak-ng speaks at 22050 Hz; the corpus is 16 kHz).
// Windowed-sinc interpolation with a Kaiser window. For rational ratios with a modest number of
// phases (22050→16000 has 320) the filter is tabulated per phase; other ratios compute the taps
// per output sample. Self-contained: the project's main resampler lives in src/audio.

export interface ResampleOptions {
  /** Zero crossings of the sinc on each side, at the lower of the two rates (default 16). */
  zeros?: number;
  /** Cutoff as a fraction of the lower Nyquist frequency (default 0.94). */
  rolloff?: number;
  /** Kaiser window shape (default 8.6 ≈ 80 dB side lobes). */
  beta?: number;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Zeroth-order modified Bessel function of the first kind (power series). */
function besselI0(x: number): number {
  let sum = 1, term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 64; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

export function resample(x: Float32Array, inRate: number, outRate: number, opts: ResampleOptions = {}): Float32Array {
  if (!(inRate > 0 && outRate > 0 && Number.isInteger(inRate) && Number.isInteger(outRate))) {
    throw new Error(`resample: rates must be positive integers (got ${inRate} → ${outRate})`);
  }
  if (inRate === outRate) return Float32Array.from(x);
  const zeros = opts.zeros ?? 16;
  const rolloff = opts.rolloff ?? 0.94;
  const beta = opts.beta ?? 8.6;
  const g = gcd(inRate, outRate);
  const up = outRate / g; // L: number of phases
  const down = inRate / g; // M
  const fc = 0.5 * Math.min(1, outRate / inRate) * rolloff; // cycles per input sample
  const hw = zeros / (2 * fc); // half width in input samples
  const J = Math.ceil(hw) + 1;
  const width = 2 * J + 1;
  const i0b = besselI0(beta);
  const kernel = (d: number): number => {
    const r = d / hw;
    if (r <= -1 || r >= 1) return 0;
    const a = 2 * fc * d;
    const sinc = a === 0 ? 1 : Math.sin(Math.PI * a) / (Math.PI * a);
    return 2 * fc * sinc * (besselI0(beta * Math.sqrt(1 - r * r)) / i0b);
  };
  // Taps for fractional position `frac`, normalised to unit DC gain.
  const taps = (frac: number, out: Float64Array): void => {
    let s = 0;
    for (let j = -J; j <= J; j++) {
      const v = kernel(frac - j);
      out[j + J] = v;
      s += v;
    }
    for (let j = 0; j < width; j++) out[j] = out[j]! / s;
  };

  const nOut = Math.round((x.length * outRate) / inRate);
  const y = new Float32Array(nOut);
  const table = up <= 4096 ? new Float64Array(up * width) : null;
  if (table) {
    const tmp = new Float64Array(width);
    for (let p = 0; p < up; p++) {
      taps(p / up, tmp);
      table.set(tmp, p * width);
    }
  }
  const scratch = new Float64Array(width);
  const n = x.length;
  for (let o = 0; o < nOut; o++) {
    const num = o * down; // exact integer position × up
    const i0 = Math.floor(num / up);
    const p = num - i0 * up;
    let w: Float64Array;
    let base = 0;
    if (table) {
      w = table;
      base = p * width;
    } else {
      taps(p / up, scratch);
      w = scratch;
    }
    let acc = 0;
    const kLo = i0 - J;
    if (kLo >= 0 && i0 + J < n) {
      for (let j = 0; j < width; j++) acc += w[base + j]! * x[kLo + j]!;
    } else {
      for (let j = 0; j < width; j++) {
        const k = kLo + j;
        if (k >= 0 && k < n) acc += w[base + j]! * x[k]!;
      }
    }
    y[o] = acc;
  }
  return y;
}
