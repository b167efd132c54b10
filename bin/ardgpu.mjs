#!/usr/bin/env node
// ardgpu CLI entry: runs the compiled CLI (dist/, made by `npm run build` / `npm run setup`), or the
// TypeScript sources through tsx when no build exists (a development checkout).
//
// Dawn prints two notices on stderr from native code whenever it lists adapters (see
// dawn-notices.mjs); they cannot be silenced in-process. So this script first starts itself again
// as a child with stderr piped through a filter that drops them, and passes on the child's exit
// status (or signal). `--debug` skips the filter and shows them.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dawnNoticeFilter } from './dawn-notices.mjs';

const FILTERED = 'ARDGPU_STDERR_FILTERED'; // set for the child: its stderr is already filtered
const PARENT_TTY = 'ARDGPU_STDERR_TTY'; // set for the child: the stderr it writes to is a terminal

process.env.XDG_RUNTIME_DIR ??= '/tmp';

if (process.env[FILTERED] || process.argv.includes('--debug')) {
  if (process.env[FILTERED] && process.env[PARENT_TTY] && !process.stderr.isTTY) {
    // Progress draws a redrawn bar only on a terminal; the pipe to the parent ends in one.
    Object.defineProperty(process.stderr, 'isTTY', { value: true, configurable: true });
  }
  // Processes this one starts filter their own stderr.
  delete process.env[FILTERED];
  delete process.env[PARENT_TTY];
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const built = join(root, 'dist', 'src', 'cli', 'main.js');
  if (existsSync(built) && !process.env.ARDGPU_FROM_SOURCE) {
    await import(pathToFileURL(built).href);
  } else {
    const { register } = await import('tsx/esm/api');
    register();
    await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
  }
} else {
  const env = { ...process.env, [FILTERED]: '1' };
  if (process.stderr.isTTY) env[PARENT_TTY] = '1';
  else delete env[PARENT_TTY];
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: ['inherit', 'inherit', 'pipe'],
    env,
  });
  const filter = dawnNoticeFilter();
  process.stderr.on('error', () => {}); // a closed stderr (`2>&1 | head`) must not kill the parent first
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text) => {
    const out = filter.feed(text);
    if (out) process.stderr.write(out);
  });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const forward = (sig) => child.kill(sig);
  for (const sig of signals) process.on(sig, forward);
  child.on('error', (e) => {
    process.stderr.write(`error: cannot start the ardgpu process (${e.message})\n`);
    process.exit(1);
  });
  child.on('close', (code, signal) => {
    const rest = filter.flush();
    if (rest) process.stderr.write(rest);
    for (const sig of signals) process.off(sig, forward);
    if (signal) process.kill(process.pid, signal);
    else process.exitCode = code ?? 1;
  });
}
