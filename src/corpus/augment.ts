// Augmentations for corpus clips: reverb, background noise at an SNR, telephone band-limiting,
// gain and a leading time offset. Each follows an AugmentPlan decided in plan.ts.
import { Rng } from './rng.js';
import { SR, biquad, colouredNoise, convolve, peak, rms, scale, scaleToPeak, scaleToRms } from './dsp.js';
import { resample } from '../audio/resample.js';
import type { AugmentPlan } from './plan.js';

/** Peak level of a clean clip; `gain` is relative to this. */
export const REF_PEAK = 0.7;
/** Nothing in the corpus peaks above this. */
export const MAX_PEAK = 0.95;

/** Exponentially decaying noise tail after a direct impulse (RT60 in seconds). */
export function reverbIR(rng: Rng, rt60: number, wet: number): Float32Array {
  const n = Math.floor(Math.min(1.2, rt60 * 1.2) * SR);
  const pre = Math.floor(rng.uniform(0.005, 0.02) * SR);
  const ir = new Float32Array(n);
  let e = 0;
  for (let i = pre; i < n; i++) {
    const t = (i - pre) / SR;
    ir[i] = rng.gauss() * Math.exp((-6.91 * t) / rt60);
    e += ir[i]! * ir[i]!;
  }
  // Tail energy = wet² relative to the direct path.
  const g = e > 0 ? wet / Math.sqrt(e) : 0;
  for (let i = pre; i < n; i++) ir[i] = ir[i]! * g;
  ir[0] = 1;
  return ir;
}

export function telephone(x: Float32Array, mode: 'band' | '8k'): Float32Array {
  if (mode === 'band') {
    for (let k = 0; k < 2; k++) {
      biquad(x, 'highpass', 300);
      biquad(x, 'lowpass', 3400);
    }
    return x;
  }
  const down = resample(x, SR, 8000);
  const up = resample(down, 8000, SR);
  const y = new Float32Array(x.length);
  y.set(up.subarray(0, x.length));
  return y;
}

/**
 * Applies `a` to x (16 kHz). `silent` clips (the silence concept) keep their tiny level instead of
 * being re-normalised. Order: reverb → noise → telephone → low-pass → clipping → gain → offset; the peak never exceeds
 * MAX_PEAK.
 */
export function applyAugment(x: Float32Array, a: AugmentPlan, rng: Rng, silent: boolean): Float32Array {
  const level = (y: Float32Array, before: number) => (silent ? scaleToRms(y, before) : scaleToPeak(y, REF_PEAK));
  if (a.reverb) {
    const before = rms(x);
    x = level(convolve(x, reverbIR(rng, a.reverb.rt60, a.reverb.wet)), before);
  }
  if (a.noise) {
    const alpha = a.noise.colour === 'white' ? 0 : a.noise.colour === 'pink' ? 1 : 2;
    const n = colouredNoise(() => rng.gauss(), x.length, alpha);
    const g = rms(x) / Math.pow(10, a.noise.snrDb / 20);
    for (let i = 0; i < x.length; i++) x[i] = x[i]! + g * n[i]!;
    if (!silent) scaleToPeak(x, REF_PEAK);
  }
  if (a.telephone) {
    x = telephone(x, a.telephone);
    if (!silent) scaleToPeak(x, REF_PEAK);
  }
  if (a.lowpass !== undefined) {
    for (let k = 0; k < 2; k++) biquad(x, 'lowpass', a.lowpass);
    if (!silent) scaleToPeak(x, REF_PEAK);
  }
  if (a.clip !== undefined && !silent) {
    // overdriven input: the waveform's top flattened at the converter's limit
    const lim = REF_PEAK;
    scale(x, Math.pow(10, a.clip / 20));
    for (let i = 0; i < x.length; i++) x[i] = Math.max(-lim, Math.min(lim, x[i]!));
  }
  if (a.gainDb !== undefined && !silent) scaleToPeak(x, Math.min(MAX_PEAK, REF_PEAK * Math.pow(10, a.gainDb / 20)));
  if (a.offset !== undefined) {
    const pad = Math.round(a.offset * SR);
    const y = new Float32Array(pad + x.length);
    y.set(x, pad);
    x = y;
  }
  const p = peak(x);
  if (p > MAX_PEAK) scale(x, MAX_PEAK / p);
  return x;
}
