// An espeak-ng variant's median F0 as a function of its -p setting (measured table in
// voice-pitch.table.ts), and the inverse: which -p gives a wanted F0. Piecewise linear in log F0.
import { PITCH_POINTS, VOICE_F0 } from './voice-pitch.table.js';

// Variants not in the table behave like espeak-ng's plain male base (most male variants measure so).
const DEFAULT_CURVE = VOICE_F0['Rob'] ?? [72, 84, 100, 128, 170];

function curve(variant: string): readonly number[] {
  return VOICE_F0[variant] ?? DEFAULT_CURVE;
}

/** Median F0 (Hz) of `variant` at espeak-ng -p `pitch` (0–99). */
export function voiceF0(variant: string, pitch: number): number {
  const c = curve(variant);
  const p = Math.max(0, Math.min(99, pitch));
  for (let i = 1; i < PITCH_POINTS.length; i++) {
    const p0 = PITCH_POINTS[i - 1]!, p1 = PITCH_POINTS[i]!;
    if (p <= p1) {
      const t = (p - p0) / (p1 - p0);
      return Math.exp(Math.log(c[i - 1]!) * (1 - t) + Math.log(c[i]!) * t);
    }
  }
  return c[c.length - 1]!;
}

/** The integer -p (0–99) whose F0 is closest to `f0` for `variant` (clamped at the ends). */
export function pitchFor(variant: string, f0: number): number {
  let best = 0, err = Infinity;
  for (let p = 0; p <= 99; p++) {
    const e = Math.abs(Math.log(voiceF0(variant, p) / f0));
    if (e < err) [best, err] = [p, e];
  }
  return best;
}
