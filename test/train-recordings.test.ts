// tools/train-recordings.ts (the real-recordings training corpus) on stand-in package folders made
// here with sox: short effects, a long music track, a click, a file named as a voice, spoken
// letters in two languages. Checked: which files become clips (a short sound twice), excerpts of a long track stay within
// 4 s and one split, levels/onsets/bands as the manifest says, `labelled: false` entries that
// readManifest accepts and training asks only "Is anyone speaking?", the same bytes twice, and the
// one-line refusals. Then tools/make-train-recordings.sh on two small real packages, which
// tools/setup.sh --with-test-tools installs (with sox and opus-tools): in CI a missing one fails.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readWav } from '../src/audio/wav.js';
import { readManifest } from '../src/corpus/manifest.js';
import { clipQAs } from '../src/train/data.js';
import { ownTimeout } from './helpers.js';

const SMALL = ['psi-plus-sounds', 'eiskaltdcpp-sounds'];
const installed = SMALL.every((p) => spawnSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' }).stdout.includes('install ok installed'));
const RUN = installed || !!process.env.CI;

const ROOT = path.join(import.meta.dirname, '..');
let tmp: string;

function sox(out: string, ...synth: string[]): void {
  fs.mkdirSync(path.dirname(out), { recursive: true });
  execFileSync('sox', ['-R', '-D', '-V1', '-n', '-r', '22050', '-c', '2', out, 'synth', ...synth]);
}

function build(out: string, ...extra: string[]) {
  return spawnSync('npx', ['tsx', path.join(ROOT, 'tools', 'train-recordings.ts'), '--out', out, '--jobs', '2', ...extra], { encoding: 'utf8', cwd: ROOT });
}

const roots = () => ['--root', `kbounce=${path.join(tmp, 'kb')}`, '--root', `lbreakout2-data=${path.join(tmp, 'lb')}`, '--root', `klettres-data=${path.join(tmp, 'kl')}`];
const PACKAGES = ['--packages', 'kbounce lbreakout2-data klettres-data', '--per-language', '2'];

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-trainrec-'));
  const kb = path.join(tmp, 'kb', 'usr/share/kbounce');
  sox(path.join(kb, 'sounds', 'reflect.wav'), '0.6', 'sine', '880');
  sox(path.join(kb, 'sounds', 'click.wav'), '0.05', 'square', '2000'); // under 0.1 s: left out
  sox(path.join(kb, 'music', 'theme.ogg'), '20', 'sine', '220', 'sine', '330'); // long: excerpts
  sox(path.join(kb, 'music', 'fade.ogg'), '12', 'pluck', '220'); // long, and silent after its first seconds: the silent excerpt is left out
  const lb = path.join(tmp, 'lb', 'usr/share/games/lbreakout2');
  sox(path.join(lb, 'sounds', 'wall.wav'), '1.5', 'brownnoise');
  sox(path.join(lb, 'sounds', 'excellent.wav'), '0.8', 'sine', '200'); // named as a voice: left out
  const kl = path.join(tmp, 'kl', 'usr/share/klettres');
  for (const lang of ['en', 'cs']) for (const l of ['a', 'b', 'c']) sox(path.join(kl, lang, 'alpha', `${l}.ogg`), '0.4', 'sawtooth', '150');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the real-recordings training corpus (tools/train-recordings.ts)', () => {
  it('cuts clips as documented, marks them unlabelled, and gives the same bytes twice', () => {
    const a = path.join(tmp, 'a');
    const r = build(a, ...roots(), ...PACKAGES);
    expect(r.status, r.stderr).toBe(0);
    const m = readManifest(a);
    const raw = fs.readFileSync(path.join(a, 'manifest.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const sources = raw.map((e) => e.source as string);
    // the click and the voice-named file are left out; two letters of each language; the 20 s track as 3 excerpts
    expect(sources.some((s) => s.endsWith('click.wav') || s.endsWith('excellent.wav'))).toBe(false);
    expect(sources.filter((s) => s.startsWith('klettres-data:'))).toHaveLength(4);
    const excerpts = raw.filter((e) => e.source.endsWith('theme.ogg'));
    expect(excerpts).toHaveLength(3);
    expect(raw.filter((e) => e.source.endsWith('fade.ogg')).map((e) => e.file)).toEqual(['clips/kbounce/music/fade-0.wav']);
    expect(new Set(excerpts.map((e) => e.split)).size).toBe(1);
    expect(m).toHaveLength(4 + 3 + 1 + 2 * 2);
    // a short sound twice, each with its own level; a word once
    const reflect = raw.filter((e) => e.source.endsWith('reflect.wav'));
    expect(reflect.map((e) => e.file)).toEqual(['clips/kbounce/sounds/reflect-0.wav', 'clips/kbounce/sounds/reflect-1.wav']);
    expect(reflect[0].augment).not.toEqual(reflect[1].augment);
    expect(reflect.every((e) => !e.augment.some((t: string) => t.startsWith('excerpt:')))).toBe(true);
    for (const [i, e] of m.entries()) {
      expect(e.labelled).toBe(false);
      expect(e.labels).toEqual([]);
      expect(e.speech).toBe(sources[i]!.startsWith('klettres-data:'));
      expect(clipQAs(e).map((q) => q.kind)).toEqual(['speaking']);
      // 16 kHz mono, at most 4 s, its duration and peak level as the manifest says
      const w = readWav(path.join(a, e.file));
      expect(w.originalRate).toBe(16000);
      expect(w.channels).toBe(1);
      const seconds = w.samples.length / 16000;
      expect(seconds).toBeLessThanOrEqual(4.0001);
      expect(seconds).toBeCloseTo(e.duration, 1);
      const peakDb = 20 * Math.log10(w.samples.reduce((p, x) => Math.max(p, Math.abs(x)), 0));
      const want = Number(e.augment.find((t) => t.startsWith('peak:'))!.slice(5, -2));
      expect(Math.abs(peakDb - want), `${e.file} ${e.augment}`).toBeLessThan(0.2);
      // silence in front where an offset is listed
      const offset = e.augment.find((t) => t.startsWith('offset:'));
      if (offset) {
        const n = Math.floor(Number(offset.slice(7, -1)) * 16000) - 1;
        expect(w.samples.subarray(0, n).every((x) => x === 0)).toBe(true);
      }
    }
    expect(excerpts.every((e) => e.augment.some((t: string) => t.startsWith('excerpt:')))).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(a, 'corpus.json'), 'utf8'))).toMatchObject({ kind: 'train-recordings', clips: 12, speech: 4, nonSpeech: 8 });
    // the same again, byte for byte
    const b = path.join(tmp, 'b');
    expect(build(b, ...roots(), ...PACKAGES).status).toBe(0);
    for (const e of m) expect(fs.readFileSync(path.join(b, e.file)).equals(fs.readFileSync(path.join(a, e.file))), e.file).toBe(true);
    expect(fs.readFileSync(path.join(b, 'manifest.jsonl'), 'utf8')).toBe(fs.readFileSync(path.join(a, 'manifest.jsonl'), 'utf8'));
  }, ownTimeout(120_000));

  it('refuses an unknown package, a missing root and an empty source folder in one line', () => {
    const out = path.join(tmp, 'bad');
    const cases: [string[], RegExp][] = [
      [[...roots(), '--packages', 'kbounce nope'], /^make-train-recordings: --packages: nope not among the sources/],
      [[...roots(), '--packages', 'kbounce ksirk'], /^make-train-recordings: no --root for ksirk$/],
      [['--root', `kbounce=${path.join(tmp, 'lb')}`, '--packages', 'kbounce'], /^make-train-recordings: kbounce: no sound files under \/usr\/share\/kbounce/],
    ];
    for (const [args, msg] of cases) {
      const r = build(out, ...args);
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(msg);
    }
  }, ownTimeout(60_000));

  it.runIf(RUN)('make-train-recordings.sh builds from installed packages, the same bytes twice, and keeps a folder it did not make', () => {
    const script = path.join(ROOT, 'tools', 'make-train-recordings.sh');
    const run = (out: string) => spawnSync('bash', [script, '--out', out, '--packages', SMALL.join(' ')], { encoding: 'utf8', cwd: ROOT });
    const a = path.join(tmp, 'pkg-a');
    const b = path.join(tmp, 'pkg-b');
    for (const out of [a, b]) {
      const r = run(out);
      expect(r.status, r.stderr).toBe(0);
    }
    const m = readManifest(a);
    expect(m.length).toBeGreaterThan(20); // 24 short sounds, twice each
    expect(m.every((e) => e.labelled === false && !e.speech)).toBe(true);
    for (const e of m) expect(fs.readFileSync(path.join(b, e.file)).equals(fs.readFileSync(path.join(a, e.file))), e.file).toBe(true);
    const pk = fs.readFileSync(path.join(a, 'packages.txt'), 'utf8');
    for (const p of SMALL) expect(pk).toMatch(new RegExp(`^${p} \\S+ \\(installed\\)$`, 'm'));
    expect(pk).toContain(`--packages "${SMALL.join(' ')}"`);
    // a folder of something else is not emptied
    const other = path.join(tmp, 'other');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'keep.txt'), 'mine');
    const r = run(other);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`make-train-recordings: ${other} exists and is not a corpus this script made (no packages.txt of its own): choose another --out`);
    expect(fs.readFileSync(path.join(other, 'keep.txt'), 'utf8')).toBe('mine');
  }, ownTimeout(120_000));
});
