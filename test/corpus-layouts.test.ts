// Corpus layouts: label files (CSV, TSV, JSONL), ESC-50, FSD50K, UrbanSound8K and a folder per class,
// read from the small corpora tools/make-corpus-fixtures.ts writes; every split rule; every bad row
// reported in one line naming the metadata file and line, the rest read on.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeWav } from '../src/audio/wav.js';
import { openClipSource, type ClipSource } from '../src/corpus/clips.js';
import { assignSplits } from '../src/corpus/layouts/records.js';
import { parseDelimited } from '../src/corpus/layouts/table.js';
import { ArdError } from '../src/util/errors.js';
import { makeCorpusFixtures } from '../tools/make-corpus-fixtures.js';
import { tinyModelDir } from './tiny-model.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-layouts-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const fx = makeCorpusFixtures(tmp);

const brief = (src: ClipSource) => src.clips().map((c) => [c.id, c.labels.join('|'), c.split, c.fold ?? '']);

describe('label files', () => {
  const dir = fx.labels;

  it('CSV with the usual columns: labels split on , and ;, optional caption/speaker, splits as given; bad rows reported one line each', () => {
    const csv = path.join(dir, 'labels.csv');
    const src = openClipSource(dir, { labels: csv });
    expect(src.layout).toBe('labels-file');
    expect(src.clips()).toEqual([
      // the file labels speech (clip b), so clips without a speech label hold none; b's gender is read off its label
      { id: 'a', file: path.join(dir, 'a.wav'), labels: ['dog', 'bark'], split: 'train', caption: 'a dog barks', speech: false },
      { id: 'b', file: path.join(dir, 'b.wav'), labels: ['speech', 'female speech'], split: 'val', caption: 'a woman speaks', speaker: 's1', speech: true, gender: 'female' },
      { id: path.join('sub', 'c'), file: path.join(dir, 'sub', 'c.wav'), labels: ['rain'], split: 'test', speech: false },
    ]);
    expect(src.problems()).toEqual([
      `${csv}:5: missing.wav not found`,
      `${csv}:6: a.wav is a duplicate of ${csv}:2`,
      `${csv}:7: no labels for d.wav`,
      `${csv}:8: ../outside.wav is outside the corpus folder ${dir}`,
      `${csv}:9: no labels for e.wav`,
    ]);
    expect(src.splitRule()).toMatchObject({ method: 'given', source: `column 'split' of ${csv}` });
    expect(src.clips(['val', 'test']).map((c) => c.id)).toEqual(['b', path.join('sub', 'c')]);
  });

  it('gender and speech columns as given; else read from speech labels only where the file labels speech; bad values reported', () => {
    const d = path.join(tmp, 'gender-speech');
    fs.mkdirSync(d, { recursive: true });
    for (const f of ['p', 'q', 'r', 's', 't', 'u']) writeWav(path.join(d, `${f}.wav`), new Float32Array(1600).fill(0.1), 16000);
    const csv = path.join(d, 'labels.csv');
    fs.writeFileSync(csv, [
      'file,labels,gender,speech',
      'p.wav,speech,female,', // speech from its label, gender from the column
      'q.wav,Male_speech_and_man_speaking,,', // FSD50K's label: speech, male
      'r.wav,bell,,no',
      's.wav,digit,M,yes', // no speech label but a speech column
      't.wav,speech,child,', // a bad gender
      'u.wav,speech,,maybe', // a bad speech value
    ].join('\n') + '\n');
    const src = openClipSource(d, { labels: csv, splitSeed: 0 });
    expect(src.clips().map((c) => [c.id, c.speech, c.gender])).toEqual([
      ['p', true, 'female'], ['q', true, 'male'], ['r', false, undefined], ['s', true, 'male'],
    ]);
    expect(src.problems()).toEqual([
      `${csv}:6: gender 'child' is not female or male (leave it empty when unknown)`,
      `${csv}:7: speech 'maybe' is not yes or no`,
    ]);
    // a file that never labels speech says nothing about it
    const csv2 = path.join(d, 'sounds.csv');
    fs.writeFileSync(csv2, 'file,labels\np.wav,bell\nq.wav,dog\n');
    expect(openClipSource(d, { labels: csv2 }).clips().map((c) => [c.speech, c.gender])).toEqual([[undefined, undefined], [undefined, undefined]]);
  });

  it('TSV with other column names, chosen by flags; a named column that is absent, or no labels column, is one error', () => {
    const tsv = path.join(dir, 'tags.tsv');
    const src = openClipSource(dir, { labels: tsv, labelsColumn: 'tags', splitColumn: 'part' });
    expect(brief(src)).toEqual([['a', 'dog', 'part-a', ''], ['b', 'speech', 'part-b', ''], [path.join('sub', 'c'), 'rain', 'part-a', '']]);
    expect(src.problems()).toEqual([]);
    // fold flags take precedence over a split column
    const byFold = openClipSource(dir, { labels: tsv, labelsColumn: 'tags', splitColumn: 'part', foldColumn: 'group', valFold: '2', testFold: '3' });
    expect(brief(byFold).map((r) => r[2])).toEqual(['train', 'val', 'test']);
    expect(byFold.splitRule()).toMatchObject({ method: 'fold', valFold: '2', testFold: '3', defaultFolds: false });

    expect(() => openClipSource(dir, { labels: tsv }).clips()).toThrow(`${tsv}: no labels column (columns: path, tags, part, group); name it with --labels-column`);
    expect(() => openClipSource(dir, { labels: tsv, labelsColumn: 'tags', fileColumn: 'nope' }).clips()).toThrow(
      `${tsv}: no column 'nope' for the audio file (columns: path, tags, part, group)`,
    );
    const missing = path.join(dir, 'nope.csv');
    expect(() => openClipSource(dir, { labels: missing }).clips()).toThrow(ArdError);
    expect(() => openClipSource(dir, { labels: missing }).clips()).toThrow(`${missing}: cannot read (ENOENT)`);
  });

  it('JSONL: labels as an array or a string, folds; a bad JSON line is one report; folds split by default, or as named', () => {
    const jsonl = path.join(dir, 'labels.jsonl');
    const src = openClipSource(dir, { labels: jsonl });
    expect(brief(src)).toEqual([['a', 'dog|bark', 'train', '1'], ['b', 'speech|male speech', 'val', '2'], ['d', 'rain', 'test', '3']]);
    expect(src.problems()).toHaveLength(2);
    expect(src.problems()[0]).toMatch(new RegExp(`^${jsonl.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: invalid JSON \\(`));
    expect(src.problems()[1]).toBe(`${jsonl}:5: no labels for e.wav`);
    expect(src.splitRule()).toMatchObject({ method: 'fold', valFold: '2', testFold: '3', defaultFolds: true });

    const testOnly = openClipSource(dir, { labels: jsonl, testFold: '1' });
    expect(brief(testOnly).map((r) => r[2])).toEqual(['test', 'train', 'train']);
    expect(() => openClipSource(dir, { labels: jsonl, valFold: '9' }).clips()).toThrow(`${jsonl}: --val-fold 9: no such fold (folds: 1, 2, 3)`);
    expect(() => openClipSource(dir, { labels: jsonl, valFold: '2', testFold: '2' }).clips()).toThrow(`${jsonl}: --val-fold and --test-fold are both 2`);
  });

  it('neither splits nor folds: a seeded hash of the file name, stated in the rule; the seed changes it', () => {
    const plain = path.join(dir, 'plain.csv');
    const src = openClipSource(dir, { labels: plain });
    expect(src.splitRule()).toEqual({
      method: 'hash', seed: 0, fractions: { train: 0.7, val: 0.15, test: 0.15 }, description: 'seeded hash of the file name (seed 0): 70 % train, 15 % val, 15 % test',
    });
    const splits = src.clips().map((c) => c.split);
    expect(openClipSource(dir, { labels: plain }).clips().map((c) => c.split)).toEqual(splits);
    for (const s of splits) expect(['train', 'val', 'test']).toContain(s);
    expect(() => openClipSource(dir, { labels: plain, testFold: '1' }).clips()).toThrow(`${plain}: --val-fold/--test-fold given, but the corpus has no folds`);
  });

  it('the hash split gives 70/15/15 over many names, depends on the seed and only on the name', () => {
    const ids = Array.from({ length: 4000 }, (_, i) => ({ id: `clip-${i}` }));
    const share = (splits: string[], s: string) => splits.filter((x) => x === s).length / splits.length;
    const a = assignSplits('x', ids, {}).splits;
    expect(share(a, 'train')).toBeGreaterThan(0.67);
    expect(share(a, 'train')).toBeLessThan(0.73);
    expect(share(a, 'val')).toBeGreaterThan(0.12);
    expect(share(a, 'val')).toBeLessThan(0.18);
    expect(share(a, 'test')).toBeGreaterThan(0.12);
    expect(share(a, 'test')).toBeLessThan(0.18);
    const b = assignSplits('x', ids, { splitSeed: 7 }).splits;
    expect(b.filter((s, i) => s !== a[i]).length).toBeGreaterThan(400);
    // a clip's split does not depend on which other clips are listed
    expect(assignSplits('x', ids.slice(100, 200), {}).splits).toEqual(a.slice(100, 200));
  });

  it('column flags without a label file are refused', () => {
    expect(() => openClipSource(fx.esc50, { labelsColumn: 'category' })).toThrow(`${fx.esc50}: --labels-column needs a label file (--labels FILE)`);
  });
});

