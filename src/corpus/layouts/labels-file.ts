// A label file named by --labels: CSV, TSV or JSONL with one row per clip. Only a file column and a
// labels column are needed (labels separated by ',' or ';' inside the field, or a JSON array);
// split, fold, caption, speaker, gender (female/male) and speech (yes/no) columns are read when present. Columns are found by their usual
// names, or named by flags when the header differs. Audio paths are relative to the corpus folder.
import * as path from 'node:path';
import { ArdError } from '../../util/errors.js';
import { fieldText, pickColumn, readTable, splitLabels } from './table.js';
import type { RowsRead } from './records.js';

export interface LabelFileColumns {
  fileColumn?: string;
  labelsColumn?: string;
  splitColumn?: string;
  foldColumn?: string;
  captionColumn?: string;
  speakerColumn?: string;
  genderColumn?: string;
  speechColumn?: string;
}

export function readLabelFile(dir: string, file: string, o: LabelFileColumns = {}): RowsRead {
  const t = readTable(file);
  const cols = t.columns.join(', ') || 'none';
  const fileCol = pickColumn(t, 'audio file', o.fileColumn, ['file', 'filename', 'fname', 'path']);
  if (!fileCol) throw new ArdError(`${file}: no file column (columns: ${cols}); name it with --file-column`);
  const labelsCol = pickColumn(t, 'labels', o.labelsColumn, ['labels', 'label']);
  if (!labelsCol) throw new ArdError(`${file}: no labels column (columns: ${cols}); name it with --labels-column`);
  const splitCol = pickColumn(t, 'split', o.splitColumn, ['split']);
  const foldCol = pickColumn(t, 'fold', o.foldColumn, ['fold']);
  const captionCol = pickColumn(t, 'caption', o.captionColumn, ['caption']);
  const speakerCol = pickColumn(t, 'speaker', o.speakerColumn, ['speaker']);
  const genderCol = pickColumn(t, 'gender', o.genderColumn, ['gender', 'sex']);
  const speechCol = pickColumn(t, 'speech', o.speechColumn, ['speech']);
  const base = path.resolve(dir);
  const rows = t.rows.map((r) => ({
    where: `${file}:${r.line}`,
    file: fieldText(r.fields[fileCol]),
    base,
    labels: splitLabels(r.fields[labelsCol]),
    split: splitCol ? fieldText(r.fields[splitCol]) : undefined,
    fold: foldCol ? fieldText(r.fields[foldCol]) : undefined,
    caption: captionCol ? fieldText(r.fields[captionCol]) : undefined,
    speaker: speakerCol ? fieldText(r.fields[speakerCol]) : undefined,
    gender: genderCol ? fieldText(r.fields[genderCol]) : undefined,
    speech: speechCol ? fieldText(r.fields[speechCol]) : undefined,
  }));
  return { rows, problems: t.problems, splitSource: splitCol ? `column '${splitCol}' of ${file}` : undefined };
}
