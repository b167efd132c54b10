// From metadata rows to clip records, the same way for every layout: a row whose audio file is
// missing, duplicated, outside the corpus folder or without labels is reported in one line
// (FILE:LINE: problem) and left out, and the rest goes on; then each clip gets its split by one rule
// (as given, by fold, or a seeded hash of its name), and that rule is reported with the clips.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArdError } from '../../util/errors.js';
import { AUDIO_EXT } from '../../audio/wav.js';
import { hash32 } from '../rng.js';
import type { ClipRecord, ClipSource } from '../clips.js';

/** One metadata row, before its file is checked and its split assigned. */
export interface RawRow {
  /** Where the row is, for reports: "FILE:LINE" (or the audio file, for layouts without a table). */
  where: string;
  /** The audio file as the row names it: relative to `base`, or absolute. */
  file: string;
  base: string;
  labels: string[];
  /** The split as given (undefined when the source has no split column; '' when the cell is empty). */
  split?: string;
  fold?: string;
  caption?: string;
  speaker?: string;
  /** The speaker's gender as given ('female', 'male'; '' unknown). */
  gender?: string;
  /** Whether the clip holds speech, as given (yes/no, true/false, 1/0). */
  speech?: string;
}

/** A label naming speech ('female speech', FSD50K's 'Male_speech_and_man_speaking', 'Speech', …). */
export function isSpeechLabel(l: string): boolean {
  return /speech/i.test(l);
}

/** The gender a speech label names, or null ('Female_speech_and_woman_speaking' → female). */
export function labelGender(l: string): 'female' | 'male' | null {
  if (!isSpeechLabel(l)) return null;
  return /female|woman/i.test(l) ? 'female' : /(^|[^a-z])(male|man)/i.test(l) ? 'male' : null;
}

const YES = new Set(['yes', 'y', 'true', '1']);
const NO = new Set(['no', 'n', 'false', '0']);

export interface RowsRead {
  rows: RawRow[];
  /** Rows the layout itself could not use (bad JSON, a label outside the vocabulary), one line each. */
  problems: string[];
  /** Where given splits come from (e.g. "column 'split' of FILE"); undefined when there are none. */
  splitSource?: string;
}

export interface SplitOptions {
  /** Clips of this fold go to 'val', of testFold to 'test', the rest to 'train'. */
  valFold?: string;
  testFold?: string;
  /** Seed of the file-name hash split (default 0). */
  splitSeed?: number;
}

/** How each clip's split was decided; capture records it in its manifest. */
export interface SplitRule {
  method: 'given' | 'fold' | 'hash' | 'none';
  /** One line for people. */
  description: string;
  /** given: where the splits come from. */
  source?: string;
  /** fold: which folds are val and test (the rest are train); `defaultFolds` when not named by flags. */
  valFold?: string;
  testFold?: string;
  defaultFolds?: boolean;
  /** hash: the seed and the fractions. */
  seed?: number;
  fractions?: { train: number; val: number; test: number };
}

export const HASH_FRACTIONS = { train: 0.7, val: 0.15, test: 0.15 } as const;

/** The clip id of an audio file: its path below the corpus folder without the audio extension. */
export function clipId(root: string, file: string): string {
  return path.relative(root, file).replace(AUDIO_EXT, '');
}

export function inSplits(clips: ClipRecord[], splits?: readonly string[]): ClipRecord[] {
  return splits?.length ? clips.filter((c) => splits.includes(c.split)) : clips;
}

const byFold = (a: string, b: string) => {
  const na = Number(a);
  const nb = Number(b);
  return Number.isFinite(na) && Number.isFinite(nb) ? na - nb : a < b ? -1 : a > b ? 1 : 0;
};

/** The split of every clip (same order) and the rule that gave them. Throws on fold flags that do not fit. */
export function assignSplits(
  origin: string,
  clips: { id: string; split?: string; fold?: string }[],
  o: SplitOptions,
  splitSource?: string,
): { splits: string[]; rule: SplitRule } {
  const folds = [...new Set(clips.map((c) => c.fold).filter((f): f is string => !!f))].sort(byFold);
  const named = o.valFold !== undefined || o.testFold !== undefined;
  if (named) {
    if (!folds.length) throw new ArdError(`${origin}: --val-fold/--test-fold given, but the corpus has no folds`);
    for (const [flag, v] of [['val-fold', o.valFold], ['test-fold', o.testFold]] as const) {
      if (v !== undefined && !folds.includes(v)) throw new ArdError(`${origin}: --${flag} ${v}: no such fold (folds: ${folds.join(', ')})`);
    }
    if (o.valFold !== undefined && o.valFold === o.testFold) throw new ArdError(`${origin}: --val-fold and --test-fold are both ${o.valFold}`);
  }
  const foldRule = (valFold: string | undefined, testFold: string | undefined, defaultFolds: boolean): { splits: string[]; rule: SplitRule } => ({
    splits: clips.map((c) => (c.fold !== undefined && c.fold === testFold ? 'test' : c.fold !== undefined && c.fold === valFold ? 'val' : 'train')),
    rule: {
      method: 'fold', valFold, testFold, defaultFolds,
      description: `by fold: ${valFold !== undefined ? `fold ${valFold} → val, ` : ''}${testFold !== undefined ? `fold ${testFold} → test, ` : ''}the rest → train${defaultFolds ? ' (default: the last folds; choose with --val-fold/--test-fold)' : ''}`,
    },
  });
  if (named) return foldRule(o.valFold, o.testFold, false);
  if (splitSource !== undefined) {
    return { splits: clips.map((c) => c.split!), rule: { method: 'given', source: splitSource, description: `as given: ${splitSource}` } };
  }
  // folds keep clips cut from one recording together; a hash of the names would spread them over the splits
  if (folds.length >= 2) return foldRule(folds.length >= 3 ? folds[folds.length - 2] : undefined, folds[folds.length - 1], true);
  const seed = o.splitSeed ?? 0;
  const splits = clips.map((c) => {
    const u = hash32(seed, c.id.split(path.sep).join('/')) / 4294967296;
    return u < HASH_FRACTIONS.train ? 'train' : u < HASH_FRACTIONS.train + HASH_FRACTIONS.val ? 'val' : 'test';
  });
  return {
    splits,
    rule: { method: 'hash', seed, fractions: { ...HASH_FRACTIONS }, description: `seeded hash of the file name (seed ${seed}): 70 % train, 15 % val, 15 % test` },
  };
}

