// Synthetic speech through the espeak-ng command-line tool (a child process, never a library),
// resampled from its native 22050 Hz to 16 kHz with the project's band-limited resampler.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
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

/**
 * The varied corpus (make-corpus --variety) adds every further espeak-ng variant whose pitch sits in a
 * gender's range (grandma; the male-voiced ones measured by tools/measure-voice-pitch.py), and English
 * accents speaking the English grammar. Gender there is set by acoustics, not by variant: each clip gets
 * a target F0 in its gender's range and a vocal-tract warp (see VTL_WARP), so a female target may be
 * rendered from a male variant with raised pitch and formants and vice versa.
 */
export const EXTRA_FEMALE_VARIANTS = ['grandma'] as const;
export const EXTRA_MALE_VARIANTS = ['Diogo', 'Ed', 'Gene', 'Hugo', 'Marco', 'Mario', 'Miguel', 'Pedro', 'Rob', 'Iven', 'grandpa', 'Denis', 'Gustave', 'Henrique', 'Marcelo', 'sandro', 'klatt', 'klatt2', 'klatt3', 'Michel'] as const;
export const EXTRA_ENGLISH_VOICES = ['en-gb-scotland', 'en-gb-x-gbclan', 'en-gb-x-rp', 'en-gb-x-gbcwmd', 'en-029', 'en-us-nyc'] as const;

/** Target median F0 (Hz) per gender in the varied corpus: adult speech ranges, with their overlap left out. */
export const F0_RANGE: Record<Gender, [number, number]> = { female: [165, 290], male: [80, 150] };
/**
 * Vocal-tract-length warp per gender: all frequencies (formants and F0) scaled by α. Women's formants
 * sit ≈ 15–20 % above men's; α within a gender's range perturbs the speaker, α across ranges (a male
 * variant warped up, a female one down) turns it into the other gender's vocal tract.
 */
export const VTL_WARP: Record<Gender, [number, number]> = { female: [1.0, 1.2], male: [0.84, 1.02] };

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
  /**
   * Vocal-tract warp α (default 1): espeak-ng speaks α times slower and the result is read as if
   * sampled α times faster, so duration is kept and every frequency (formants, F0) is scaled by α.
   */
  warp?: number;
  /** Voice quality on top of the variant (varied corpus versions 5 to 7). */
  quality?: VoiceQuality;
}

/**
 * Voice quality on top of an espeak-ng variant (varied corpus version 5): espeak-ng's own voice-file
 * settings, appended to a copy of the variant's file (a later line overrides an earlier one). Pitch
 * is left alone, so the variant's measured pitch (voice-pitch.ts) and the warp still set the cues of
 * gender; creak, jitter, breathiness, voicing and spectral tilt (version 5) and the shape of the
 * formant envelope (version 6: each formant moved, its height and width changed) vary alike across
 * both genders, so that they stop telling one variant (and its gender) from another.
 */
export interface VoiceQuality {
  /** espeak-ng `roughness` (0–5 here): irregular glottal pulses, creak; absent: the variant's own. */
  roughness?: number;
  /** `flutter` (0–20 here): pitch jitter; absent: the variant's own. */
  flutter?: number;
  /** `breath`: breath noise at formants 1–8 (0–25 here), or absent: the variant's own. */
  breath?: number[];
  /** `voicing` (%, 60–180 here): amplitude of voiced sounds against the rest, or absent. */
  voicing?: number;
  /** `tone`: spectral tilt as Hz / amplitude pairs, or absent. */
  tone?: number[];
  /**
   * The variant's own formant envelope reshaped (varied corpus version 6): for formants 1, 2, …, the
   * frequency, height and width of the variant's `formant` line scaled by these percentages
   * ([freq %, height %, width %]), so that no envelope stays tied to one variant and its gender.
   */
  formants?: [number, number, number][];
}

/** The voice-file lines of a quality (espeak-ng's docs/voices.md keywords). */
export function qualityLines(q: VoiceQuality): string[] {
  return [
    ...(q.roughness !== undefined ? [`roughness ${q.roughness}`] : []),
    ...(q.flutter !== undefined ? [`flutter ${q.flutter}`] : []),
    ...(q.breath ? [`breath ${q.breath.join(' ')}`] : []),
    ...(q.voicing !== undefined ? [`voicing ${q.voicing}`] : []),
    ...(q.tone ? [`tone ${q.tone.join(' ')}`] : []),
  ];
}

/** A short tag of a quality for the manifest's augment list. */
export function qualityTag(q: VoiceQuality): string {
  const parts = [
    ...(q.roughness !== undefined ? [`r${q.roughness}`] : []),
    ...(q.flutter !== undefined ? [`f${q.flutter}`] : []),
    ...(q.breath ? [`b${q.breath.join('-')}`] : []),
    ...(q.voicing !== undefined ? [`v${q.voicing}`] : []),
    ...(q.tone ? [`t${q.tone.join('-')}`] : []),
    ...(q.formants ? [`F${q.formants.map((f) => f.join('/')).join('-')}`] : []),
  ];
  return `quality:${parts.join(',')}`;
}

/**
 * The `formant` lines that reshape a variant's envelope: each formant N (1…) of `jitter` gets the
 * variant's own line (`formant N freq height width [freqadd]`, espeak-ng's docs/voices.md; a formant
 * the file leaves out is 100 100 100) with freq, height and width scaled by the percentages; freqadd
 * (Hz) is kept. Later lines override earlier ones, so these go after the variant's text.
 */
