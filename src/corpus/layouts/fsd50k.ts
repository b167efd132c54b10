// FSD50K (zenodo.org/record/4060432): FSD50K.ground_truth/dev.csv (fname, labels, mids, split with
// train/val) and eval.csv (fname, labels, mids), labels comma-separated inside a quoted field; the
// clips in FSD50K.dev_audio/<fname>.wav and FSD50K.eval_audio/<fname>.wav. dev.csv's split column
// gives train and val, eval.csv is the test split. vocabulary.csv (no header: index, label, mid)
// lists the 200 labels; a row with a label outside it is reported and left out.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fieldText, readTable, requireColumns, splitLabels } from './table.js';
import type { RawRow, RowsRead } from './records.js';

export const FSD50K_GROUND_TRUTH = 'FSD50K.ground_truth';
const PARTS = [
  { csv: 'dev.csv', audio: 'FSD50K.dev_audio', split: undefined },
  { csv: 'eval.csv', audio: 'FSD50K.eval_audio', split: 'test' },
] as const;

/** True when DIR holds FSD50K's ground truth (dev.csv or eval.csv). */
export function isFsd50k(dir: string): boolean {
  return PARTS.some((p) => fs.existsSync(path.join(dir, FSD50K_GROUND_TRUTH, p.csv)));
}

export function readFsd50k(dir: string): RowsRead {
  const gt = path.join(dir, FSD50K_GROUND_TRUTH);
  const vocabFile = path.join(gt, 'vocabulary.csv');
  const vocab = fs.existsSync(vocabFile) ? new Set(readTable(vocabFile, { header: false }).rows.map((r) => fieldText(r.fields['1']))) : null;
  const rows: RawRow[] = [];
  const problems: string[] = [];
  for (const part of PARTS) {
    const file = path.join(gt, part.csv);
    if (!fs.existsSync(file)) continue;
    const t = readTable(file);
    requireColumns(t, part.split ? ['fname', 'labels'] : ['fname', 'labels', 'split']);
    const base = path.resolve(dir, part.audio);
    for (const r of t.rows) {
      const where = `${file}:${r.line}`;
      const labels = splitLabels(r.fields.labels);
      const unknown = vocab ? labels.filter((l) => !vocab.has(l)) : [];
      if (unknown.length) {
        problems.push(`${where}: label${unknown.length > 1 ? 's' : ''} ${unknown.map((l) => `'${l}'`).join(', ')} not in ${vocabFile}`);
        continue;
      }
      const fname = fieldText(r.fields.fname);
      rows.push({ where, file: fname && `${fname}.wav`, base, labels, split: part.split ?? fieldText(r.fields.split) });
    }
  }
  return { rows, problems, splitSource: "FSD50K: dev.csv's split column (train, val); eval.csv → test" };
}
