// Pitched, voiced-sounding non-speech for the varied corpus: music (chords, bass, a melody, drums) and
// chimes (short note sequences like desktop notification sounds). Real recordings of this kind were
// heard as speech by the stage-3 model ("Is anyone speaking?" → "yes" for music on hold, instrument
// notes and notification chimes), because the corpus's chords and bells are steady synthetic tones.
// These generators serve the existing concepts (chord, bell, the buzzes) in the varied corpus version 2 only
// (plan.ts draws a layer's style), so the label set and the default corpus stay as they are.
import { Rng } from './rng.js';
import { SR, addInto, biquad, fadeEdges, samples, scaleToPeak } from './dsp.js';

const TAU = 2 * Math.PI;
type Timbre = 'pluck' | 'piano' | 'organ' | 'mallet' | 'fmbell' | 'lead' | 'flute';

/** Karplus–Strong string: a noise-filled delay line whose averaging filter makes the decay. */
function pluck(rng: Rng, y: Float32Array, at: number, f: number, dur: number, amp: number): void {
  const start = Math.floor(at * SR);
  const len = Math.min(y.length - start, Math.floor(dur * SR));
  if (len <= 0) return;
  const period = Math.max(2, Math.round(SR / f));
  const line = new Float32Array(period);
  for (let i = 0; i < period; i++) line[i] = rng.uniform(-1, 1);
  const damp = rng.uniform(0.985, 0.998);
  let j = 0;
  for (let i = 0; i < len; i++) {
    const next = (j + 1) % period;
    const v = line[j]!;
    line[j] = damp * 0.5 * (v + line[next]!);
    const rel = i > len - 160 ? (len - i) / 160 : 1; // short release so notes do not click
    y[start + i] = y[start + i]! + amp * v * rel;
    j = next;
  }
}

/** Additive note: partials (ratio, amplitude, decay seconds), an attack and a release. */
function additive(y: Float32Array, at: number, dur: number, amp: number, attack: number, partials: [number, number, number][], f: number, phase: number, vib = 0, vibRate = 5): void {
  const start = Math.floor(at * SR);
  const len = Math.min(y.length - start, Math.floor(dur * SR));
  if (len <= 0) return;
  const rel = Math.min(0.05, dur / 4);
  for (const [ratio, a, decay] of partials) {
    const fp = f * ratio;
    if (fp > SR * 0.45) continue;
    let ph = phase * ratio;
    for (let i = 0; i < len; i++) {
      const t = i / SR;
      const env = Math.min(1, t / attack, (dur - t) / rel) * (decay > 0 ? Math.exp(-t / decay) : 1);
      ph += (TAU * fp * (1 + vib * Math.sin(TAU * vibRate * t))) / SR;
      y[start + i] = y[start + i]! + amp * a * env * Math.sin(ph);
    }
  }
}

function note(rng: Rng, y: Float32Array, timbre: Timbre, at: number, f: number, dur: number, amp: number): void {
  const ph = rng.uniform(0, TAU);
  switch (timbre) {
    case 'pluck':
      return pluck(rng, y, at, f, dur, amp);
    case 'piano': {
      // stiff-string partials, sharper with the harmonic number, higher ones dying faster
      const B = rng.uniform(1e-4, 6e-4);
      const p: [number, number, number][] = [];
      for (let h = 1; h <= 10; h++) p.push([h * Math.sqrt(1 + B * h * h), 1 / Math.pow(h, 1.3), rng.uniform(0.6, 1.6) / h]);
      return additive(y, at, dur, amp, 0.004, p, f, ph);
    }
    case 'organ':
      return additive(y, at, dur, amp, rng.uniform(0.02, 0.15), [[1, 1, 0], [2, 0.5, 0], [3, 0.3, 0], [4, 0.2, 0], [6, 0.1, 0]], f, ph);
    case 'mallet': // marimba-like bars: 1 : 3.9 : 9.2
      return additive(y, at, dur, amp, 0.002, [[1, 1, rng.uniform(0.2, 0.6)], [3.9, 0.35, 0.08], [9.2, 0.15, 0.03]], f, ph);
    case 'fmbell': {
      // two-operator FM with a decaying index: the classic electric bell / notification timbre
      const start = Math.floor(at * SR);
      const len = Math.min(y.length - start, Math.floor(dur * SR));
      const ratio = rng.pick([1.4, 2, 3.5, 1.0]);
      const index0 = rng.uniform(1, 4);
      const decay = rng.uniform(0.3, 1.2);
      for (let i = 0; i < len; i++) {
        const t = i / SR;
        const env = Math.min(1, t / 0.002, (dur - t) / 0.02) * Math.exp(-t / decay);
        const mod = index0 * Math.exp(-t / (decay * 0.5)) * Math.sin(TAU * f * ratio * t);
        y[start + i] = y[start + i]! + amp * env * Math.sin(TAU * f * t + mod + ph);
      }
      return;
    }
    case 'lead': {
      // band-limited saw-ish lead with vibrato: the most voice-like of the set
      const p: [number, number, number][] = [];
      for (let h = 1; h <= 12; h++) p.push([h, 1 / h, 0]);
      return additive(y, at, dur, amp * 0.7, 0.02, p, f, ph, rng.uniform(0.003, 0.012), rng.uniform(4, 6.5));
    }
    case 'flute':
      return additive(y, at, dur, amp, 0.06, [[1, 1, 0], [2, 0.2, 0], [3, 0.08, 0]], f, ph, rng.uniform(0.002, 0.006), rng.uniform(4, 5.5));
  }
}