describe('dataset layouts', () => {
  it('ESC-50: meta/esc50.csv, category as the label, folds (default: 4 val, 5 test; or as named); a missing file reported', () => {
    const meta = path.join(fx.esc50, 'meta', 'esc50.csv');
    const src = openClipSource(fx.esc50);
    expect(src.layout).toBe('esc50');
    expect(src.origin).toBe(meta);
    const rows = brief(src);
    expect(rows).toHaveLength(10);
    expect(rows[0]).toEqual([path.join('audio', '1-100-A-0'), 'dog', 'train', '1']);
    expect(rows[1]).toEqual([path.join('audio', '1-110-A-10'), 'rain', 'train', '1']);
    expect(rows.filter((r) => r[2] === 'val').map((r) => r[3])).toEqual(['4', '4']);
    expect(rows.filter((r) => r[2] === 'test').map((r) => r[3])).toEqual(['5', '5']);
    expect(src.problems()).toEqual([`${meta}:12: 5-999-A-0.wav not found`]);
    expect(src.splitRule()).toMatchObject({ method: 'fold', valFold: '4', testFold: '5', defaultFolds: true });
    const named = openClipSource(fx.esc50, { valFold: '1', testFold: '2' });
    expect(brief(named).map((r) => `${r[3]}:${r[2]}`)).toEqual(['1:val', '1:val', '2:test', '2:test', '3:train', '3:train', '4:train', '4:train', '5:train', '5:train']);
  });

  it('FSD50K: dev.csv split column and eval.csv as test, quoted comma-separated labels; a label outside vocabulary.csv reported', () => {
    const gt = path.join(fx.fsd50k, 'FSD50K.ground_truth');
    const src = openClipSource(fx.fsd50k);
    expect(src.layout).toBe('fsd50k');
    expect(brief(src)).toEqual([
      [path.join('FSD50K.dev_audio', '101'), 'Bark|Dog|Domestic_animals_and_pets', 'train', ''],
      [path.join('FSD50K.dev_audio', '102'), 'Rain', 'train', ''],
      [path.join('FSD50K.dev_audio', '103'), 'Rain', 'val', ''],
      [path.join('FSD50K.eval_audio', '201'), 'Dog|Domestic_animals_and_pets', 'test', ''],
      [path.join('FSD50K.eval_audio', '202'), 'Rain', 'test', ''],
    ]);
    expect(src.problems()).toEqual([`${path.join(gt, 'dev.csv')}:5: label 'Thunder' not in ${path.join(gt, 'vocabulary.csv')}`]);
    expect(src.splitRule()).toMatchObject({ method: 'given' });
    expect(() => openClipSource(fx.fsd50k, { testFold: '1' }).clips()).toThrow(`${gt}: --val-fold/--test-fold given, but the corpus has no folds`);
  });

  it('UrbanSound8K: audio/fold<N>/, class as the label, ten-fold style splits; a duplicate row reported', () => {
    const meta = path.join(fx.urbansound8k, 'metadata', 'UrbanSound8K.csv');
    const src = openClipSource(fx.urbansound8k);
    expect(src.layout).toBe('urbansound8k');
    expect(brief(src)).toEqual([
      [path.join('audio', 'fold1', '1001-3-0-0'), 'dog_bark', 'train', '1'],
      [path.join('audio', 'fold1', '1001-8-0-0'), 'siren', 'train', '1'],
      [path.join('audio', 'fold2', '1002-3-0-0'), 'dog_bark', 'val', '2'],
      [path.join('audio', 'fold2', '1002-8-0-0'), 'siren', 'val', '2'],
      [path.join('audio', 'fold3', '1003-3-0-0'), 'dog_bark', 'test', '3'],
      [path.join('audio', 'fold3', '1003-8-0-0'), 'siren', 'test', '3'],
    ]);
    expect(src.problems()).toEqual([`${meta}:8: ${path.join('fold1', '1001-3-0-0.wav')} is a duplicate of ${meta}:2`]);
    expect(brief(openClipSource(fx.urbansound8k, { testFold: '1' })).map((r) => r[2])).toEqual(['test', 'test', 'train', 'train', 'train', 'train']);
  });

  it('a missing required column is one error naming the metadata file', () => {
    const dir = path.join(tmp, 'esc-broken');
    fs.mkdirSync(path.join(dir, 'meta'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'meta', 'esc50.csv'), 'filename,target\nx.wav,0\n');
    expect(() => openClipSource(dir).clips()).toThrow(`${path.join(dir, 'meta', 'esc50.csv')}: missing columns fold, category (columns: filename, target)`);
  });

  it('a folder per class: the class folder names the label, clips at any depth, hash splits; a folder with its own WAVs stays a plain WAV folder', () => {
    const src = openClipSource(fx.classes);
    expect(src.layout).toBe('class-folders');
    expect(brief(src).map((r) => [r[0], r[1]])).toEqual([[path.join('dog', 'd1'), 'dog'], [path.join('dog', 'deep', 'd2'), 'dog'], [path.join('rain', 'r1'), 'rain']]);
    expect(src.splitRule().method).toBe('hash');
    expect(src.problems()).toEqual([]);
    writeWav(path.join(fx.classes, 'top.wav'), new Float32Array(160));
    try {
      const flat = openClipSource(fx.classes);
      expect(flat.layout).toBe('wav-folder');
      expect(flat.clips().every((c) => c.labels.length === 0 && c.split === 'all')).toBe(true);
      expect(() => openClipSource(fx.classes, { valFold: '1' })).toThrow(`${fx.classes}: --val-fold/--test-fold given, but the corpus has no folds`);
    } finally {
      fs.rmSync(path.join(fx.classes, 'top.wav'));
    }
  });
});

