// Pure TypeScript sound generators for the probe corpus. Each takes a seeded Rng and a duration in
// seconds and returns mono Float32Array samples at 16 kHz, roughly at peak ≤ 1 (callers set the
// final level). Parameters are drawn from the Rng so each call gives a different instance of the
// same concept.
import { Rng } from './rng.js';
import { SR, addInto, biquad, colouredNoise, fadeEdges, samples, scaleToPeak } from './dsp.js';
import { buzzMelody, chime, music } from './music.js';

export type Generator = (rng: Rng, seconds: number) => Float32Array;

const TAU = 2 * Math.PI;

/** Sine whose instantaneous frequency (Hz) is given per sample; returns the samples. */
function sineFromFreq(freq: (t: number) => number, n: number, phase0 = 0): Float32Array {
  const y = new Float32Array(n);
  let ph = phase0;
  for (let i = 0; i < n; i++) {
    y[i] = Math.sin(ph);
    ph += (TAU * freq(i / SR)) / SR;
    if (ph > TAU) ph -= TAU;
  }
  return y;
}

function tone(rng: Rng, seconds: number, lo: number, hi: number): Float32Array {
  const f = rng.logUniform(lo, hi);
  const y = sineFromFreq(() => f, samples(seconds), rng.uniform(0, TAU));
  return fadeEdges(scaleToPeak(y, 0.8), 0.02);
}

/** PolyBLEP correction for a unit step at phase 0 (t in [0,1), dt = f/SR). */
function polyBlep(t: number, dt: number): number {
  if (t < dt) {
    const x = t / dt;
    return x + x - x * x - 1;
  }
  if (t > 1 - dt) {
    const x = (t - 1) / dt;
    return x * x + x + x + 1;
  }
  return 0;
}

function buzz(rng: Rng, seconds: number, shape: 'square' | 'saw'): Float32Array {
  const n = samples(seconds);
  const f0 = rng.logUniform(70, 400);
  const vib = rng.chance(0.3) ? rng.uniform(0.002, 0.01) : 0;
  const vibRate = rng.uniform(3, 6);
  const y = new Float32Array(n);
  let t = rng.next();
  for (let i = 0; i < n; i++) {
    const f = f0 * (1 + vib * Math.sin((TAU * vibRate * i) / SR));
    const dt = f / SR;
    let v: number;
    if (shape === 'saw') {
      v = 2 * t - 1 - polyBlep(t, dt);
    } else {
      v = t < 0.5 ? 1 : -1;
      v += polyBlep(t, dt);
      const t2 = (t + 0.5) % 1;
      v -= polyBlep(t2, dt);
    }
    y[i] = v;
    t += dt;
    if (t >= 1) t -= 1;
  }
  return fadeEdges(scaleToPeak(y, 0.7), 0.02);
}

function chord(rng: Rng, seconds: number): Float32Array {
  const n = samples(seconds);
  const root = rng.logUniform(180, 450);
  const shapes = [[0, 4, 7], [0, 3, 7], [0, 4, 7, 11], [0, 5, 7], [0, 4, 7, 12], [0, 3, 7, 10]];
  const shape = rng.pick(shapes);
  const y = new Float32Array(n);
  for (const semis of shape) {
    const f = root * Math.pow(2, semis / 12) * (1 + rng.uniform(-0.002, 0.002));
    for (const [h, a] of [[1, 1], [2, 0.35], [3, 0.15]] as const) {
      if (f * h > SR * 0.45) continue;
      addInto(y, sineFromFreq(() => f * h, n, rng.uniform(0, TAU)), a);
    }
  }
  // Gentle attack and release, like a sustained keyboard chord.
  const att = Math.floor(0.03 * SR), rel = Math.floor(Math.min(0.3, seconds / 4) * SR);
  for (let i = 0; i < n; i++) {
    const g = Math.min(1, i / att, (n - 1 - i) / rel);
    y[i] = y[i]! * Math.max(0, g);
  }
  return scaleToPeak(y, 0.8);
}

