// Recorded-sounding non-speech for the varied corpus version 4: notes, chords, melodies and chimes
// played by a General MIDI SoundFont of sampled instruments (rendered by FluidSynth, with its room
// reverb and chorus), and a desktop sound theme's recorded notification sounds. The stage-8 model took
// real instrument notes and desktop chimes for speech (real non-speech 84.5 %) although it was trained
// on synthetic music and chimes (music.ts): real recordings have attack noise, body resonances and
// rooms that steady synthetic partials lack. The sources are Debian packages, none of them in the
// real-recordings check set (tools/make-real-corpus.sh): timgm6mb-soundfont, deepin-sound-theme, and
// fluidsynth to play the SoundFont. Tried on the embedded model (weights/README.md, "Tried after stage 8"):
// it helped on real instrument notes, not on the desktop sounds.
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeWavMono, monoAt16k } from '../audio/wav.js';
import { ArdError } from '../util/errors.js';
import { SR, fadeEdges, samples, scaleToPeak } from './dsp.js';
import { Rng } from './rng.js';

export const FLUIDSYNTH_BIN = process.env.ARDGPU_FLUIDSYNTH ?? 'fluidsynth';
export const SOUNDFONT = process.env.ARDGPU_SOUNDFONT ?? '/usr/share/sounds/sf2/TimGM6mb.sf2';
export const DESKTOP_SOUNDS = process.env.ARDGPU_DESKTOP_SOUNDS ?? '/usr/share/sounds/deepin/stereo';
/** What to install when a source is missing. */
export const RECORDED_PACKAGES = 'fluidsynth timgm6mb-soundfont deepin-sound-theme';
/** The one-line refusal when a source is missing: `what` names it, `problem` says what is wrong. */
const missing = (what: string, problem: string) => new ArdError(`${what}: ${problem} (make-corpus --variety 4 needs: apt-get install ${RECORDED_PACKAGES})`);

/** Concepts with a recorded rendering, and what plays them. */
export const RECORDED_CONCEPTS = ['chord', 'bell', 'low tone', 'mid tone', 'high tone', 'square buzz', 'sawtooth buzz'] as const;
export type RecordedConcept = (typeof RECORDED_CONCEPTS)[number];
export const hasRecorded = (c: string): c is RecordedConcept => (RECORDED_CONCEPTS as readonly string[]).includes(c);
export function recordedConcept(c: string): RecordedConcept {
  if (!hasRecorded(c)) throw new Error(`recorded: no recorded rendering of '${c}'`);
  return c;
}

// General MIDI programs (0-based). Voices (52 choir, 53 voice oohs, 54 synth voice, 85 voice lead,
// 91 choir pad) are never used: they would be non-speech that is sung.
const KEYS = [0, 1, 2, 3, 4, 5, 6, 7]; // pianos, electric pianos, harpsichord, clavinet
const MALLETS = [8, 9, 10, 11, 12, 13, 14, 15, 108, 112]; // celesta … dulcimer, kalimba, tinkle bell
const PLUCKED = [24, 25, 26, 27, 28, 45, 46, 105, 106, 107]; // guitars, pizzicato, harp, banjo, shamisen, koto
const ORGANS = [16, 17, 18, 19, 20, 21];
const STRINGS = [40, 41, 42, 48, 49, 50];
const WINDS = [56, 57, 60, 61, 64, 65, 66, 68, 70, 71, 72, 73, 74, 75, 77];
const SYNTH = [80, 81, 88, 89, 90, 92, 94, 95, 98];
const BASS = [32, 33, 34, 35, 36, 38];
/** Instruments that held notes ("a tone") are played on, by register: sustained ones, and struck or plucked single notes. */
const TONE_PROGRAMS = {
  low: [...ORGANS, 42, 43, 32, 33, 57, 58, 70, 0, 1, 24, 25, 46],
  mid: [...ORGANS, ...STRINGS, ...WINDS, ...KEYS, ...PLUCKED, 11, 12],
  high: [72, 73, 79, 8, 9, 10, 13, 40, 98, 112],
};
const CHIME_PROGRAMS = [...MALLETS, ...MALLETS, 0, 4, 5, 46, 24, 25, 6, 7, 98, 88];
const MUSIC_PROGRAMS = [...KEYS, ...KEYS, ...PLUCKED, ...ORGANS, ...STRINGS, ...WINDS, ...SYNTH, ...MALLETS];
/** Desktop-theme sounds that are tonal (chimes, jingles); shutters and paper noise are left out. */
const DESKTOP_EXCLUDED = new Set(['camera-shutter.wav', 'screen-capture.wav', 'trash-empty.wav']);

