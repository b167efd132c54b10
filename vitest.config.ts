import { defineConfig } from 'vitest/config';

// lavapipe runs every kernel on the CPU: GPU tests are slow and must not fight each other for 2 cores.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
  },
});