const MAJOR = [0, 2, 4, 5, 7, 9, 11];
const MINOR = [0, 2, 3, 5, 7, 8, 10];
const hz = (root: number, semis: number) => root * Math.pow(2, semis / 12);

/** Scale degree d (any integer) in semitones above the root. */
function degree(scale: number[], d: number): number {
  const o = Math.floor(d / scale.length);
  return scale[((d % scale.length) + scale.length) % scale.length]! + 12 * o;
}

function kick(y: Float32Array, at: number, amp: number): void {
  const start = Math.floor(at * SR);
  const len = Math.min(y.length - start, Math.floor(0.25 * SR));
  let ph = 0;
  for (let i = 0; i < len; i++) {
    const t = i / SR;
    ph += (TAU * (50 + 110 * Math.exp(-t / 0.03))) / SR;
    y[start + i] = y[start + i]! + amp * Math.exp(-t / 0.08) * Math.sin(ph);
  }
}

function noiseHit(rng: Rng, y: Float32Array, at: number, tau: number, amp: number, highpass: number): void {
  const start = Math.floor(at * SR);
  const len = Math.min(y.length - start, Math.floor(tau * 6 * SR));
  if (len <= 0) return;
  const n = new Float32Array(len);
  for (let i = 0; i < len; i++) n[i] = rng.uniform(-1, 1) * Math.exp(-i / SR / tau);
  addInto(y, biquad(n, 'highpass', highpass), amp, start);
}

/** A few bars of music: some of chords, bass, melody and drums, in one key and tempo. */
export function music(rng: Rng, seconds: number): Float32Array {
  const y = new Float32Array(samples(seconds));
  const beat = 60 / rng.uniform(70, 150);
  const root = rng.logUniform(110, 330);
  const scale = rng.chance(0.6) ? MAJOR : MINOR;
  const progression = rng.pick([[0, 3, 4, 0], [0, 5, 3, 4], [0, 4, 5, 3], [0, 3, 0, 4], [5, 3, 0, 4]]);
  const barBeats = rng.pick([3, 4, 4]);
  // at least two parts, so it sounds like music rather than one note
  const parts = { chords: rng.chance(0.75), bass: rng.chance(0.6), melody: rng.chance(0.7), drums: rng.chance(0.5) };
  if (Number(parts.chords) + Number(parts.bass) + Number(parts.melody) + Number(parts.drums) < 2) {
    parts.chords = true;
    parts.melody = true;
  }
  const chordTimbre = rng.pick<Timbre>(['piano', 'organ', 'pluck', 'mallet']);
  const bassTimbre = rng.pick<Timbre>(['pluck', 'organ', 'piano']);
  const leadTimbre = rng.pick<Timbre>(['lead', 'flute', 'piano', 'pluck', 'mallet', 'fmbell']);
  const strum = chordTimbre === 'organ' ? 'held' : rng.pick(['held', 'beats', 'arpeggio']);
  const t0 = rng.uniform(0, Math.min(0.2, seconds / 4)); // starts within 0.2 s: short clips still hold a note
  for (let bar = 0, t = t0; t < seconds; bar++, t += barBeats * beat) {
    const d = progression[bar % progression.length]!;
    const triad = [0, 2, 4].map((k) => degree(scale, d + k));
    if (parts.chords) {
      if (strum === 'held') for (const s of triad) note(rng, y, chordTimbre, t, hz(root, s), barBeats * beat, 0.25);
      else if (strum === 'beats') for (let b = 0; b < barBeats; b++) for (const s of triad) note(rng, y, chordTimbre, t + b * beat, hz(root, s), beat, 0.22);
      else for (let b = 0; b < barBeats * 2; b++) note(rng, y, chordTimbre, t + (b * beat) / 2, hz(root, triad[b % 3]! + (b % 6 >= 3 ? 12 : 0)), beat, 0.3);
    }
    if (parts.bass) for (let b = 0; b < barBeats; b += rng.pick([1, 2])) note(rng, y, bassTimbre, t + b * beat, hz(root / 2, triad[0]! + (b % 2 ? 7 : 0)), beat * 0.9, 0.4);
    if (parts.drums) {
      for (let b = 0; b < barBeats; b++) {
        if (b % 2 === 0) kick(y, t + b * beat, 0.6);
        else noiseHit(rng, y, t + b * beat, 0.04, 0.35, 1200);
        noiseHit(rng, y, t + b * beat + beat / 2, 0.012, 0.15, 6000);
      }
    }
  }
  if (parts.melody) {
    let d = rng.int(0, 6);
    for (let t = t0 + (seconds > 2 * beat ? rng.pick([0, beat]) : 0); t < seconds; ) {
      const len = beat * rng.pick([0.5, 0.5, 1, 1, 1.5, 2]);
      if (rng.chance(0.85)) note(rng, y, leadTimbre, t, hz(root * 2, degree(scale, d)), len * 0.95, 0.35);
      d = Math.max(-3, Math.min(10, d + rng.pick([-2, -1, -1, 0, 1, 1, 2, 3, -3])));
      t += len;
    }
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.02);
}