describe('delimited text', () => {
  it('quotes hold delimiters, newlines and doubled quotes; CRLF and blank lines; a record keeps its first line', () => {
    expect(parseDelimited('a,b\r\n\r\n"x,1","say ""hi""\nthere"\nlast,\n', ',')).toEqual([
      { line: 1, cells: ['a', 'b'] },
      { line: 3, cells: ['x,1', 'say "hi"\nthere'] },
      { line: 5, cells: ['last', ''] },
    ]);
  });
});

describe('capture CLI over a label file', () => {
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, [path.join(import.meta.dirname, '..', 'bin', 'ardgpu.mjs'), ...args], {
      encoding: 'utf8',
      env: { ...process.env, ARDGPU_FROM_SOURCE: '1', XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
      timeout: 120_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr.split('\n').filter((l) => l && !/^Warning: max\w+ artificially reduced/.test(l)) };
  };
  const model = tinyModelDir();
  afterAll(() => fs.rmSync(model, { recursive: true, force: true }));

  it('--labels with column flags: the rows left out on stderr one line each, their count and the split rule in the summary; a bad fold is one error', () => {
    const csv = path.join(fx.labels, 'labels.csv');
    const run = path.join(tmp, 'cli-run');
    const r = cli(['capture', '--labels', csv, '--file-column', 'file', '--labels-column', 'labels', '--model', model, '--run', run, '--layers', '0', '--quiet']);
    expect(r.code, r.stderr.join('\n')).toBe(0);
    expect(r.stdout).toMatch(/^capture: 3 clips, \d+ rows in .* \(5 metadata rows left out\); splits as given: column 'split' of /);
    // --quiet hides the per-row lines; without it each row is one stderr line
    expect(r.stderr).toEqual([]);
    const loud = cli(['capture', '--corpus', fx.labels, '--labels', csv, '--model', model, '--run', run, '--layers', '0', '--force']);
    expect(loud.code).toBe(0);
    expect(loud.stderr.filter((l) => l.startsWith('left out '))).toEqual([
      `left out ${csv}:5: missing.wav not found`,
      `left out ${csv}:6: a.wav is a duplicate of ${csv}:2`,
      `left out ${csv}:7: no labels for d.wav`,
      `left out ${csv}:8: ../outside.wav is outside the corpus folder ${fx.labels}`,
      `left out ${csv}:9: no labels for e.wav`,
    ]);
    const m = JSON.parse(fs.readFileSync(path.join(run, 'capture', 'manifest.json'), 'utf8'));
    expect(m.source.split.method).toBe('given');
    expect(m.source.skippedRows).toHaveLength(5);

    const bad = cli(['capture', '--corpus', fx.esc50, '--test-fold', '9', '--model', model, '--run', path.join(tmp, 'cli-esc'), '--quiet']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toEqual([`error: ${path.join(fx.esc50, 'meta', 'esc50.csv')}: --test-fold 9: no such fold (folds: 1, 2, 3, 4, 5)`]);
  });
});
