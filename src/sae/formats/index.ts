// The folder layouts of other projects that ardgpu reads as its own Top-K SAE, and how a path is
// recognised as one of them (see load.ts, which dispatches on this, and SparseAutoencoder.load).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../../gpu/engine.js';
import { ArdError } from '../../util/errors.js';
import type { SparseAutoencoder } from '../model.js';
import { SAELENS_WEIGHTS, isSaelensFolder, loadSaelens } from './saelens.js';
import { SPARSIFY_WEIGHTS, isSparsifyFolder, loadSparsify } from './sparsify.js';

export interface SaeFolderFormat {
  /** The folder's weights file (a path to it names the folder). */
  weights: string;
  /** Whether `dir` holds this layout. */
  detect(dir: string): boolean;
  load(engine: Engine, dir: string): SparseAutoencoder;
}

/** Folder layouts of other projects, tried in order. */
export const SAE_FOLDER_FORMATS: Readonly<Record<string, SaeFolderFormat>> = {
  saelens: { weights: SAELENS_WEIGHTS, detect: isSaelensFolder, load: loadSaelens },
  sparsify: { weights: SPARSIFY_WEIGHTS, detect: isSparsifyFolder, load: loadSparsify },
};

/**
 * Which folder layout `p` is (a folder, or a folder's weights file) and that folder; null for an
 * ardgpu file. A folder that matches no layout is a one-line error listing the hookpoint folders
 * it holds, if any (a sparsify root holds one per hookpoint).
 */
export function saeFolderFormat(p: string): { format: string; dir: string } | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e: any) {
    throw new ArdError(`${p}: cannot open (${e.code ?? e.message})`);
  }
  const entries = Object.entries(SAE_FOLDER_FORMATS);
  if (!st.isDirectory()) {
    const dir = path.dirname(p);
    for (const [format, f] of entries) if (path.basename(p) === f.weights && f.detect(dir)) return { format, dir };
    return null;
  }
  for (const [format, f] of entries) if (f.detect(p)) return { format, dir: p };
  const inner = fs.readdirSync(p).filter((n) => entries.some(([, f]) => f.detect(path.join(p, n))));
  const known = entries.map(([name, f]) => `${name}: cfg.json + ${f.weights}`).join('; ');
  if (inner.length) throw new ArdError(`${p}: holds one SAE per hookpoint; name one of its folders (${inner.join(', ')})`);
  throw new ArdError(`${p}: not an SAE folder (expected ${known})`);
}
