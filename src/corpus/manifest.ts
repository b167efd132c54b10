// The corpus manifest (DIR/manifest.jsonl): one JSON object per clip, per line.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArdError } from '../util/errors.js';
import { CONCEPTS, SPLITS, type Split } from './plan.js';

export interface ManifestEntry {
  /** Path of the WAV relative to the corpus directory. */
  file: string;
  labels: string[];
  caption: string;
  gender: 'female' | 'male' | null;
  speech: boolean;
  split: Split;
  /** What was applied, e.g. ['noise:pink:10dB', 'offset:0.30s']; empty for a clean clip. */
  augment: string[];
  /** Seconds. */
  duration: number;
  /** espeak-ng voice (speech clips), e.g. 'de+f3'; null otherwise. */
  voice: string | null;
  /** Spoken sentence (speech clips); null otherwise. */
  sentence: string | null;
  /** Synthesis seed, unique within the corpus. */
  seed: number;
  /**
   * false: a recording whose sounds are not named in the corpus's labels (labels empty, caption
   * empty); only `speech`, and `gender` where given, are known. Training asks it only those
   * questions. Absent: labelled.
   */
  labelled?: false;
}

export const MANIFEST_FILE = 'manifest.jsonl';
export const CORPUS_FILE = 'corpus.json';

/** The labels the built-in corpus uses (a manifest from elsewhere may use others). */
export const CONCEPT_LABELS: readonly string[] = CONCEPTS;

const isStrArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');

/** Checks one parsed line; returns a problem description or null. */
export function validateEntry(e: any): string | null {
  if (e === null || typeof e !== 'object' || Array.isArray(e)) return 'not a JSON object';
  if (typeof e.file !== 'string' || e.file === '') return "'file' must be a non-empty string";
  if (path.isAbsolute(e.file) || e.file.split(/[\\/]/).includes('..')) return `'file' must be a relative path inside the corpus (got ${e.file})`;
  if (!isStrArray(e.labels)) return "'labels' must be an array of strings";
  if (typeof e.caption !== 'string') return "'caption' must be a string";
  if (!(e.gender === 'female' || e.gender === 'male' || e.gender === null)) return "'gender' must be 'female', 'male' or null";
  if (typeof e.speech !== 'boolean') return "'speech' must be a boolean";
  if (!SPLITS.includes(e.split)) return `'split' must be one of ${SPLITS.join('/')}`;
  if (!isStrArray(e.augment)) return "'augment' must be an array of strings";
  if (typeof e.duration !== 'number' || !(e.duration > 0)) return "'duration' must be a positive number";
  if (e.voice !== undefined && e.voice !== null && typeof e.voice !== 'string') return "'voice' must be a string or null";
  if (e.sentence !== undefined && e.sentence !== null && typeof e.sentence !== 'string') return "'sentence' must be a string or null";
  if (e.seed !== undefined && !Number.isInteger(e.seed)) return "'seed' must be an integer";
  if (e.labelled !== undefined && e.labelled !== false && e.labelled !== true) return "'labelled' must be true or false";
  if (e.labelled === false && e.labels.length > 0) return "'labels' must be empty where 'labelled' is false";
  return null;
}

/** Reads DIR/manifest.jsonl (or a .jsonl path). Throws ArdError naming the file and line on a bad line. */
export function readManifest(dir: string): ManifestEntry[] {
  const file = dir.endsWith('.jsonl') ? dir : path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e: any) {
    throw new ArdError(`${file}: cannot read (${e.code ?? e.message})`);
  }
  const out: ManifestEntry[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    let e: any;
    try {
      e = JSON.parse(line);
    } catch (err: any) {
      throw new ArdError(`${file}:${i + 1}: invalid JSON (${err.message})`);
    }
    const problem = validateEntry(e);
    if (problem) throw new ArdError(`${file}:${i + 1}: ${problem}`);
    out.push({
      file: e.file, labels: e.labels, caption: e.caption, gender: e.gender, speech: e.speech, split: e.split,
      augment: e.augment, duration: e.duration, voice: e.voice ?? null, sentence: e.sentence ?? null, seed: e.seed ?? 0,
      ...(e.labelled === false ? { labelled: false as const } : {}),
    });
  }
  if (out.length === 0) throw new ArdError(`${file}: no entries`);
  return out;
}
