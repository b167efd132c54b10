// UrbanSound8K: metadata/UrbanSound8K.csv with columns slice_file_name, fsID, start, end, salience,
// fold, classID, class; the clips in audio/fold<fold>/. One label per clip (class); ten folds, which
// keep the slices of one recording together.
import * as path from 'node:path';
import { fieldText, oneLabel, readTable, requireColumns } from './table.js';
import type { RowsRead } from './records.js';

export const URBANSOUND8K_META = path.join('metadata', 'UrbanSound8K.csv');

export function readUrbanSound8k(dir: string): RowsRead {
  const file = path.join(dir, URBANSOUND8K_META);
  const t = readTable(file);
  requireColumns(t, ['slice_file_name', 'fold', 'class']);
  const base = path.resolve(dir, 'audio');
  const rows = t.rows.map((r) => {
    const name = fieldText(r.fields.slice_file_name);
    const fold = fieldText(r.fields.fold);
    return { where: `${file}:${r.line}`, file: name && path.join(`fold${fold}`, name), base, labels: oneLabel(r.fields.class), fold };
  });
  return { rows, problems: t.problems };
}
