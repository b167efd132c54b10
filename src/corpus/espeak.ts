// Synthetic speech through the espeak-ng command-line tool (a child process, never a library),
// resampled from its native 22050 Hz to 16 kHz with the project's band-limited resampler.
import { execFile } from 'node:child_process';
import { ArdError } from '../util/errors.js';
import { SR, fadeEdges } from './dsp.js';
import { resample } from '../audio/resample.js';
import type { SpeechLang } from './text.js';

export type Gender = 'female' | 'male';

/** espeak-ng language voices and the grammar each one speaks. */
export const SPEECH_LANGS: readonly { voice: string; lang: SpeechLang }[] = [
  { voice: 'en', lang: 'en' },
  { voice: 'en-us', lang: 'en' },
  { voice: 'de', lang: 'de' },
  { voice: 'fr', lang: 'fr' },
  { voice: 'es', lang: 'es' },
  { voice: 'it', lang: 'it' },
];

// Variants whose pitch (measured on this espeak-ng 1.51, with the -p ranges below) is clearly in the
// gender's range: female ≈ 165–330 Hz median F0, male ≈ 75–135 Hz. Ambiguous ones (zac, quincy,
// shelby, whisper voices, robots) are left out.
export const FEMALE_VARIANTS = ['f1', 'f2', 'f3', 'f4', 'f5', 'Annie', 'Andrea', 'Alicia', 'belinda', 'linda', 'steph', 'steph2', 'steph3', 'aunty', 'anika'] as const;
export const MALE_VARIANTS = ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'adam', 'david', 'edward', 'john', 'max', 'paul', 'robert', 'Michael', 'Mike', 'benjamin', 'caleb', 'antonio', 'boris', 'Andy', 'Alex', 'Jacky', 'Lee', 'travis', 'victor', 'norbert', 'pablo'] as const;

/** Variants that are one speaker in disguise (same formants, other amplitudes): split together. */
export const SAME_SPEAKER: Readonly<Record<string, string>> = { steph2: 'steph', steph3: 'steph' };

/** espeak-ng -p (0–99) ranges per gender; female higher. */
export const PITCH_RANGE: Record<Gender, [number, number]> = { female: [45, 80], male: [20, 60] };
/** espeak-ng -s (words per minute) range. */
export const SPEED_RANGE: [number, number] = [140, 200];

export interface Voice {
  /** espeak-ng voice argument, e.g. 'de+f3'. */
  id: string;
  lang: SpeechLang;
  gender: Gender;
}

export function allVoices(gender: Gender): Voice[] {
  const variants: readonly string[] = gender === 'female' ? FEMALE_VARIANTS : MALE_VARIANTS;
  const out: Voice[] = [];
  for (const l of SPEECH_LANGS) for (const v of variants) out.push({ id: `${l.voice}+${v}`, lang: l.lang, gender });
  return out;
}

export interface SpeakRequest {
  voice: string;
  text: string;
  speed: number;
  pitch: number;
}

export const ESPEAK_BIN = process.env.ARDGPU_ESPEAK ?? 'espeak-ng';

function runEspeak(req: SpeakRequest): Promise<Buffer> {
  const args = ['-v', req.voice, '-s', String(Math.round(req.speed)), '-p', String(Math.round(req.pitch)), '--stdout', req.text];
  return new Promise((resolve, reject) => {
    execFile(ESPEAK_BIN, args, { encoding: 'buffer', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') reject(new ArdError(`${ESPEAK_BIN}: not found (install espeak-ng to make the speech clips)`));
        else reject(new ArdError(`${ESPEAK_BIN} -v ${req.voice}: failed (${String(stderr).trim().split('\n')[0] || err.message})`));
        return;
      }
      resolve(stdout);
    });
  });
}

/**
 * Decodes espeak-ng's --stdout WAV. Its header carries a placeholder data size (the stream length
 * is unknown when it is written), so the data chunk runs to the end of the buffer.
 */
export function decodeEspeakWav(buf: Buffer): { rate: number; samples: Float32Array } {
  if (buf.length < 44 || buf.toString('latin1', 0, 4) !== 'RIFF' || buf.toString('latin1', 8, 12) !== 'WAVE') {
    throw new ArdError('espeak-ng output: not a WAV stream');
  }
  let pos = 12;
  let rate = 0, channels = 0, bits = 0;
  while (pos + 8 <= buf.length) {
    const id = buf.toString('latin1', pos, pos + 4);
    const size = buf.readUInt32LE(pos + 4);
    if (id === 'fmt ') {
      channels = buf.readUInt16LE(pos + 10);
      rate = buf.readUInt32LE(pos + 12);
      bits = buf.readUInt16LE(pos + 22);
    } else if (id === 'data') {
      if (channels !== 1 || bits !== 16 || !rate) throw new ArdError(`espeak-ng output: expected 16-bit mono, got ${bits}-bit ${channels} ch`);
      const start = pos + 8;
      const n = Math.floor((buf.length - start) / 2);
      const samples = new Float32Array(n);
      for (let i = 0; i < n; i++) samples[i] = buf.readInt16LE(start + 2 * i) / 32768;
      return { rate, samples };
    }
    pos += 8 + size + (size & 1);
  }
  throw new ArdError('espeak-ng output: no data chunk');
}

/** Cuts leading and trailing near-silence, keeping a short margin. */
export function trimSilence(x: Float32Array, rate: number, margin = 0.03): Float32Array {
  let p = 0;
  for (let i = 0; i < x.length; i++) p = Math.max(p, Math.abs(x[i]!));
  const thr = p * 0.02;
  let a = 0, b = x.length - 1;
  while (a < x.length && Math.abs(x[a]!) <= thr) a++;
  while (b > a && Math.abs(x[b]!) <= thr) b--;
  const m = Math.floor(margin * rate);
  return x.subarray(Math.max(0, a - m), Math.min(x.length, b + 1 + m));
}

export interface SpeechResult {
  samples: Float32Array; // 16 kHz
  speed: number; // the -s actually used
  truncated: boolean;
}

/**
 * Speaks `req` and returns 16 kHz samples between minSec and maxSec long. An utterance that runs
 * long is re-spoken faster once, then cut with a fade; a short one is padded with silence.
 */
export async function speak(req: SpeakRequest, minSec: number, maxSec: number): Promise<SpeechResult> {
  let speed = req.speed;
  let x = await speakOnce({ ...req, speed });
  const maxN = Math.floor(maxSec * SR);
  if (x.length > maxN) {
    speed = Math.min(450, Math.ceil(speed * (x.length / maxN) * 1.08));
    x = await speakOnce({ ...req, speed });
  }
  let truncated = false;
  if (x.length > maxN) {
    x = fadeEdges(x.slice(0, maxN), 0.05);
    truncated = true;
  }
  const minN = Math.ceil(minSec * SR);
  if (x.length < minN) {
    const y = new Float32Array(minN);
    y.set(x, Math.floor((minN - x.length) / 2));
    x = y;
  }
  return { samples: x, speed, truncated };
}

async function speakOnce(req: SpeakRequest): Promise<Float32Array> {
  const { rate, samples } = decodeEspeakWav(await runEspeak(req));
  const trimmed = trimSilence(samples, rate);
  if (trimmed.length < rate * 0.1) throw new ArdError(`espeak-ng -v ${req.voice}: produced no speech for "${req.text}"`);
  return resample(trimmed, rate, SR);
}