function chirp(rng: Rng, seconds: number, rising: boolean): Float32Array {
  const n = samples(seconds);
  const fLo = rng.logUniform(150, 600);
  const fHi = rng.logUniform(2000, 6000);
  // Either one sweep across the clip or a train of short sweeps.
  const period = rng.chance(0.5) ? seconds : rng.uniform(0.3, 1.0);
  const gap = period === seconds ? 0 : rng.uniform(0.05, 0.2);
  const sweep = period - gap;
  const y = new Float32Array(n);
  let ph = 0;
  for (let i = 0; i < n; i++) {
    const t = i / SR;
    const tt = t % period;
    if (tt >= sweep) {
      y[i] = 0;
      continue;
    }
    const u = tt / sweep;
    const f = rising ? fLo * Math.pow(fHi / fLo, u) : fHi * Math.pow(fLo / fHi, u);
    ph += (TAU * f) / SR;
    const env = Math.min(1, tt / 0.01, (sweep - tt) / 0.01);
    y[i] = Math.sin(ph) * env;
  }
  return fadeEdges(scaleToPeak(y, 0.8));
}

function noise(rng: Rng, seconds: number, alpha: number): Float32Array {
  const y = colouredNoise(() => rng.gauss(), samples(seconds), alpha);
  return fadeEdges(scaleToPeak(y, 0.8), 0.02);
}

/** Exponentially decaying sinusoid, added at `at` seconds. */
function ping(y: Float32Array, at: number, f: number, tau: number, amp: number, phase = 0, glide = 1): void {
  const start = Math.floor(at * SR);
  const len = Math.min(y.length - start, Math.floor(tau * 6 * SR));
  let ph = phase;
  for (let i = 0; i < len; i++) {
    const t = i / SR;
    const g = glide === 1 ? 1 : Math.pow(glide, Math.min(1, t / (tau * 2)));
    ph += (TAU * f * g) / SR;
    y[start + i] = y[start + i]! + amp * Math.exp(-t / tau) * Math.sin(ph);
  }
}

/** Decaying noise burst (optionally band-passed), added at `at` seconds. */
function burst(rng: Rng, y: Float32Array, at: number, tau: number, amp: number, band?: [number, number]): void {
  const start = Math.floor(at * SR);
  const len = Math.min(y.length - start, Math.floor(tau * 6 * SR));
  if (len <= 0) return;
  const b = new Float32Array(len);
  for (let i = 0; i < len; i++) b[i] = rng.gauss() * Math.exp(-i / SR / tau);
  if (band) biquad(b, 'bandpass', band[0], band[1]);
  addInto(y, b, amp, start);
}

function rain(rng: Rng, seconds: number): Float32Array {
  const n = samples(seconds);
  const bed = colouredNoise(() => rng.gauss(), n, 0.5);
  biquad(bed, 'highpass', rng.uniform(300, 800));
  const y = new Float32Array(n);
  addInto(y, bed, rng.uniform(0.05, 0.15));
  const rate = rng.logUniform(150, 900);
  let t = 0;
  for (;;) {
    t += -Math.log(1 - rng.next()) / rate;
    if (t >= seconds) break;
    const a = Math.pow(rng.next(), 2) * 0.6;
    ping(y, t, rng.logUniform(1500, 6500), rng.uniform(0.0008, 0.004), a, rng.uniform(0, TAU));
    if (rng.chance(0.5)) burst(rng, y, t, rng.uniform(0.0005, 0.002), a * 0.5);
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.05);
}

function ticking(rng: Rng, seconds: number): Float32Array {
  const y = new Float32Array(samples(seconds));
  const rate = rng.pick([1.5, 2, 3, 4, 5, 6]); // several tempos, at least two ticks per second of clip
  const f = rng.uniform(1800, 5000);
  const tau = rng.uniform(0.0015, 0.005);
  const tickTock = rng.chance(0.5);
  let k = 0;
  for (let t = rng.uniform(0.02, 1 / rate); t < seconds - 0.03; t += 1 / rate, k++) {
    const fk = tickTock && k % 2 ? f * 0.8 : f;
    ping(y, t, fk, tau, 1, rng.uniform(0, TAU));
    burst(rng, y, t, tau * 0.3, 0.3);
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.005);
}

