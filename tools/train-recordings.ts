// Builds a training corpus of real recordings from Debian packages that the real check set
// (tools/make-real-corpus.sh) does not use: game sound effects, city ambiences, game music and chat
// and phone programs' notification sounds and ringtones as non-speech, KLettres' recorded letters and
// syllables in some 25 languages as very short real speech. Called by tools/make-train-recordings.sh,
// which finds or unpacks the packages.
//
//   npx tsx tools/train-recordings.ts --out DIR --root PKG=DIR ... [--packages "P1 P2 ..."] [--seed S] [--per-language N]
//                                     [--renderings N] [--jobs J]
//   npx tsx tools/train-recordings.ts --list-packages
//   (--packages: only these of the sources below; default all, each needing its --root)
//
// Why: the embedded model's speech/non-speech answer was learnt from synthetic sounds only, and on
// real desktop sounds, instrument notes and music it says "yes, someone is speaking" for about one
// in six. These clips are real, but their labels are not the corpus's concepts: the manifest marks
// them `labelled: false`, so training asks them only "Is anyone speaking?" (see src/train/data.ts).
//
// Every clip is 16 kHz mono 16-bit WAV of at most 4 s (the embedded model's window), made by sox
// from one source file: a word whole, a short sound whole twice (--renderings), both cut at 4 s, a
// longer file as up to four excerpts of 1.5–4 s (none that is near silence). Each clip draws (seeded
// by its id) a level (peak −1 to −25 dBFS), 0–1 s of silence in front in half of them, and a
// telephone band (300–3,400 Hz) in a quarter: the same sound must get the same answer whatever its
// level and onset. Splits are by source file (80/10/10), so the
// excerpts of one track never straddle train and test. Files whose names say they hold a voice
// (a game's spoken "excellent!", a laugh, a crowd) are left out of the non-speech.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { readWav } from '../src/audio/wav.js';
import { hash32 } from '../src/corpus/rng.js';

const run = promisify(execFile);

