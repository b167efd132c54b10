// ESC-50 (github.com/karolpiczak/ESC-50): meta/esc50.csv with columns filename, fold, target,
// category, esc10, src_file, take; the clips in audio/. One label per clip (category); five folds.
import * as path from 'node:path';
import { fieldText, oneLabel, readTable, requireColumns } from './table.js';
import type { RowsRead } from './records.js';

export const ESC50_META = path.join('meta', 'esc50.csv');

export function readEsc50(dir: string): RowsRead {
  const file = path.join(dir, ESC50_META);
  const t = readTable(file);
  requireColumns(t, ['filename', 'fold', 'category']);
  const base = path.resolve(dir, 'audio');
  const rows = t.rows.map((r) => ({
    where: `${file}:${r.line}`,
    file: fieldText(r.fields.filename),
    base,
    labels: oneLabel(r.fields.category),
    fold: fieldText(r.fields.fold),
  }));
  return { rows, problems: t.problems };
}
