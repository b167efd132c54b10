// Where clips come from: one record per clip (file, labels, split and what else is known) from a
// corpus folder. A folder with manifest.jsonl gives labels and splits; any other folder of WAVs
// gives its files, unlabelled, in one split 'all'. Another layout (a dataset's own metadata) is a
// further ClipSource implementation and one more case in openClipSource.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { listWavs } from '../audio/wav.js';
import { ArdError } from '../util/errors.js';
import { MANIFEST_FILE, readManifest } from './manifest.js';

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
}

export interface ClipSource {
  /** The corpus folder. */
  readonly dir: string;
  /** What describes the clips (the manifest file, or the folder). */
  readonly origin: string;
  /** Every clip, in the source's order; with `splits`, only those splits' clips. */
  clips(splits?: readonly string[]): ClipRecord[];
}

function inSplits(clips: ClipRecord[], splits?: readonly string[]): ClipRecord[] {
  return splits?.length ? clips.filter((c) => splits.includes(c.split)) : clips;
}

/** DIR/manifest.jsonl (as make-corpus writes it): labels, splits, captions, speaker gender. */
export class ManifestClipSource implements ClipSource {
  readonly origin: string;
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
    }));
    return inSplits(all, splits);
  }
}

/** Any folder of WAV files (any depth): no labels, one split 'all'. */
export class WavFolderClipSource implements ClipSource {
  constructor(readonly dir: string) {}

  get origin(): string {
    return this.dir;
  }

  clips(splits?: readonly string[]): ClipRecord[] {
    const all = listWavs(this.dir).map((f) => ({
      id: path.relative(this.dir, f).replace(/\.wav$/i, ''),
      file: path.resolve(f),
      labels: [],
      split: 'all',
      gender: null,
    }));
    return inSplits(all, splits);
  }
}

/** The clip source of a corpus folder: its manifest.jsonl when there is one, else its WAV files. */
export function openClipSource(dir: string): ClipSource {
  if (!fs.existsSync(dir)) throw new ArdError(`${dir}: corpus folder not found`);
  if (fs.existsSync(path.join(dir, MANIFEST_FILE))) return new ManifestClipSource(dir);
  return new WavFolderClipSource(dir);
}