function alarm(rng: Rng, seconds: number): Float32Array {
  const n = samples(seconds);
  const f1 = rng.logUniform(800, 3000);
  const f2 = rng.chance(0.4) ? f1 * rng.uniform(0.7, 0.85) : f1;
  const on = rng.uniform(0.08, 0.3);
  const off = rng.uniform(0.05, 0.25);
  const bright = rng.chance(0.5);
  const period = on + off;
  const y = new Float32Array(n);
  let ph = 0;
  for (let i = 0; i < n; i++) {
    const t = i / SR;
    const k = Math.floor(t / period);
    const tt = t - k * period;
    const f = k % 2 ? f2 : f1;
    ph += (TAU * f) / SR;
    if (tt >= on) continue;
    const env = Math.min(1, tt / 0.005, (on - tt) / 0.005);
    y[i] = env * (Math.sin(ph) + (bright ? 0.3 * Math.sin(3 * ph) : 0));
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.005);
}

function knock(rng: Rng, y: Float32Array, at: number, f: number, amp: number): void {
  ping(y, at, f, rng.uniform(0.012, 0.03), amp, 0);
  ping(y, at, f * rng.uniform(1.9, 2.6), rng.uniform(0.006, 0.015), amp * 0.5, 0);
  burst(rng, y, at, 0.003, amp * 0.4, [f * 3, 1]);
}

function knocking(rng: Rng, seconds: number): Float32Array {
  const y = new Float32Array(samples(seconds));
  const f = rng.uniform(120, 400);
  let t = rng.uniform(0.05, 0.3);
  while (t < seconds - 0.1) {
    const count = rng.int(2, 4);
    const gap = rng.uniform(0.12, 0.25);
    for (let k = 0; k < count && t < seconds - 0.1; k++, t += gap * rng.uniform(0.9, 1.1)) {
      knock(rng, y, t, f * rng.uniform(0.95, 1.05), rng.uniform(0.7, 1));
    }
    t += rng.uniform(0.4, 1.2);
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.005);
}

function silence(rng: Rng, seconds: number): Float32Array {
  // A very low noise floor (about −80 to −64 dBFS RMS), not digital zero.
  const level = rng.logUniform(1e-4, 6e-4);
  const y = colouredNoise(() => rng.gauss(), samples(seconds), rng.uniform(0, 1));
  for (let i = 0; i < y.length; i++) y[i] = y[i]! * level;
  return y;
}

function siren(rng: Rng, seconds: number): Float32Array {
  const n = samples(seconds);
  const fc = rng.uniform(650, 1100);
  const dev = rng.uniform(0.2, 0.45) * fc;
  const fm = rng.uniform(0.25, 1.2);
  const p0 = rng.uniform(0, TAU);
  const y = new Float32Array(n);
  let ph = 0;
  for (let i = 0; i < n; i++) {
    const f = fc + dev * Math.sin(p0 + (TAU * fm * i) / SR);
    ph += (TAU * f) / SR;
    y[i] = Math.sin(ph) + 0.3 * Math.sin(2 * ph) + 0.15 * Math.sin(3 * ph);
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.03);
}

function bell(rng: Rng, seconds: number): Float32Array {
  const y = new Float32Array(samples(seconds));
  const f0 = rng.logUniform(250, 1200);
  const ratios = [0.5, 1, 1.19, 1.5, 2, 2.5, 2.66, 3.01, 4.1];
  const t0 = rng.uniform(0.6, 2.2);
  const strikes = [rng.uniform(0, 0.1)];
  if (seconds > 1.5 && rng.chance(0.5)) strikes.push(rng.uniform(0.8, seconds - 0.5));
  for (const at of strikes) {
    for (const r of ratios) {
      const f = f0 * r * (1 + rng.uniform(-0.02, 0.02));
      if (f > SR * 0.45) continue;
      ping(y, at, f, t0 / Math.sqrt(r * 2), rng.uniform(0.2, 1) / Math.sqrt(r), rng.uniform(0, TAU));
    }
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.01);
}

