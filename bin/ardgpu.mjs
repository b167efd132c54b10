#!/usr/bin/env node
// ardgpu CLI entry: runs the compiled CLI (dist/, made by `npm run build` / `npm run setup`), or the
// TypeScript sources through tsx when no build exists (a development checkout).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'src', 'cli', 'main.js');
if (existsSync(built) && !process.env.ARDGPU_FROM_SOURCE) {
  await import(pathToFileURL(built).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
}