/** Where a package keeps its sounds, and which of its files hold a voice (left out of non-speech). */
interface Source {
  pkg: string;
  dir: string;
  speech?: boolean;
  voices?: RegExp;
}
export const SOURCES: Source[] = [
  { pkg: 'chromium-bsu-data', dir: 'usr/share/games/chromium-bsu' },
  { pkg: 'extremetuxracer-data', dir: 'usr/share/games/etr' },
  { pkg: 'frozen-bubble-data', dir: 'usr/share/games/frozen-bubble', voices: /^(hurry|noh|chatted|applause)\./ },
  { pkg: 'gnome-nibbles', dir: 'usr/share/gnome-nibbles' },
  { pkg: 'granatier', dir: 'usr/share/granatier', voices: /^(wow|winlevel)\./ },
  { pkg: 'kapman', dir: 'usr/share/sounds/kapman' },
  { pkg: 'kbounce', dir: 'usr/share/kbounce' },
  { pkg: 'kgoldrunner', dir: 'usr/share/kgoldrunner' },
  { pkg: 'ksirk', dir: 'usr/share/ksirk' },
  { pkg: 'lbreakout2-data', dir: 'usr/share/games/lbreakout2', voices: /^(damn|dammit|excellent|verygood|wontgiveup)\./ },
  // the city's sounds of people (homes, schools, markets, crowds) may hold voices
  { pkg: 'lincity-ng-data', dir: 'usr/share/games/lincity-ng', voices: /^(Residential|School|University|Market|Health|Commune|Shanty|SportsCroud)/ },
  { pkg: 'pinball-data', dir: 'usr/share/games/pinball', voices: /^professor\./ },
  { pkg: 'quadrapassel', dir: 'usr/share/quadrapassel' },
  { pkg: 'tuxpaint-data', dir: 'usr/share/tuxpaint', voices: /^(youcannot|areyousure|tuxok|prompt|giggle)\./ },
  { pkg: 'warzone2100-music', dir: 'usr/share/games/warzone2100/music' },
  { pkg: 'wesnoth-1.16-music', dir: 'usr/share/games/wesnoth/1.16/data/core/music', voices: /^nunc_dimittis\./ },
  { pkg: 'xmoto-data', dir: 'usr/share/games/xmoto' },
  // chat and phone programs' notification sounds and ringtones (linphone's "hello" is a voice)
  { pkg: 'lomiri-sounds', dir: 'usr/share/sounds/lomiri' },
  { pkg: 'psi-plus-sounds', dir: 'usr/share/psi-plus/sound' },
  { pkg: 'eiskaltdcpp-sounds', dir: 'usr/share/eiskaltdcpp/sounds' },
  { pkg: 'pidgin-data', dir: 'usr/share/sounds/purple' },
  { pkg: 'linphone-common', dir: 'usr/share/sounds/linphone', voices: /^hello/ },
  { pkg: 'gajim', dir: 'usr/lib/python3/dist-packages/gajim/data/sounds' },
  { pkg: 'klettres-data', dir: 'usr/share/klettres', speech: true },
];
export const PACKAGES = SOURCES.map((s) => s.pkg);
const AUDIO = /\.(wav|ogg|opus|flac)$/i;
const MAX_S = 4;
/** Shorter sources (clicks of a few ms) are left out. */
const MIN_S = 0.1;
/** Excerpts whose peak is under −50 dBFS are left out. */
const QUIET = 10 ** (-50 / 20);

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
if (args.includes('--list-packages')) {
  process.stdout.write(PACKAGES.join(' ') + '\n');
  process.exit(0);
}
const OUT = path.resolve(flag('--out') ?? 'train-recordings');
const CHOSEN = flag('--packages')?.split(/[\s,]+/).filter(Boolean) ?? PACKAGES;
const SEED = Number(flag('--seed') ?? 0);
const PER_LANGUAGE = Number(flag('--per-language') ?? 30);
const RENDERINGS = Number(flag('--renderings') ?? 2);
const JOBS = Math.max(1, Number(flag('--jobs') ?? Math.min(4, os.availableParallelism())));
const roots = new Map<string, string>();
args.forEach((a, i) => {
  if (a === '--root') {
    const [pkg, dir] = (args[i + 1] ?? '').split('=');
    if (!pkg || !dir) throw new Error(`--root ${args[i + 1]}: use PKG=DIR`);
    roots.set(pkg, dir);
  }
});
if (!(PER_LANGUAGE > 0)) throw new Error('--per-language: a positive number');
if (!(Number.isInteger(RENDERINGS) && RENDERINGS >= 1)) throw new Error('--renderings: a whole number ≥ 1');

function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.isFile() && AUDIO.test(e.name)) out.push(p);
  }
  return out;
}

/** A uniform draw in [lo, hi) from a hash of the clip id and what is drawn. */
const draw = (id: string, what: string, lo: number, hi: number) => lo + (hash32(SEED, what, id) / 4294967296) * (hi - lo);
const r2 = (x: number) => Math.round(x * 100) / 100;

function splitOf(key: string): 'train' | 'val' | 'test' {
  const u = hash32(SEED, 'split', key) / 4294967296;
  return u < 0.8 ? 'train' : u < 0.9 ? 'val' : 'test';
}

interface Clip {
  id: string;
  pkg: string;
  src: string;
  speech: boolean;
  split: 'train' | 'val' | 'test';
  /** excerpt start and length in the decoded source, seconds */
  start: number;
  length: number;
  gainDb: number;
  padS: number;
  telephone: boolean;
  /** a part of the source, not all of it */
  excerpt: boolean;
}

