// node:fs for the browser build: an in-memory file system the page fills with fetched files
// (kernels, model, SAE); only reads are supported.
import { dirname, resolve } from './path-shim.js';

const files = new Map<string, Uint8Array>();
const fds = new Map<number, Uint8Array>();
let nextFd = 3;

export function vfsPut(p: string, data: Uint8Array | string): void {
  files.set(resolve(p), typeof data === 'string' ? new TextEncoder().encode(data) : data);
}

function missing(p: string): Error {
  return Object.assign(new Error(`ENOENT: no such file or directory, '${p}'`), { code: 'ENOENT' });
}
function isDir(p: string): boolean {
  const pre = p === '/' ? '/' : `${p}/`;
  for (const k of files.keys()) if (k.startsWith(pre)) return true;
  return false;
}
function stats(size: number, dir: boolean) {
  return { size, mtimeMs: 0, isFile: () => !dir, isDirectory: () => dir, isSymbolicLink: () => false };
}

export function existsSync(p: string): boolean {
  const r = resolve(String(p));
  return files.has(r) || isDir(r);
}
export function statSync(p: string) {
  const r = resolve(String(p));
  const f = files.get(r);
  if (f) return stats(f.length, false);
  if (isDir(r)) return stats(0, true);
  throw missing(r);
}
export const lstatSync = statSync;
export function realpathSync(p: string): string {
  const r = resolve(String(p));
  if (!existsSync(r)) throw missing(r);
  return r;
}
export function readFileSync(p: string, enc?: unknown): any {
  const r = resolve(String(p));
  const f = files.get(r);
  if (!f) throw missing(r);
  return enc ? new TextDecoder().decode(f) : f;
}
export function readdirSync(p: string): string[] {
  const r = resolve(String(p));
  const pre = r === '/' ? '/' : `${r}/`;
  const names = new Set<string>();
  for (const k of files.keys()) if (k.startsWith(pre)) names.add(k.slice(pre.length).split('/')[0]!);
  return [...names].sort();
}
export function openSync(p: string): number {
  const r = resolve(String(p));
  const f = files.get(r);
  if (!f) throw missing(r);
  fds.set(nextFd, f);
  return nextFd++;
}
export function fstatSync(fd: number) {
  const f = fds.get(fd);
  if (!f) throw new Error(`EBADF: ${fd}`);
  return stats(f.length, false);
}
export function readSync(fd: number, dest: Uint8Array, offset: number, length: number, position: number): number {
  const f = fds.get(fd);
  if (!f) throw new Error(`EBADF: ${fd}`);
  const n = Math.max(0, Math.min(length, f.length - position));
  dest.set(f.subarray(position, position + n), offset);
  return n;
}
export function closeSync(fd: number): void {
  fds.delete(fd);
}
function readOnly(): never {
  throw new Error('the browser build of ardgpu does not write files');
}
export const writeFileSync = readOnly;
export const writeSync = readOnly;
export const mkdirSync = readOnly;
export const renameSync = readOnly;
export const rmSync = readOnly;
export const unlinkSync = readOnly;
export const fsyncSync = readOnly;
export const mkdtempSync = readOnly;
export const copyFileSync = readOnly;
export const symlinkSync = readOnly;
export function createReadStream(): never {
  return readOnly();
}
export const promises = {};
export const constants = {};
export { dirname as _dirname };
export default { vfsPut, existsSync, statSync, lstatSync, realpathSync, readFileSync, readdirSync, openSync, fstatSync, readSync, closeSync, writeFileSync, writeSync, mkdirSync, renameSync, rmSync, unlinkSync, fsyncSync, mkdtempSync, copyFileSync, symlinkSync, createReadStream, promises, constants };
