// Small DSP toolkit for the corpus generators: FFT, fast convolution, biquads, level helpers.
// Self-contained on purpose: the corpus must not depend on the GPU audio front end.

export const SR = 16000;

export function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p <<= 1;
  return p;
}

/** In-place iterative radix-2 complex FFT; `inverse` also scales by 1/n. */
export function fft(re: Float64Array, im: Float64Array, inverse = false): void {
  const n = re.length;
  if ((n & (n - 1)) !== 0) throw new Error(`fft: length ${n} is not a power of two`);
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      let t = re[i]!; re[i] = re[j]!; re[j] = t;
      t = im[i]!; im[i] = im[j]!; im[j] = t;
    }
  }
  const sign = inverse ? 1 : -1;
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (sign * 2 * Math.PI) / len;
    const wr = Math.cos(ang);
    const wi = Math.sin(ang);
    const half = len >> 1;
    for (let i = 0; i < n; i += len) {
      let cr = 1;
      let ci = 0;
      for (let k = 0; k < half; k++) {
        const a = i + k;
        const b = a + half;
        const xr = re[b]! * cr - im[b]! * ci;
        const xi = re[b]! * ci + im[b]! * cr;
        re[b] = re[a]! - xr;
        im[b] = im[a]! - xi;
        re[a] = re[a]! + xr;
        im[a] = im[a]! + xi;
        const nr = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = nr;
      }
    }
  }
  if (inverse) {
    for (let i = 0; i < n; i++) {
      re[i] = re[i]! / n;
      im[i] = im[i]! / n;
    }
  }
}

/** Linear convolution of x with h, truncated to x's length. */
export function convolve(x: Float32Array, h: Float32Array): Float32Array {
  const n = nextPow2(x.length + h.length - 1);
  const ar = new Float64Array(n), ai = new Float64Array(n);
  const br = new Float64Array(n), bi = new Float64Array(n);
  ar.set(x);
  br.set(h);
  fft(ar, ai);
  fft(br, bi);
  for (let i = 0; i < n; i++) {
    const r = ar[i]! * br[i]! - ai[i]! * bi[i]!;
    ai[i] = ar[i]! * bi[i]! + ai[i]! * br[i]!;
    ar[i] = r;
  }
  fft(ar, ai, true);
  const y = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = ar[i]!;
  return y;
}

/**
 * Noise with power spectrum ∝ 1/f^alpha (0 white, 1 pink, 2 brown), shaped in the frequency
 * domain; bins below `fLow` Hz are zeroed so brown noise has no DC drift. Unit RMS.
 */
export function colouredNoise(gauss: () => number, n: number, alpha: number, fLow = 20): Float32Array {
  const m = nextPow2(n);
  const re = new Float64Array(m), im = new Float64Array(m);
  for (let i = 0; i < m; i++) re[i] = gauss();
  fft(re, im);
  for (let k = 0; k < m; k++) {
    const kk = k <= m / 2 ? k : m - k;
    const f = (kk * SR) / m;
    const g = f < fLow ? 0 : Math.pow(f / 1000, -alpha / 2);
    re[k] = re[k]! * g;
    im[k] = im[k]! * g;
  }
  fft(re, im, true);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) y[i] = re[i]!;
  return scaleToRms(y, 1);
}

export type BiquadKind = 'lowpass' | 'highpass' | 'bandpass';

/** Second-order IIR section (RBJ audio-EQ formulas), applied in place; returns x. */
export function biquad(x: Float32Array, kind: BiquadKind, f0: number, q = Math.SQRT1_2): Float32Array {
  const w = (2 * Math.PI * Math.min(f0, SR * 0.49)) / SR;
  const cw = Math.cos(w), sw = Math.sin(w);
  const alpha = sw / (2 * q);
  let b0: number, b1: number, b2: number;
  if (kind === 'lowpass') {
    b0 = (1 - cw) / 2; b1 = 1 - cw; b2 = (1 - cw) / 2;
  } else if (kind === 'highpass') {
    b0 = (1 + cw) / 2; b1 = -(1 + cw); b2 = (1 + cw) / 2;
  } else {
    b0 = alpha; b1 = 0; b2 = -alpha; // constant 0 dB peak gain
  }
  const a0 = 1 + alpha, a1 = -2 * cw, a2 = 1 - alpha;
  b0 /= a0; b1 /= a0; b2 /= a0;
  const c1 = a1 / a0, c2 = a2 / a0;
  let x1 = 0, x2 = 0, y1 = 0, y2 = 0;
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!;
    const yi = b0 * xi + b1 * x1 + b2 * x2 - c1 * y1 - c2 * y2;
    x2 = x1; x1 = xi; y2 = y1; y1 = yi;
    x[i] = yi;
  }
  return x;
}

export function rms(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s / Math.max(1, x.length));
}

export function peak(x: Float32Array): number {
  let p = 0;
  for (let i = 0; i < x.length; i++) {
    const a = Math.abs(x[i]!);
    if (a > p) p = a;
  }
  return p;
}

export function scale(x: Float32Array, g: number): Float32Array {
  for (let i = 0; i < x.length; i++) x[i] = x[i]! * g;
  return x;
}

export function scaleToRms(x: Float32Array, target: number): Float32Array {
  const r = rms(x);
  return r > 0 ? scale(x, target / r) : x;
}

export function scaleToPeak(x: Float32Array, target: number): Float32Array {
  const p = peak(x);
  return p > 0 ? scale(x, target / p) : x;
}

/** Raised-cosine fade in and out (avoids clicks at clip edges). */
export function fadeEdges(x: Float32Array, seconds = 0.01): Float32Array {
  const n = Math.min(Math.floor(seconds * SR), Math.floor(x.length / 2));
  for (let i = 0; i < n; i++) {
    const g = 0.5 - 0.5 * Math.cos((Math.PI * i) / n);
    x[i] = x[i]! * g;
    x[x.length - 1 - i] = x[x.length - 1 - i]! * g;
  }
  return x;
}

/** out += g * x (x may be shorter or longer; extra samples are dropped). */
export function addInto(out: Float32Array, x: Float32Array, g = 1, offset = 0): Float32Array {
  const end = Math.min(out.length, offset + x.length);
  for (let i = Math.max(0, offset); i < end; i++) out[i] = out[i]! + g * x[i - offset]!;
  return out;
}

export function samples(seconds: number): number {
  return Math.max(1, Math.round(seconds * SR));
}