/** The source decoded to 16 kHz mono float WAV (Opus through opusdec, the rest through sox). */
async function decode(src: string, dest: string): Promise<number> {
  let input = src;
  if (/\.opus$/i.test(src)) {
    input = `${dest}.opus.wav`;
    await run('opusdec', ['--quiet', '--rate', '48000', src, input]);
  }
  await run('sox', ['-R', '-D', '-V1', input, '-e', 'floating-point', '-b', '32', '-c', '1', '-r', '16000', dest]);
  if (input !== src) fs.rmSync(input);
  const { stdout } = await run('soxi', ['-D', dest]);
  return Number(stdout.trim());
}

/** The clips cut from one decoded source of `seconds`: a short file once, a long one as up to 4 excerpts. */
function clipsOf(pkg: string, src: string, rel: string, seconds: number, speech: boolean): Clip[] {
  const key = `${pkg}/${rel}`;
  const base = key.replace(/\.[^.]+$/, '').replace(/[^\w/-]+/g, '_');
  if (seconds < MIN_S) return [];
  const spans: [number, number][] = [];
  const whole = seconds <= MAX_S + 1;
  // a short sound whole, RENDERINGS times for non-speech (each with its own level, onset and band)
  if (whole) for (let k = 0; k < (speech ? 1 : RENDERINGS); k++) spans.push([0, Math.min(seconds, MAX_S)]);
  else {
    const n = Math.min(4, Math.floor(seconds / 8) + 1);
    for (let k = 0; k < n; k++) {
      const length = r2(draw(`${key}#${k}`, 'length', 1.5, MAX_S));
      // excerpt k from the k-th part of the file, so excerpts of one track do not overlap
      const part = (seconds - length) / n;
      spans.push([r2(k * part + draw(`${key}#${k}`, 'start', 0, part)), length]);
    }
  }
  return spans.map(([start, length], k) => {
    const id = spans.length > 1 ? `${base}-${k}` : base;
    const padS = draw(id, 'pad?', 0, 1) < 0.5 ? r2(Math.min(draw(id, 'pad', 0, 1), MAX_S - Math.min(length, MAX_S - 0.25))) : 0;
    return {
      id, pkg, src, speech, split: splitOf(key), start, length: r2(Math.min(length, MAX_S - padS)), padS, excerpt: seconds > MAX_S,
      gainDb: r2(draw(id, 'gain', -25, -1)), telephone: draw(id, 'band', 0, 1) < 0.25,
    };
  });
}