function clapping(rng: Rng, seconds: number): Float32Array {
  const y = new Float32Array(samples(seconds));
  const applause = rng.chance(0.35);
  const rate = applause ? rng.uniform(15, 40) : 1 / rng.uniform(0.25, 0.6);
  const centre = rng.uniform(900, 2500);
  let t = rng.uniform(0.02, 0.2);
  while (t < seconds - 0.05) {
    burst(rng, y, t, rng.uniform(0.006, 0.02), rng.uniform(0.6, 1), [centre * rng.uniform(0.8, 1.25), 1.2]);
    t += applause ? -Math.log(1 - rng.next()) / rate : (1 / rate) * rng.uniform(0.92, 1.08);
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.01);
}

function engineHum(rng: Rng, seconds: number): Float32Array {
  const n = samples(seconds);
  const f0 = rng.logUniform(25, 60);
  const fam = rng.uniform(2, 8);
  const depth = rng.uniform(0.15, 0.4);
  const drift = rng.uniform(0.005, 0.02);
  const driftRate = rng.uniform(0.1, 0.4);
  const y = new Float32Array(n);
  const maxH = Math.floor(1500 / f0);
  const amps: number[] = [];
  const phases: number[] = [];
  for (let h = 1; h <= maxH; h++) {
    amps.push(rng.uniform(0.5, 1) / Math.pow(h, 0.8));
    phases.push(rng.uniform(0, TAU));
  }
  let ph = 0;
  for (let i = 0; i < n; i++) {
    const t = i / SR;
    ph += (TAU * f0 * (1 + drift * Math.sin(TAU * driftRate * t))) / SR;
    let v = 0;
    for (let h = 0; h < maxH; h++) v += amps[h]! * Math.sin((h + 1) * ph + phases[h]!);
    y[i] = v * (1 + depth * Math.sin(TAU * fam * t));
  }
  scaleToPeak(y, 1);
  addInto(y, colouredNoise(() => rng.gauss(), n, 2), 0.08);
  return fadeEdges(scaleToPeak(y, 0.8), 0.05);
}

function waterDrip(rng: Rng, seconds: number): Float32Array {
  const y = new Float32Array(samples(seconds));
  const base = rng.uniform(600, 1400);
  const interval = rng.uniform(0.25, 0.9);
  let t = rng.uniform(0.03, 0.3);
  while (t < seconds - 0.08) {
    const f = base * rng.uniform(0.85, 1.15);
    ping(y, t, f, rng.uniform(0.01, 0.03), rng.uniform(0.6, 1), 0, rng.uniform(1.5, 2.5));
    t += interval * rng.uniform(0.7, 1.3);
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.005);
}

function whistle(rng: Rng, seconds: number): Float32Array {
  const n = samples(seconds);
  // A short melody with portamento and vibrato; breath noise around the pitch.
  const notes: { end: number; f: number }[] = [];
  let t = 0;
  let f = rng.logUniform(1000, 2200);
  while (t < seconds) {
    t += rng.uniform(0.15, 0.5);
    notes.push({ end: t, f });
    f = Math.min(2600, Math.max(900, f * Math.pow(2, rng.int(-4, 4) / 12)));
  }
  const vibRate = rng.uniform(4.5, 7), vibDepth = rng.uniform(0.005, 0.02);
  const y = new Float32Array(n);
  let ph = 0, cur = notes[0]!.f, k = 0;
  for (let i = 0; i < n; i++) {
    const tt = i / SR;
    while (k < notes.length - 1 && tt >= notes[k]!.end) k++;
    cur += (notes[k]!.f - cur) * 0.004; // portamento
    ph += (TAU * cur * (1 + vibDepth * Math.sin(TAU * vibRate * tt))) / SR;
    y[i] = Math.sin(ph);
  }
  const breath = new Float32Array(n);
  for (let i = 0; i < n; i++) breath[i] = rng.gauss();
  biquad(breath, 'bandpass', notes[0]!.f, 3);
  addInto(y, breath, rng.uniform(0.05, 0.2));
  return fadeEdges(scaleToPeak(y, 0.8), 0.04);
}

