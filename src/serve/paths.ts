// Safe file lookup for `ardgpu serve`: a URL path is mapped to a file only when it names a plain,
// visible file inside one of the given roots after every symlink is resolved. Anything else
// (`..`, absolute paths, percent-encoded separators or dots, NUL, hidden files, symlinks leading
// out, folders) is "not found", so the server answers 404 without saying why.
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The file `rel` (the raw, still percent-encoded URL path below the root, e.g. "clips/a%20b.wav")
 * names inside `root`, or null. Each segment is decoded on its own; a decoded segment that holds a
 * separator, is empty, '.', '..', starts with '.', or holds a NUL or backslash is refused.
 */
export function safeResolve(root: string, rel: string): string | null {
  if (!rel || rel.startsWith('/') || rel.includes('\\')) return null;
  const parts: string[] = [];
  for (const raw of rel.split('/')) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return null;
    }
    if (!seg || seg.startsWith('.') || /[/\\\0]/.test(seg)) return null;
    parts.push(seg);
  }
  let realRoot: string;
  let real: string;
  try {
    realRoot = fs.realpathSync(root);
    real = fs.realpathSync(path.join(realRoot, ...parts));
  } catch {
    return null;
  }
  if (!real.startsWith(realRoot + path.sep)) return null;
  try {
    if (!fs.statSync(real).isFile()) return null;
  } catch {
    return null;
  }
  return real;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.jsonl': 'application/x-ndjson; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.wav': 'audio/wav',
  '.flac': 'audio/flac',
  '.ogg': 'audio/ogg',
  '.opus': 'audio/ogg',
  '.mp3': 'audio/mpeg',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.safetensors': 'application/octet-stream',
};

export function contentType(file: string): string {
  return TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}
