import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArdError } from './errors.js';

// Everything ardgpu writes goes through a temporary file and a rename, so an interrupted run never
// leaves a half-written shard, checkpoint or report behind.
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, data as any);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

export function readJson<T = any>(file: string): T {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e: any) {
    throw new ArdError(`${file}: cannot read (${e.code ?? e.message})`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (e: any) {
    throw new ArdError(`${file}: invalid JSON (${e.message})`);
  }
}


/** Feeds a file's bytes into a hash, streamed in 4 MiB reads; a file that cannot be opened is one ArdError. */
export function hashFileInto(h: { update(b: Uint8Array): unknown }, file: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e: any) {
    throw new ArdError(`${file}: cannot read (${e.code ?? e.message})`);
  }
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
}
