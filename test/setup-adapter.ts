// Runs before every test file. When ARDGPU_TEST_ADAPTER names an adapter (vitest.config.ts), the
// file's engine must be that adapter: otherwise every test in the file fails, never passes on the
// wrong one.
import { beforeAll } from 'vitest';
import { getEngine, wantedAdapter } from './helpers.js';

if (wantedAdapter()) {
  beforeAll(async () => {
    await getEngine(); // throws when the adapter is not the one asked for
  });
}
