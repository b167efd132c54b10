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

// ARDGPU_PROFILE forces the device profile (cpu or gpu): the engine must really run with it.
const wantedProfile = process.env.ARDGPU_PROFILE?.trim();
if (wantedProfile) {
  beforeAll(async () => {
    const e = await getEngine();
    if (e.profile.kind !== wantedProfile) throw new Error(`ARDGPU_PROFILE=${wantedProfile} but the engine runs the ${e.profile.kind} profile`);
  });
}
