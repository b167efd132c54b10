// The real corpus from Debian packages, end to end: tools/make-real-corpus.sh builds a small subset
// (female and male Asterisk prompts, CMU Sphinx recordings, ALSA's channel names, desktop sounds;
// clips in WAV, FLAC, Ogg Vorbis, Ogg Opus and MP3), byte for byte the same when built twice; then
// the CLI runs capture → train-sae → retrieve → describe → evaluate → report on it through
// --labels, and the files and figures each stage writes are checked. The packages come from
// tools/setup.sh --with-test-tools (a package not installed is fetched with apt-get download).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCaptureManifest } from '../src/ard/run.js';
import { readFeatures } from '../src/ard/rank.js';
import { ownTimeout, runCli } from './helpers.js';

const ROOT = path.join(import.meta.dirname, '..');
const PACKAGES = 'asterisk-core-sounds-en-wav asterisk-core-sounds-it-wav pocketsphinx-testdata alsa-utils sound-theme-freedesktop';
let tmp: string;

function makeCorpus(out: string, packages: string, perSource: number): void {
  const r = spawnSync('bash', [path.join(ROOT, 'tools', 'make-real-corpus.sh'), '--out', out, '--packages', packages, '--per-source', String(perSource), '--no-apt'], { encoding: 'utf8', cwd: ROOT });
  if (r.status !== 0) throw new Error(`make-real-corpus.sh failed (needs: bash tools/setup.sh --with-test-tools): ${r.stderr.trim().split('\n').at(-1)}`);
}

/** labels.csv as rows of named fields (the script quotes fields with commas or quotes). */
function readCsv(file: string): Record<string, string>[] {
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  const parse = (line: string) => [...line.matchAll(/("(?:[^"]|"")*"|[^,]*)(,|$)/g)].slice(0, -1).map((m) => (m[1]!.startsWith('"') ? m[1]!.slice(1, -1).replace(/""/g, '"') : m[1]!));
  const head = parse(lines[0]!);
  return lines.slice(1).map((l) => Object.fromEntries(parse(l).map((v, i) => [head[i]!, v])));
}

function files(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(path.relative(dir, p), fs.readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

beforeAll(() => void (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-real-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('a real corpus from Debian packages', () => {
  it('make-real-corpus.sh gives the same bytes twice', () => {
    const a = path.join(tmp, 'a');
    const b = path.join(tmp, 'b');
    makeCorpus(a, 'alsa-utils sound-theme-freedesktop', 4);
    makeCorpus(b, 'alsa-utils sound-theme-freedesktop', 4);
    const fa = files(a);
    const fb = files(b);
    expect([...fa.keys()].sort()).toEqual([...fb.keys()].sort());
    for (const [k, v] of fa) expect(v.equals(fb.get(k)!), k).toBe(true);
    expect(fa.size).toBe(2 + 8); // labels.csv, packages.txt and 4 clips of each package
  }, ownTimeout(180_000));

  it('capture → train-sae → retrieve → describe → evaluate → report through --labels', () => {
    const corpus = path.join(tmp, 'corpus');
    makeCorpus(corpus, PACKAGES, 3);
    const rows = readCsv(path.join(corpus, 'labels.csv'));
    expect(Object.keys(rows[0]!)).toEqual(['file', 'labels', 'split', 'speaker', 'gender', 'gender_source', 'language', 'speech', 'caption', 'package', 'source_file']);
    for (const r of rows) expect(fs.existsSync(path.join(corpus, r.file!)), r.file).toBe(true);
    // female (Allison) and male (Carlo) speech with the gender's source, non-speech, and every format
    expect(rows.filter((r) => r.gender === 'female').every((r) => r.speaker === 'en_US_f_Allison' && /en_US_f_Allison/.test(r.gender_source!))).toBe(true);
    expect(rows.some((r) => r.gender === 'male' && r.labels!.split(';').includes('male speech'))).toBe(true);
    expect(rows.some((r) => r.speech === 'no')).toBe(true);
    expect(new Set(rows.map((r) => path.extname(r.file!)))).toEqual(new Set(['.wav', '.flac', '.ogg', '.opus', '.mp3']));

    const run = path.join(tmp, 'run');
    const L = '2';
    const step = (args: string[]) => {
      const r = runCli([...args, '--quiet']);
      expect(r.code, `${args[0]}: ${r.stderr.join('\n')}`).toBe(0);
      return r.stdout;
    };
    expect(step(['capture', '--labels', path.join(corpus, 'labels.csv'), '--layers', L, '--run', run]))
      .toMatch(new RegExp(`^capture: ${rows.length} clips, \\d+ rows .*splits as given: column 'split'`));
    const m = readCaptureManifest(run);
    expect(m.source).toMatchObject({ layout: 'labels-file', split: { method: 'given' }, skippedRows: [] });
    expect(m.bad).toEqual([]);
    const byFile = new Map(rows.map((r) => [path.join(corpus, r.file!), r]));
    for (const c of m.clips) {
      const r = byFile.get(c.file)!;
      expect(c.labels).toEqual(r.labels!.split(';'));
      expect(c.split).toBe(r.split);
    }

    expect(step(['train-sae', '--run', run, '--layer', L, '--latents', '256', '--k', '8', '--steps', '150', '--batch', '256'])).toMatch(/^train-sae: FVU (0\.\d+)/);
    expect(step(['retrieve', '--run', run, '--layer', L, '--p', '3', '--keep', '12'])).toMatch(/kept \d+ features/);
    step(['describe', '--run', run, '--layer', L, '--clips', '3']);
    const feats = readFeatures(path.join(run, `features-${L}.json`));
    expect(feats.features.length).toBeGreaterThan(0);
    expect(feats.features.every((f) => typeof f.name === 'string' && f.name.length > 0)).toBe(true);

    step(['evaluate', '--run', run, '--layer', L]);
    const ev = JSON.parse(fs.readFileSync(path.join(run, 'eval.json'), 'utf8'));
    const vocabulary = new Set(rows.flatMap((r) => r.labels!.split(';')));
    expect(new Set([...ev.labels, ...ev.skippedLabels])).toEqual(vocabulary);
    expect(ev.labels).toContain('speech');
    expect(ev.nVal).toBe(rows.filter((r) => r.split === 'val').length);
    expect(ev.nTest).toBe(rows.filter((r) => r.split === 'test').length);
    for (const k of ['sae', 'neurons', 'random']) {
      for (const fig of ['precision', 'recall', 'f1', 'map']) {
        expect(ev[k][fig]).toBeGreaterThanOrEqual(0);
        expect(ev[k][fig]).toBeLessThanOrEqual(1);
      }
      expect(Object.keys(ev[k].perLabel).sort()).toEqual([...ev.labels].sort());
    }

    expect(step(['report', '--run', run])).toMatch(/^report: .*report\.html/);
    const html = fs.readFileSync(path.join(run, 'report.html'), 'utf8');
    const audio: Record<string, string> = JSON.parse(html.match(/<script type="application\/json" id="audio-data">(.*?)<\/script>/s)![1]!);
    const played = Object.keys(audio).map((i) => m.clips[Number(i)]!.file);
    expect(played.some((f) => /\.(flac|ogg|opus|mp3)$/.test(f))).toBe(true); // compressed clips play too
    expect(html).not.toContain('embedded by writeReportAsync');
    for (const label of ev.labels) expect(html).toContain(label);
  }, ownTimeout(400_000));
});
