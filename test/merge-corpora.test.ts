// tools/merge-corpora.ts: several probe corpora as one folder (links + one manifest), for training on
// the default and the varied corpus together; bad arguments give a one-line error.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readManifest } from '../src/corpus/manifest.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');
const run = (...args: string[]) => spawnSync(TSX, [path.join(ROOT, 'tools', 'merge-corpora.ts'), ...args], { encoding: 'utf8', cwd: ROOT });

function corpus(dir: string, files: string[]): void {
  fs.mkdirSync(path.join(dir, 'clips'), { recursive: true });
  const lines = files.map((f, i) => {
    fs.writeFileSync(path.join(dir, f), `audio ${f}`);
    return JSON.stringify({ file: f, labels: ['bell'], caption: 'a bell', gender: null, speech: false, split: i === 0 ? 'test' : 'train', augment: [], duration: 1 });
  });
  fs.writeFileSync(path.join(dir, 'manifest.jsonl'), lines.join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'corpus.json'), JSON.stringify({ seed: 0, size: files.length }));
}

describe('merge-corpora', () => {
  it('lists every clip of every corpus under its name, through links, nothing copied', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-merge-'));
    corpus(path.join(tmp, 'a'), ['clips/00000-bell-1.wav', 'clips/00001-bell-2.wav']);
    corpus(path.join(tmp, 'b'), ['clips/00000-bell-1.wav']); // the same name in another corpus
    const out = path.join(tmp, 'mix');
    const r = run('--out', out, `one=${path.join(tmp, 'a')}`, `two=${path.join(tmp, 'b')}`);
    expect(r.status, r.stderr).toBe(0);
    const m = readManifest(out);
    expect(m.map((e) => e.file)).toEqual(['one/clips/00000-bell-1.wav', 'one/clips/00001-bell-2.wav', 'two/clips/00000-bell-1.wav']);
    expect(m.map((e) => e.split)).toEqual(['test', 'train', 'test']);
    for (const e of m) expect(fs.existsSync(path.join(out, e.file))).toBe(true);
    expect(fs.lstatSync(path.join(out, 'one')).isSymbolicLink()).toBe(true);
    expect(fs.readFileSync(path.join(out, 'two/clips/00000-bell-1.wav'), 'utf8')).toBe('audio clips/00000-bell-1.wav');
    expect(Object.keys(JSON.parse(fs.readFileSync(path.join(out, 'corpus.json'), 'utf8')).merged)).toEqual(['one', 'two']);
    // a second run replaces the links and the manifest
    expect(run('--out', out, `one=${path.join(tmp, 'b')}`).status).toBe(0);
    expect(readManifest(out).map((e) => e.file)).toEqual(['one/clips/00000-bell-1.wav']);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('refuses a source that is not name=DIR, or a folder without a manifest, in one line', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-merge-'));
    const bad = run('--out', path.join(tmp, 'o'), 'no-equals-sign');
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim()).toBe("error: merge-corpora: 'no-equals-sign' is not name=DIR");
    const none = run('--out', path.join(tmp, 'o'), `x=${path.join(tmp, 'missing')}`);
    expect(none.status).toBe(1);
    expect(none.stderr.trim().split('\n')).toHaveLength(1);
    expect(none.stderr).toContain('manifest.jsonl: cannot read');
    fs.rmSync(tmp, { recursive: true, force: true });
  });
});
