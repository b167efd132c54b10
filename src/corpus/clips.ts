// Where clips come from: one record per clip (file, labels, split and what else is known) from a
// corpus folder, whatever its layout. openClipSource picks the reader: a label file named by
// --labels; the synthetic corpus's manifest.jsonl; a dataset's own metadata (ESC-50, FSD50K,
// UrbanSound8K, found by their metadata files); a folder per class; else any folder of WAVs,
// unlabelled, in one split 'all'. Each layout is one module in layouts/ producing metadata rows;
// layouts/records.ts checks them and assigns splits the same way for all.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { listAudio } from '../audio/wav.js';
import { ArdError } from '../util/errors.js';
import { MANIFEST_FILE, readManifest } from './manifest.js';
import { isClassFolders, readClassFolders } from './layouts/class-folders.js';
import { ESC50_META, readEsc50 } from './layouts/esc50.js';
import { FSD50K_GROUND_TRUTH, isFsd50k, readFsd50k } from './layouts/fsd50k.js';
import { readLabelFile, type LabelFileColumns } from './layouts/labels-file.js';
import { clipId, inSplits, RowClipSource, type SplitOptions, type SplitRule } from './layouts/records.js';
import { readUrbanSound8k, URBANSOUND8K_META } from './layouts/urbansound8k.js';

export type { SplitOptions, SplitRule } from './layouts/records.js';
export type { LabelFileColumns } from './layouts/labels-file.js';

export interface ClipRecord {
  /** Unique within the source: the file's path below the corpus folder, without .wav (and clips/). */
  id: string;
  /** Absolute path of the audio file. */
  file: string;
  labels: string[];
  split: string;
  gender?: string | null;
  speech?: boolean;
  caption?: string;
  /** Seconds, where the source records it. */
  duration?: number;
  /** Spoken sentence (speech clips), where known. */
  sentence?: string | null;
  /** The dataset's fold, where it has folds. */
  fold?: string;
  speaker?: string;
  /** false: the clip's sounds are not named in `labels` (manifest `labelled: false`); only speech and gender are known. */
  labelled?: false;
}

export interface ClipSource {
  /** The corpus folder. */
  readonly dir: string;
  /** What describes the clips (the manifest or metadata file, or the folder). */
  readonly origin: string;
  /** Which reader: manifest, wav-folder, labels-file, class-folders, esc50, fsd50k or urbansound8k. */
  readonly layout: string;
  /** Every clip, in the source's order; with `splits`, only those splits' clips. */
  clips(splits?: readonly string[]): ClipRecord[];
  /** Metadata rows left out (missing or duplicate file, no labels, file outside the folder), one line each. */
  problems(): string[];
  /** How the clips' splits were decided. */
  splitRule(): SplitRule;
}

/** How to read a corpus folder: a label file and its columns, and the split rule's choices. */
export interface CorpusOptions extends LabelFileColumns, SplitOptions {
  /** A CSV, TSV or JSONL label file; its audio paths are relative to the corpus folder. */
  labels?: string;
}

/** DIR/manifest.jsonl (as make-corpus writes it): labels, splits, captions, speaker gender. */
export class ManifestClipSource implements ClipSource {
  readonly origin: string;
  readonly layout = 'manifest';
  constructor(readonly dir: string) {
    this.origin = path.join(dir, MANIFEST_FILE);
  }

  clips(splits?: readonly string[]): ClipRecord[] {
    const all = readManifest(this.dir).map((e) => ({
      id: e.file.replace(/^clips\//, '').replace(/\.wav$/i, ''),
      file: path.resolve(this.dir, e.file),
      labels: e.labels,
      split: e.split as string,
      gender: e.gender,
      speech: e.speech,
      caption: e.caption,
      duration: e.duration,
      sentence: e.sentence,
      ...(e.labelled === false ? { labelled: false as const } : {}),
    }));
    return inSplits(all, splits);
  }

  problems(): string[] {
    return [];
  }

  splitRule(): SplitRule {
    return { method: 'given', source: `the split field of ${this.origin}`, description: `as given: the split field of ${this.origin}` };
  }
}

/** Any folder of audio files (WAV, FLAC, Ogg, Opus, MP3; any depth): no labels, one split 'all'. */
export class WavFolderClipSource implements ClipSource {
  readonly layout = 'wav-folder';
  constructor(readonly dir: string) {}

  get origin(): string {
    return this.dir;
  }

  clips(splits?: readonly string[]): ClipRecord[] {
    const all = listAudio(this.dir).map((f) => ({
      id: clipId(this.dir, f),
      file: path.resolve(f),
      labels: [],
      split: 'all',
      gender: null,
    }));
    return inSplits(all, splits);
  }

  problems(): string[] {
    return [];
  }

  splitRule(): SplitRule {
    return { method: 'none', description: "no splits: every clip in 'all'" };
  }
}

const COLUMN_FLAGS: [keyof LabelFileColumns, string][] = [
  ['fileColumn', '--file-column'], ['labelsColumn', '--labels-column'], ['splitColumn', '--split-column'],
  ['foldColumn', '--fold-column'], ['captionColumn', '--caption-column'], ['speakerColumn', '--speaker-column'],
];

/**
 * The clip source of a corpus folder: the label file `opts.labels` when given; else manifest.jsonl;
 * else ESC-50, FSD50K or UrbanSound8K by their metadata files; else a folder per class when DIR's
 * subfolders (and not DIR itself) hold audio; else DIR's WAV files.
 */
export function openClipSource(dir: string, opts: CorpusOptions = {}): ClipSource {
  if (!fs.existsSync(dir)) throw new ArdError(`${dir}: corpus folder not found`);
  if (!fs.statSync(dir).isDirectory()) throw new ArdError(`${dir}: not a folder (the corpus is a folder of audio files)`);
  const split: SplitOptions = { valFold: opts.valFold, testFold: opts.testFold, splitSeed: opts.splitSeed };
  if (opts.labels !== undefined) {
    const labels = opts.labels;
    return new RowClipSource(dir, labels, 'labels-file', () => readLabelFile(dir, labels, opts), split);
  }
  const stray = COLUMN_FLAGS.filter(([k]) => opts[k] !== undefined).map(([, flag]) => flag);
  if (stray.length) throw new ArdError(`${dir}: ${stray.join(', ')} need${stray.length === 1 ? 's' : ''} a label file (--labels FILE)`);
  const at = (rel: string) => path.join(dir, rel);
  const noFolds = () => {
    if (opts.valFold !== undefined || opts.testFold !== undefined) throw new ArdError(`${dir}: --val-fold/--test-fold given, but the corpus has no folds`);
  };
  if (fs.existsSync(at(MANIFEST_FILE))) {
    noFolds();
    return new ManifestClipSource(dir);
  }
  if (fs.existsSync(at(ESC50_META))) return new RowClipSource(dir, at(ESC50_META), 'esc50', () => readEsc50(dir), split);
  if (isFsd50k(dir)) return new RowClipSource(dir, at(FSD50K_GROUND_TRUTH), 'fsd50k', () => readFsd50k(dir), split);
  if (fs.existsSync(at(URBANSOUND8K_META))) return new RowClipSource(dir, at(URBANSOUND8K_META), 'urbansound8k', () => readUrbanSound8k(dir), split);
  if (isClassFolders(dir)) return new RowClipSource(dir, dir, 'class-folders', () => readClassFolders(dir), split);
  noFolds();
  return new WavFolderClipSource(dir);
}