async function main() {
  const unknown = CHOSEN.filter((p) => !PACKAGES.includes(p));
  if (unknown.length) throw new Error(`--packages: ${unknown.join(', ')} not among the sources (${PACKAGES.join(', ')})`);
  const missing = CHOSEN.filter((p) => !roots.has(p));
  if (missing.length) throw new Error(`no --root for ${missing.join(', ')}`);
  fs.mkdirSync(path.join(OUT, 'clips'), { recursive: true });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'train-recordings-'));
  // the sources: every non-speech file not named as a voice; KLettres' words, PER_LANGUAGE per language
  const sources: { pkg: string; src: string; rel: string; speech: boolean }[] = [];
  for (const s of SOURCES.filter((x) => CHOSEN.includes(x.pkg))) {
    const root = roots.get(s.pkg)!;
    let files = walk(path.join(root, s.dir)).filter((f) => !s.voices?.test(path.basename(f)));
    if (files.length === 0) throw new Error(`${s.pkg}: no sound files under /${s.dir} (in ${root})`);
    if (s.speech) {
      const byLang = new Map<string, string[]>();
      for (const f of files) {
        const lang = path.relative(path.join(root, s.dir), f).split(path.sep)[0]!;
        byLang.set(lang, [...(byLang.get(lang) ?? []), f]);
      }
      files = [...byLang.values()].flatMap((l) => l.sort((a, b) => hash32(SEED, 'pick', path.relative(root, a)) - hash32(SEED, 'pick', path.relative(root, b))).slice(0, PER_LANGUAGE));
    }
    for (const f of files) sources.push({ pkg: s.pkg, src: f, rel: path.relative(path.join(root, s.dir), f), speech: !!s.speech });
  }
  const entries: string[] = [];
  const clips: Clip[] = [];
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (;;) {
      const s = sources[next++];
      if (!s) return;
      const decoded = path.join(tmp, `${hash32(s.pkg, s.rel).toString(16)}.wav`);
      let seconds: number;
      try {
        seconds = await decode(s.src, decoded);
      } catch (err) {
        throw new Error(`${s.src}: cannot decode (${(err as Error).message.split('\n')[0]})`);
      }
      const samples = readWav(decoded).samples;
      for (const c of clipsOf(s.pkg, s.src, s.rel, seconds, s.speech)) {
        // an excerpt that is (nearly) silence, such as a track's fade-out, would be its noise floor raised to the level drawn
        let peak = 0;
        for (let i = Math.floor(c.start * 16000), end = Math.min(samples.length, Math.ceil((c.start + c.length) * 16000)); i < end; i++) peak = Math.max(peak, Math.abs(samples[i]!));
        if (peak < QUIET) continue;
        const dest = path.join(OUT, 'clips', `${c.id}.wav`);
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        // the band first, so that the peak level is the one the manifest states
        const effects = ['trim', String(c.start), String(c.length), 'fade', 't', '0.01', String(c.length), '0.01'];
        if (c.telephone) effects.push('sinc', '300-3400');
        effects.push('norm', String(c.gainDb));
        if (c.padS > 0) effects.push('pad', String(c.padS), '0');
        await run('sox', ['-R', '-D', '-V1', decoded, '-e', 'signed-integer', '-b', '16', `${dest}.part.wav`, ...effects]);
        fs.renameSync(`${dest}.part.wav`, dest);
        clips.push(c);
      }
      fs.rmSync(decoded);
      if (++done % 100 === 0) process.stderr.write(`train-recordings: ${done}/${sources.length} source files\n`);
    }
  };
  try {
    await Promise.all(Array.from({ length: JOBS }, worker));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  clips.sort((a, b) => (a.id < b.id ? -1 : 1));
  clips.forEach((c, i) => {
    const augment = [
      ...(c.excerpt ? [`excerpt:${c.start.toFixed(2)}+${c.length.toFixed(2)}s`] : []),
      `peak:${c.gainDb.toFixed(2)}dB`, ...(c.padS ? [`offset:${c.padS.toFixed(2)}s`] : []), ...(c.telephone ? ['band:300-3400Hz'] : []),
    ];
    entries.push(JSON.stringify({
      file: `clips/${c.id}.wav`, labels: [], caption: '', gender: null, speech: c.speech, split: c.split, augment,
      duration: r2(c.padS + c.length), voice: null, sentence: null, seed: i, labelled: false, source: `${c.pkg}:/${path.relative(roots.get(c.pkg)!, c.src)}`,
    }));
  });
  const count = (p: (c: Clip) => boolean) => clips.filter(p).length;
  const info = {
    kind: 'train-recordings', seed: SEED, perLanguage: PER_LANGUAGE, packages: CHOSEN,
    clips: clips.length, speech: count((c) => c.speech), nonSpeech: count((c) => !c.speech),
    splits: Object.fromEntries(['train', 'val', 'test'].map((s) => [s, count((c) => c.split === s)])),
  };
  fs.writeFileSync(path.join(OUT, 'manifest.jsonl.part'), entries.join('\n') + '\n');
  fs.renameSync(path.join(OUT, 'manifest.jsonl.part'), path.join(OUT, 'manifest.jsonl'));
  fs.writeFileSync(path.join(OUT, 'corpus.json.part'), JSON.stringify(info, null, 2) + '\n');
  fs.renameSync(path.join(OUT, 'corpus.json.part'), path.join(OUT, 'corpus.json'));
  process.stderr.write(`train-recordings: ${clips.length} clips in ${OUT} (${info.speech} speech, ${info.nonSpeech} non-speech) from ${sources.length} files\n`);
}

main().catch((err) => {
  process.stderr.write(`make-train-recordings: ${(err as Error).message}\n`);
  process.exit(1);
});
