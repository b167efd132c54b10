// Metadata tables (CSV, TSV, JSONL) as rows of named fields, each with its line number, so that every
// problem can be reported as FILE:LINE. Shared by the label-file reader and the dataset layouts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArdError } from '../../util/errors.js';

export type TableFormat = 'csv' | 'tsv' | 'jsonl';

export interface TableRow {
  /** 1-based line where the row starts. */
  line: number;
  /** Field values by column name (CSV/TSV: strings; JSONL: the parsed values). */
  fields: Record<string, unknown>;
}

export interface Table {
  file: string;
  format: TableFormat;
  /** Column names in file order (JSONL: every key seen, in first-seen order). */
  columns: string[];
  rows: TableRow[];
  /** Lines that could not be read as a row (JSONL: bad JSON), one line each: FILE:LINE: problem. */
  problems: string[];
}

export function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  } catch (e: any) {
    throw new ArdError(`${file}: cannot read (${e.code ?? e.message})`);
  }
}

/** The format by extension (.csv, .tsv/.tab, .jsonl/.ndjson), else by content. */
export function tableFormat(file: string, text: string): TableFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.tsv' || ext === '.tab') return 'tsv';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  const first = text.split('\n').find((l) => l.trim() !== '') ?? '';
  if (first.trimStart().startsWith('{')) return 'jsonl';
  return first.includes('\t') ? 'tsv' : 'csv';
}

/**
 * Splits delimited text into records of cells (RFC 4180 quoting: a quoted cell may hold the
 * delimiter, newlines and doubled quotes). Blank lines are dropped. Each record keeps its first line.
 */
export function parseDelimited(text: string, delim: string): { line: number; cells: string[] }[] {
  const out: { line: number; cells: string[] }[] = [];
  let cells: string[] = [];
  let cell = '';
  let quoted = false;
  let line = 1;
  let start = 1;
  let any = false; // the record has content (a blank line is not a record)
  const endRecord = () => {
    cells.push(cell);
    if (any) out.push({ line: start, cells });
    cells = [];
    cell = '';
    any = false;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          cell += '"';
          i++;
        } else quoted = false;
      } else {
        if (ch === '\n') line++;
        cell += ch;
      }
      continue;
    }
    if (ch === '"' && cell === '') {
      quoted = true;
      any = true;
    } else if (ch === delim) {
      cells.push(cell);
      cell = '';
      any = true;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      line++;
      start = line;
    } else {
      cell += ch;
      if (ch.trim() !== '') any = true;
    }
  }
  endRecord();
  return out;
}

/** Reads a CSV/TSV file with a header line, or a JSONL file of objects. */
export function readTable(file: string, opts: { header?: boolean } = {}): Table {
  const text = readText(file);
  const format = tableFormat(file, text);
  if (format === 'jsonl') return readJsonl(file, text);
  const records = parseDelimited(text, format === 'tsv' ? '\t' : ',');
  if (opts.header === false) {
    return { file, format, columns: [], rows: records.map((r) => ({ line: r.line, fields: Object.fromEntries(r.cells.map((c, i) => [String(i), c.trim()])) })), problems: [] };
  }
  const head = records.shift();
  if (!head) throw new ArdError(`${file}: empty (expected a header line)`);
  const columns = head.cells.map((c) => c.trim());
  const rows = records.map((r) => ({ line: r.line, fields: Object.fromEntries(columns.map((c, i) => [c, (r.cells[i] ?? '').trim()])) }));
  return { file, format, columns, rows, problems: [] };
}

function readJsonl(file: string, text: string): Table {
  const columns = new Set<string>();
  const rows: TableRow[] = [];
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e: any) {
      problems.push(`${file}:${i + 1}: invalid JSON (${e.message})`);
      return;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      problems.push(`${file}:${i + 1}: not a JSON object`);
      return;
    }
    for (const k of Object.keys(v)) columns.add(k);
    rows.push({ line: i + 1, fields: v as Record<string, unknown> });
  });
  return { file, format: 'jsonl', columns: [...columns], rows, problems };
}

/**
 * The column to read a field from: `named` (a flag) must exist; otherwise the first of `defaults`
 * present (case-insensitive), or undefined.
 */
export function pickColumn(t: Table, what: string, named: string | undefined, defaults: readonly string[]): string | undefined {
  const find = (name: string) => t.columns.find((c) => c === name) ?? t.columns.find((c) => c.toLowerCase() === name.toLowerCase());
  if (named !== undefined) {
    const c = find(named);
    if (!c) throw new ArdError(`${t.file}: no column '${named}' for the ${what} (columns: ${t.columns.join(', ') || 'none'})`);
    return c;
  }
  for (const d of defaults) {
    const c = find(d);
    if (c) return c;
  }
  return undefined;
}

/** A field as text ('' when absent); arrays are joined with ','. */
export function fieldText(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (Array.isArray(v)) return v.map((x) => String(x)).join(',');
  return String(v).trim();
}

/** Labels from a field: a JSON array of strings, or text separated by ',' or ';'. Empty parts are dropped. */
export function splitLabels(v: unknown): string[] {
  const parts = Array.isArray(v) ? v.map((x) => String(x)) : fieldText(v).split(/[,;]/);
  return [...new Set(parts.map((s) => s.trim()).filter(Boolean))];
}

/** Throws naming the file when any of `names` is not a column. */
export function requireColumns(t: Table, names: readonly string[]): void {
  const missing = names.filter((n) => !t.columns.includes(n));
  if (missing.length) throw new ArdError(`${t.file}: missing column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (columns: ${t.columns.join(', ') || 'none'})`);
}

/** A single-label field: [value], or [] when empty. */
export function oneLabel(v: unknown): string[] {
  const s = fieldText(v);
  return s ? [s] : [];
}