/** A notification chime: 1–5 notes of one bell-like timbre, once or repeated, then its decay. */
export function chime(rng: Rng, seconds: number): Float32Array {
  const y = new Float32Array(samples(seconds));
  const timbre = rng.pick<Timbre>(['mallet', 'fmbell', 'piano', 'pluck', 'flute']);
  const root = rng.logUniform(330, 1400);
  const scale = rng.chance(0.7) ? MAJOR : MINOR;
  const count = rng.int(1, 5);
  const step = rng.uniform(0.06, 0.28);
  const shape = rng.pick(['up', 'down', 'random']);
  const degrees: number[] = [];
  let d = shape === 'down' ? rng.int(4, 8) : rng.int(0, 3);
  for (let i = 0; i < count; i++) {
    degrees.push(d);
    d += shape === 'up' ? rng.int(1, 3) : shape === 'down' ? -rng.int(1, 3) : rng.int(-3, 3);
  }
  const phrase = count * step + 0.4;
  const repeats = seconds > 2 * phrase && rng.chance(0.35) ? Math.floor(seconds / (phrase + rng.uniform(0.2, 1))) : 1;
  let t = rng.uniform(0, 0.08);
  for (let r = 0; r < repeats; r++) {
    for (const [i, dg] of degrees.entries()) note(rng, y, timbre, t + i * step, hz(root, degree(scale, dg)), Math.min(seconds, rng.uniform(0.3, 1.2)), 0.5);
    t += phrase + rng.uniform(0.2, 1);
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.01);
}

/** A melody of held notes on one buzzing oscillator (the varied corpus's 'square buzz'/'sawtooth buzz'). */
export function buzzMelody(rng: Rng, seconds: number, shape: 'square' | 'saw'): Float32Array {
  const y = new Float32Array(samples(seconds));
  const root = rng.logUniform(90, 350);
  const scale = rng.chance(0.6) ? MAJOR : MINOR;
  const maxH = shape === 'saw' ? 24 : 23;
  let d = rng.int(0, 6);
  for (let t = 0; t < seconds; ) {
    const len = rng.uniform(0.15, 0.6);
    const f = hz(root, degree(scale, d));
    const p: [number, number, number][] = [];
    for (let h = 1; h <= maxH; h += shape === 'saw' ? 1 : 2) p.push([h, 1 / h, 0]);
    additive(y, t, len, 0.5, 0.01, p, f, rng.uniform(0, TAU), rng.chance(0.4) ? rng.uniform(0.003, 0.01) : 0);
    d = Math.max(-2, Math.min(9, d + rng.pick([-2, -1, 1, 2])));
    t += len;
  }
  return fadeEdges(scaleToPeak(y, 0.7), 0.02);
}