export interface MidiNote {
  /** Start, seconds. */
  t: number;
  dur: number;
  key: number;
  vel: number;
  channel: number;
}

/**
 * A format-0 Standard MIDI File: 960 ticks per second (480 per quarter at 120 bpm), one program per
 * channel, then the notes (a note-off sorts before a note-on at the same tick).
 */
export function midiFile(programs: Map<number, number>, notes: MidiNote[]): Uint8Array {
  const TPS = 960;
  const events: { tick: number; order: number; bytes: number[] }[] = [];
  for (const [ch, prog] of programs) events.push({ tick: 0, order: 0, bytes: [0xc0 | ch, prog & 0x7f] });
  for (const n of notes) {
    const on = Math.max(0, Math.round(n.t * TPS));
    const off = Math.max(on + 1, Math.round((n.t + n.dur) * TPS));
    const key = Math.max(0, Math.min(127, Math.round(n.key)));
    events.push({ tick: on, order: 2, bytes: [0x90 | n.channel, key, Math.max(1, Math.min(127, Math.round(n.vel)))] });
    events.push({ tick: off, order: 1, bytes: [0x80 | n.channel, key, 0] });
  }
  events.sort((a, b) => a.tick - b.tick || a.order - b.order);
  const body: number[] = [0x00, 0xff, 0x51, 0x03, 0x07, 0xa1, 0x20]; // tempo: 500,000 µs per quarter
  let last = 0;
  const vlq = (v: number) => {
    const out = [v & 0x7f];
    for (v >>>= 7; v > 0; v >>>= 7) out.unshift((v & 0x7f) | 0x80);
    body.push(...out);
  };
  for (const e of events) {
    vlq(e.tick - last);
    body.push(...e.bytes);
    last = e.tick;
  }
  body.push(0x00, 0xff, 0x2f, 0x00);
  const head = [0x4d, 0x54, 0x68, 0x64, 0, 0, 0, 6, 0, 0, 0, 1, (TPS / 2) >> 8, (TPS / 2) & 0xff];
  const len = body.length;
  return Uint8Array.from([...head, 0x4d, 0x54, 0x72, 0x6b, (len >>> 24) & 0xff, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff, ...body]);
}

/** Stops with one line naming what is missing (make-corpus --variety 4 checks this before rendering). */
export function checkRecordedSources(): void {
  const probe = spawnSync(FLUIDSYNTH_BIN, ['--version'], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) throw missing(FLUIDSYNTH_BIN, 'not found or not working');
  if (!fs.existsSync(SOUNDFONT)) throw missing(SOUNDFONT, 'SoundFont not found');
  if (desktopSounds().length === 0) throw missing(DESKTOP_SOUNDS, 'no desktop sounds found');
}

let desktopList: string[] | null = null;
function desktopSounds(): string[] {
  if (!desktopList) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(DESKTOP_SOUNDS).filter((n) => n.endsWith('.wav') && !DESKTOP_EXCLUDED.has(n)).sort();
    } catch {
      names = [];
    }
    desktopList = names.map((n) => path.join(DESKTOP_SOUNDS, n));
  }
  return desktopList;
}

