// Loading an SAE whatever its architecture or layout. A file is ardgpu's own safetensors: its
// metadata's `format` (written by every saver) picks the class through SAE_FORMATS. A folder is
// another project's layout, recognised by the files in it through SAE_FOLDER_FORMATS (SAELens:
// cfg.json + sae_weights.safetensors; sparsify: cfg.json + sae.safetensors); a path to such a
// folder's weights file counts as the folder. Another architecture is a class implementing Sae and
// one line in SAE_FORMATS; another layout, one entry in SAE_FOLDER_FORMATS.
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import type { Engine } from '../gpu/engine.js';
import { openSafetensors } from '../io/safetensors.js';
import { ArdError } from '../util/errors.js';
import { hashFileInto } from '../util/fs.js';
import { SAE_FORMAT, SparseAutoencoder } from './model.js';
import { SAE_FOLDER_FORMATS, saeFolderFormat } from './formats/index.js';
import type { Sae } from './types.js';

export { SAE_FOLDER_FORMATS, saeFolderFormat };

export type SaeLoader = (engine: Engine, file: string) => Sae;

/** format metadata value → loader. */
export const SAE_FORMATS: Readonly<Record<string, SaeLoader>> = {
  [SAE_FORMAT]: (engine, file) => SparseAutoencoder.load(engine, file),
};

/** The `format` recorded in an SAE file's metadata (JSON-encoded or plain), or null. */
export function saeFormat(file: string): string | null {
  const f = openSafetensors(file);
  try {
    const raw = f.metadata.format;
    if (raw === undefined) return null;
    try {
      const v = JSON.parse(raw);
      return typeof v === 'string' ? v : raw;
    } catch {
      return raw;
    }
  } finally {
    f.close();
  }
}

/** Loads an SAE: ardgpu's file (by its `format`), or a SAELens or sparsify folder. */
export function loadSae(engine: Engine, file: string): Sae {
  const folder = saeFolderFormat(file);
  if (folder) return SAE_FOLDER_FORMATS[folder.format]!.load(engine, folder.dir);
  const format = saeFormat(file);
  const known = Object.keys(SAE_FORMATS).join(', ');
  if (format === null) throw new ArdError(`${file}: no 'format' in the metadata, so the SAE architecture is unknown (known formats: ${known})`);
  const loader = Object.prototype.hasOwnProperty.call(SAE_FORMATS, format) ? SAE_FORMATS[format] : undefined;
  if (!loader) throw new ArdError(`${file}: unknown SAE format '${format}' (known formats: ${known})`);
  return loader(engine, file);
}

/** The safetensors file holding an SAE's W_dec [m, d]: the file itself, or a SAELens / sparsify folder's weights. */
export function saeWeightsFile(p: string): string {
  const folder = saeFolderFormat(p);
  return folder ? path.join(folder.dir, SAE_FOLDER_FORMATS[folder.format]!.weights) : p;
}

/**
 * Content identity of an SAE given as a file or a folder (SHA-256 over the weights file, and a
 * folder's cfg.json, which changes what the weights compute): the key stages cache results under.
 */
export function saeDigest(p: string): string {
  const folder = saeFolderFormat(p);
  const files = folder ? [path.join(folder.dir, 'cfg.json'), saeWeightsFile(p)] : [p];
  const h = createHash('sha256');
  for (const file of files) {
    h.update(path.basename(file)).update('\n');
    hashFileInto(h, file);
  }
  return h.digest('hex');
}
