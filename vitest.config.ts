import * as path from 'node:path';
import { defineConfig } from 'vitest/config';

// lavapipe runs every kernel on the CPU: GPU tests are slow and must not fight each other for 2 cores.
export default defineConfig({
  // the README's library example imports 'ardgpu': resolve it to the sources under test
  resolve: { alias: { ardgpu: path.resolve(import.meta.dirname, 'src/index.ts') } },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
  },
});