export function formantLines(variantText: string, jitter: readonly (readonly [number, number, number])[]): string[] {
  const own = new Map<number, number[]>();
  for (const line of variantText.split('\n')) {
    const m = /^\s*formant\s+(\d+)\s+(.*)$/.exec(line);
    if (m) own.set(Number(m[1]), m[2]!.trim().split(/\s+/).map(Number));
  }
  return jitter.map(([f, h, w], i) => {
    const n = i + 1;
    const [freq = 100, height = 100, width = 100, add] = own.get(n) ?? [];
    const scaled = [Math.round((freq * f) / 100), Math.round((height * h) / 100), Math.round((width * w) / 100)];
    return `formant ${n} ${[...scaled, ...(add !== undefined ? [add] : [])].join(' ')}`;
  });
}

export const ESPEAK_BIN = process.env.ARDGPU_ESPEAK ?? 'espeak-ng';

let privateData: Promise<{ path: string; variants: string }> | null = null;

/**
 * A private espeak-ng data folder (for --path) in which new variant files can be written: links to
 * every entry of the installed one, with voices/!v a real folder of links to its variants.
 */
function privateEspeakData(): Promise<{ path: string; variants: string }> {
  privateData ??= new Promise((resolve, reject) => {
    execFile(ESPEAK_BIN, ['--version'], { encoding: 'utf8' }, (err, stdout) => {
      const m = /Data at:\s*(\S.*?)\s*$/m.exec(stdout ?? '');
      if (err || !m) {
        reject(new ArdError(`${ESPEAK_BIN} --version: ${err ? (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found (install espeak-ng to make the speech clips)' : err.message : 'does not say where its data is'}`));
        return;
      }
      const data = m[1]!;
      const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-espeak-'));
      process.once('exit', () => fs.rmSync(root, { recursive: true, force: true }));
      const own = path.join(root, 'espeak-ng-data');
      const linkAll = (from: string, to: string, except: string) => {
        fs.mkdirSync(to, { recursive: true });
        for (const e of fs.readdirSync(from)) if (e !== except) fs.symlinkSync(path.join(from, e), path.join(to, e));
      };
      linkAll(data, own, 'voices');
      linkAll(path.join(data, 'voices'), path.join(own, 'voices'), '!v');
      linkAll(path.join(data, 'voices', '!v'), path.join(own, 'voices', '!v'), '');
      resolve({ path: root, variants: path.join(own, 'voices', '!v') });
    });
  });
  return privateData;
}

let qualityFiles = 0;

/**
 * The voice argument and extra options that speak `req`, and what to remove afterwards: with a
 * quality, a variant file of its own for this one call. (Kept files would pile up: espeak-ng lists
 * every voice file it finds and stops at 349.)
 */
async function voiceArgs(req: SpeakRequest): Promise<{ args: string[]; cleanup?: string }> {
  if (!req.quality) return { args: ['-v', req.voice] };
  const [lang, variant] = req.voice.split('+');
  if (!variant) throw new ArdError(`espeak-ng -v ${req.voice}: a voice quality needs a variant (LANG+VARIANT)`);
  const data = await privateEspeakData();
  // espeak-ng finds variants whatever their case ('Rob' is the file 'rob')
  const found = fs.readdirSync(data.variants).find((f) => f.toLowerCase() === variant.toLowerCase());
  if (!found) throw new ArdError(`espeak-ng -v ${req.voice}: no variant file '${variant}'`);
  const own = fs.readFileSync(path.join(data.variants, found), 'latin1').trimEnd();
  const lines = [...qualityLines(req.quality), ...(req.quality.formants ? formantLines(own, req.quality.formants) : [])];
  const text = `${own}\n${lines.join('\n')}\n`;
  const name = `q${process.pid}x${++qualityFiles}`;
  const file = path.join(data.variants, name);
  fs.writeFileSync(file, text, 'latin1');
  return { args: [`--path=${data.path}`, '-v', `${lang}+${name}`], cleanup: file };
}

async function runEspeak(req: SpeakRequest): Promise<Buffer> {
  const voice = await voiceArgs(req);
  const args = [...voice.args, '-s', String(Math.max(80, Math.round(req.speed / (req.warp ?? 1)))), '-p', String(Math.round(req.pitch)), '--stdout', req.text];
  return new Promise<Buffer>((resolve, reject) => {
    execFile(ESPEAK_BIN, args, { encoding: 'buffer', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') reject(new ArdError(`${ESPEAK_BIN}: not found (install espeak-ng to make the speech clips)`));
        else reject(new ArdError(`${ESPEAK_BIN} -v ${req.voice}: failed (${String(stderr).trim().split('\n')[0] || err.message})`));
        return;
      }
      resolve(stdout);
    });
  }).finally(() => voice.cleanup && fs.rmSync(voice.cleanup, { force: true }));
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
  if (req.warp !== undefined && !(req.warp >= 0.5 && req.warp <= 2)) throw new ArdError(`espeak-ng -v ${req.voice}: warp ${req.warp} outside 0.5–2`);
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
  // Reading the samples as if taken at rate·α scales every frequency by α (and the length by 1/α).
  return resample(trimmed, Math.round(rate * (req.warp ?? 1)), SR);
}