/** Plays `notes` on the SoundFont; mono, 16 kHz, exactly `n` samples (cut or zero-padded). */
async function playMidi(rng: Rng, programs: Map<number, number>, notes: MidiNote[], n: number): Promise<Float32Array> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-fs-'));
  try {
    const mid = path.join(dir, 'in.mid');
    const raw = path.join(dir, 'out.raw');
    fs.writeFileSync(mid, midiFile(programs, notes));
    // a room of its own per clip: reverb size and level, chorus on or off
    const room = rng.uniform(0.1, 0.9).toFixed(2), wet = rng.uniform(0.1, 0.8).toFixed(2), chorus = rng.chance(0.4) ? '1' : '0';
    const args = ['-n', '-i', '-q', '-R', '1', '-C', chorus, '-o', `synth.reverb.room-size=${room}`, '-o', `synth.reverb.level=${wet}`,
      '-g', '0.5', '-r', String(SR), '-T', 'raw', '-O', 'float', '-F', raw, SOUNDFONT, mid];
    await new Promise<void>((resolve, reject) => {
      execFile(FLUIDSYNTH_BIN, args, { maxBuffer: 1 << 20 }, (err, _out, stderr) => {
        if (!err) return resolve();
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') reject(missing(FLUIDSYNTH_BIN, 'not found'));
        else reject(new ArdError(`${FLUIDSYNTH_BIN}: failed (${String(stderr).trim().split('\n')[0] || err.message})`));
      });
    });
    const buf = fs.readFileSync(raw);
    const f = new Float32Array(buf.buffer, buf.byteOffset, Math.floor(buf.length / 4)); // stereo, interleaved
    const y = new Float32Array(n);
    for (let i = 0; i < n && 2 * i + 1 < f.length; i++) y[i] = 0.5 * (f[2 * i]! + f[2 * i + 1]!);
    return y;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const MAJOR = [0, 2, 4, 5, 7, 9, 11];
const MINOR = [0, 2, 3, 5, 7, 8, 10];
const degree = (scale: number[], d: number) => scale[((d % 7) + 7) % 7]! + 12 * Math.floor(d / 7);
const midiKey = (hz: number) => 69 + 12 * Math.log2(hz / 440);

/** One held note in the tone's register (Hz range), on a sustained, struck or plucked instrument. */
function toneNotes(rng: Rng, seconds: number, register: keyof typeof TONE_PROGRAMS, lo: number, hi: number): { programs: Map<number, number>; notes: MidiNote[] } {
  const key = Math.round(midiKey(rng.logUniform(lo, hi)));
  const t = rng.uniform(0, Math.min(0.15, seconds / 5));
  return { programs: new Map([[0, rng.pick(TONE_PROGRAMS[register])]]), notes: [{ t, dur: Math.max(0.1, seconds - t - rng.uniform(0, 0.3)), key, vel: rng.int(60, 120), channel: 0 }] };
}

/** A notification chime: 1–6 notes (or a struck chord) on a mallet, keyboard or plucked instrument. */
function chimeNotes(rng: Rng, seconds: number): { programs: Map<number, number>; notes: MidiNote[] } {
  const root = rng.int(64, 90);
  const scale = rng.chance(0.7) ? MAJOR : MINOR;
  const notes: MidiNote[] = [];
  const count = rng.int(1, 6);
  const step = rng.uniform(0.04, 0.3);
  const chord = rng.chance(0.25);
  let d = rng.int(0, 4);
  const up = rng.chance(0.6);
  let t = rng.uniform(0, 0.08);
  const phrase = () => {
    for (let i = 0; i < count; i++) {
      notes.push({ t: chord ? t + i * 0.01 : t + i * step, dur: rng.uniform(0.2, 1.5), key: root + degree(scale, d + (chord ? 2 * i : 0)), vel: rng.int(60, 120), channel: 0 });
      if (!chord) d += up ? rng.int(1, 3) : rng.int(-3, 3);
    }
  };
  phrase();
  // some repeat, like a ring tone
  if (seconds > 1.5 && rng.chance(0.3)) for (t += (chord ? 0 : count * step) + rng.uniform(0.4, 1); t < seconds - 0.3; t += (chord ? 0 : count * step) + rng.uniform(0.4, 1)) phrase();
  return { programs: new Map([[0, rng.pick(CHIME_PROGRAMS)]]), notes };
}

/** A few bars: chords (held, struck on the beat, or arpeggiated), some with a bass line and a melody. */
function musicNotes(rng: Rng, seconds: number): { programs: Map<number, number>; notes: MidiNote[] } {
  const beat = 60 / rng.uniform(70, 150);
  const root = rng.int(50, 64);
  const scale = rng.chance(0.6) ? MAJOR : MINOR;
  const progression = rng.pick([[0, 3, 4, 0], [0, 5, 3, 4], [0, 4, 5, 3], [0, 3, 0, 4]]);
  const programs = new Map([[0, rng.pick(MUSIC_PROGRAMS)]]);
  const notes: MidiNote[] = [];
  const style = rng.pick(['held', 'beats', 'arpeggio']);
  const bass = rng.chance(0.5), melody = rng.chance(0.6);
  if (bass) programs.set(1, rng.pick([...BASS, 0, 32]));
  if (melody) programs.set(2, rng.pick(MUSIC_PROGRAMS));
  const t0 = rng.uniform(0, Math.min(0.2, seconds / 4));
  for (let bar = 0, t = t0; t < seconds; bar++, t += 4 * beat) {
    const d = progression[bar % progression.length]!;
    const triad = [0, 2, 4].map((k) => root + degree(scale, d + k));
    if (style === 'held') for (const k of triad) notes.push({ t, dur: 4 * beat, key: k, vel: rng.int(50, 90), channel: 0 });
    else if (style === 'beats') for (let b = 0; b < 4; b++) for (const k of triad) notes.push({ t: t + b * beat, dur: beat * 0.9, key: k, vel: rng.int(50, 100), channel: 0 });
    else for (let b = 0; b < 8; b++) notes.push({ t: t + (b * beat) / 2, dur: beat, key: triad[b % 3]! + (b % 6 >= 3 ? 12 : 0), vel: rng.int(50, 100), channel: 0 });
    if (bass) for (let b = 0; b < 4; b += 2) notes.push({ t: t + b * beat, dur: beat * 1.8, key: triad[0]! - 12, vel: rng.int(70, 110), channel: 1 });
  }
  if (melody) {
    let d = rng.int(0, 6);
    for (let t = t0; t < seconds; ) {
      const len = beat * rng.pick([0.5, 0.5, 1, 1, 1.5, 2]);
      if (rng.chance(0.85)) notes.push({ t, dur: len * 0.95, key: root + 12 + degree(scale, d), vel: rng.int(70, 115), channel: 2 });
      d = Math.max(-3, Math.min(10, d + rng.pick([-2, -1, -1, 0, 1, 1, 2, 3, -3])));
      t += len;
    }
  }
  return { programs, notes };
}

/** A melody on GM's square (80) or sawtooth (81) lead: the recorded cousin of the buzzing melodies. */
function buzzNotes(rng: Rng, seconds: number, shape: 'square' | 'saw'): { programs: Map<number, number>; notes: MidiNote[] } {
  const root = rng.int(45, 65);
  const scale = rng.chance(0.6) ? MAJOR : MINOR;
  const notes: MidiNote[] = [];
  let d = rng.int(0, 6);
  for (let t = 0; t < seconds; ) {
    const len = rng.uniform(0.15, 0.6);
    notes.push({ t, dur: len, key: root + degree(scale, d), vel: rng.int(70, 110), channel: 0 });
    d = Math.max(-2, Math.min(9, d + rng.pick([-2, -1, 1, 2])));
    t += len;
  }
  return { programs: new Map([[0, shape === 'square' ? 80 : 81]]), notes };
}

/** A desktop-theme sound, pitch-shifted up to ±3 semitones (by playback rate), cut or padded to length, sometimes repeated. */
function desktopSound(rng: Rng, seconds: number): Float32Array {
  const files = desktopSounds();
  if (files.length === 0) throw missing(DESKTOP_SOUNDS, 'no desktop sounds found');
  const file = rng.pick(files);
  const m = decodeWavMono(fs.readFileSync(file), file);
  const shift = Math.pow(2, rng.uniform(-3, 3) / 12);
  const x = monoAt16k(m.samples, Math.round(m.sampleRate * shift), file);
  const n = samples(seconds);
  const y = new Float32Array(n);
  const repeat = rng.chance(0.3);
  for (let at = Math.floor(rng.uniform(0, 0.15) * SR); at < n; at += x.length + Math.floor(rng.uniform(0.2, 0.8) * SR)) {
    y.set(x.subarray(0, Math.min(x.length, n - at)), at);
    if (!repeat) break;
  }
  return y;
}

/**
 * The recorded rendering of `concept` (one of RECORDED_CONCEPTS): mono, 16 kHz, `samples(seconds)` long,
 * peak 0.8 (callers set the level). A bell is a desktop-theme sound two times in five, else a played chime.
 */
export async function renderRecorded(concept: RecordedConcept, rng: Rng, seconds: number): Promise<Float32Array> {
  const n = samples(seconds);
  let y: Float32Array | null = null;
  if (concept === 'bell' && rng.chance(0.4)) y = desktopSound(rng, seconds);
  // an instrument with no sample at a drawn key plays nothing: draw again (a few times at most)
  for (let attempt = 0; !y || !y.some((v) => Math.abs(v) > 1e-4); attempt++) {
    if (attempt === 4) throw new ArdError(`${SOUNDFONT}: plays nothing for '${concept}' (four draws were silent)`);
    const { programs, notes } =
      concept === 'chord' ? musicNotes(rng, seconds)
        : concept === 'bell' ? chimeNotes(rng, seconds)
          : concept === 'low tone' ? toneNotes(rng, seconds, 'low', 100, 250)
            : concept === 'mid tone' ? toneNotes(rng, seconds, 'mid', 400, 900)
              : concept === 'high tone' ? toneNotes(rng, seconds, 'high', 1500, 4000)
                : buzzNotes(rng, seconds, concept === 'square buzz' ? 'square' : 'saw');
    y = await playMidi(rng, programs, notes, n);
  }
  return fadeEdges(scaleToPeak(y, 0.8), 0.01);
}