function heartbeat(rng: Rng, seconds: number): Float32Array {
  const y = new Float32Array(samples(seconds));
  const bpm = rng.uniform(50, 120);
  const period = 60 / bpm;
  const lub = rng.uniform(45, 70);
  for (let t = rng.uniform(0.02, Math.min(0.3, period * 0.5)); t < seconds - 0.15; t += period * rng.uniform(0.97, 1.03)) {
    ping(y, t, lub, 0.04, 1, 0, 0.8);
    ping(y, t + period * 0.3, lub * 1.3, 0.03, 0.6, 0, 0.8);
  }
  biquad(y, 'lowpass', 200);
  return fadeEdges(scaleToPeak(y, 0.8), 0.005);
}

function birdsong(rng: Rng, seconds: number): Float32Array {
  const n = samples(seconds);
  const y = new Float32Array(n);
  let t = rng.uniform(0.02, 0.3);
  while (t < seconds - 0.1) {
    const count = rng.int(3, 10);
    const lo = rng.uniform(2000, 4000), hi = lo * rng.uniform(1.3, 1.9);
    const kind = rng.int(0, 2);
    for (let c = 0; c < count && t < seconds - 0.06; c++) {
      const len = rng.uniform(0.04, 0.15);
      const start = Math.floor(t * SR);
      const m = Math.min(Math.floor(len * SR), n - start);
      let ph = 0;
      for (let i = 0; i < m; i++) {
        const u = i / m;
        const f = kind === 0 ? hi + (lo - hi) * u : kind === 1 ? lo + (hi - lo) * u : lo + (hi - lo) * (0.5 + 0.5 * Math.sin(TAU * 4 * u));
        ph += (TAU * f) / SR;
        y[start + i] = y[start + i]! + Math.sin(Math.PI * u) * Math.sin(ph);
      }
      t += len + rng.uniform(0.02, 0.08);
    }
    t += rng.uniform(0.2, 0.8);
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.005);
}

/** Non-speech concepts and their generators (speech comes from espeak-ng, see espeak.ts). */
export const GENERATORS = {
  'low tone': (r, s) => tone(r, s, 100, 250),
  'mid tone': (r, s) => tone(r, s, 400, 900),
  'high tone': (r, s) => tone(r, s, 1500, 4000),
  'square buzz': (r, s) => buzz(r, s, 'square'),
  'sawtooth buzz': (r, s) => buzz(r, s, 'saw'),
  chord,
  'rising chirp': (r, s) => chirp(r, s, true),
  'falling chirp': (r, s) => chirp(r, s, false),
  'white noise': (r, s) => noise(r, s, 0),
  'pink noise': (r, s) => noise(r, s, 1),
  'brown noise': (r, s) => noise(r, s, 2),
  rain,
  ticking,
  alarm,
  knocking,
  silence,
  siren,
  bell,
  clapping,
  'engine hum': engineHum,
  'water drip': waterDrip,
  whistle,
  heartbeat,
  birdsong,
} satisfies Record<string, Generator>;

export type SoundConcept = keyof typeof GENERATORS;
export const SOUND_CONCEPTS = Object.keys(GENERATORS) as SoundConcept[];

/** The varied corpus's voiced-sounding variants of some concepts (music.ts); chosen per layer by the plan. */
export const VARIED_GENERATORS: Partial<Record<SoundConcept, Generator>> = {
  chord: music,
  bell: chime,
  'square buzz': (r, s) => buzzMelody(r, s, 'square'),
  'sawtooth buzz': (r, s) => buzzMelody(r, s, 'saw'),
};

export const hasVariedGenerator = (concept: SoundConcept): boolean => VARIED_GENERATORS[concept] !== undefined;

export function synthesize(concept: SoundConcept, rng: Rng, seconds: number, style?: 'varied'): Float32Array {
  const g: Generator | undefined = style === 'varied' ? VARIED_GENERATORS[concept] : GENERATORS[concept];
  if (!g) throw new Error(`synthesize: unknown concept '${concept}'`);
  return g(rng, seconds);
}