export interface BuiltClips {
  records: ClipRecord[];
  problems: string[];
  rule: SplitRule;
}

/** Checks every row (the problems named in the header comment), then assigns splits. */
export function buildClips(dir: string, origin: string, read: RowsRead, o: SplitOptions): BuiltClips {
  const root = path.resolve(dir);
  const problems = [...read.problems];
  const accepted = new Map<string, string>(); // absolute file → where its row is
  const kept: (Omit<ClipRecord, 'split'> & { given?: string })[] = [];
  for (const row of read.rows) {
    const bad = (what: string) => problems.push(`${row.where}: ${what}`);
    if (!row.file) {
      bad('no audio file named');
      continue;
    }
    const abs = path.resolve(row.base, row.file);
    const rel = path.relative(root, abs);
    if (rel === '' || rel.split(path.sep)[0] === '..' || path.isAbsolute(rel)) {
      bad(`${row.file} is outside the corpus folder ${root}`);
      continue;
    }
    if (!row.labels.length) {
      bad(`no labels for ${row.file}`);
      continue;
    }
    if (row.split === '') {
      bad(`no split for ${row.file}`);
      continue;
    }
    const first = accepted.get(abs);
    if (first !== undefined) {
      bad(`${row.file} is a duplicate of ${first}`);
      continue;
    }
    let isFile = false;
    try {
      isFile = fs.statSync(abs).isFile();
    } catch {
      /* missing: reported below */
    }
    if (!isFile) {
      bad(`${row.file} not found`);
      continue;
    }
    accepted.set(abs, row.where);
    const rec: Omit<ClipRecord, 'split'> & { given?: string } = { id: clipId(root, abs), file: abs, labels: row.labels };
    if (row.split !== undefined) rec.given = row.split;
    if (row.fold) rec.fold = row.fold;
    if (row.caption) rec.caption = row.caption;
    if (row.speaker) rec.speaker = row.speaker;
    if (row.gender) {
      const g = row.gender.toLowerCase();
      if (g === 'female' || g === 'f') rec.gender = 'female';
      else if (g === 'male' || g === 'm') rec.gender = 'male';
      else {
        bad(`gender '${row.gender}' is not female or male (leave it empty when unknown)`);
        continue;
      }
    }
    if (row.speech) {
      const v = row.speech.toLowerCase();
      if (YES.has(v)) rec.speech = true;
      else if (NO.has(v)) rec.speech = false;
      else {
        bad(`speech '${row.speech}' is not yes or no`);
        continue;
      }
    }
    kept.push(rec);
  }
  // Speech and gender from the labels where not given: a corpus that labels speech anywhere labels it
  // everywhere, so there a clip without a speech label holds none; elsewhere it is left unknown.
  const labelsSpeech = kept.some((k) => k.labels.some(isSpeechLabel));
  for (const k of kept) {
    const sp = k.labels.filter(isSpeechLabel);
    if (k.speech === undefined && labelsSpeech) k.speech = sp.length > 0;
    if (k.gender === undefined && k.speech !== false) {
      const gs = new Set(sp.map(labelGender).filter((g) => g !== null));
      if (gs.size === 1) k.gender = [...gs][0]!;
    }
  }
  const { splits, rule } = assignSplits(origin, kept.map((k) => ({ id: k.id, split: k.given, fold: k.fold })), o, read.splitSource);
  const records = kept.map(({ given: _given, ...k }, i) => ({ ...k, split: splits[i]! }));
  return { records, problems, rule };
}

/** A clip source over metadata rows, read once on first use. */
export class RowClipSource implements ClipSource {
  private built?: BuiltClips;
  constructor(
    readonly dir: string,
    readonly origin: string,
    readonly layout: string,
    private readonly read: () => RowsRead,
    private readonly opts: SplitOptions = {},
  ) {}

  private load(): BuiltClips {
    return (this.built ??= buildClips(this.dir, this.origin, this.read(), this.opts));
  }

  clips(splits?: readonly string[]): ClipRecord[] {
    return inSplits(this.load().records, splits);
  }

  problems(): string[] {
    return this.load().problems;
  }

  splitRule(): SplitRule {
    return this.load().rule;
  }
}
