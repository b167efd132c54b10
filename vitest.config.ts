import * as fs from 'node:fs';
import * as path from 'node:path';
import { defineConfig } from 'vitest/config';

// ARDGPU_TEST_ADAPTER picks the adapter a run must use; the setup file fails every test file when
// Dawn hands out another one, so a run asked for SwiftShader can never pass on lavapipe.
//   swiftshader: the Vulkan driver Debian's chromium ships, selected through VK_ICD_FILENAMES
//                (ARDGPU_SWIFTSHADER_ICD overrides where its ICD file is looked for). It differs from
//                lavapipe where the code might assume too much: no shader-f16, other subgroup sizes,
//                256 invocations per workgroup, sin/cos no more precise than WGSL promises.
//   anything else: a case-insensitive substring of the adapter description (e.g. llvmpipe).
const wanted = process.env.ARDGPU_TEST_ADAPTER?.trim() || '';
// SwiftShader runs kernels several times slower than lavapipe: a slow test there is not a hang
const timeout = wanted ? 900_000 : 120_000;
// tests with a timeout of their own stretch it to this one (test/helpers.ts: ownTimeout)
const env: Record<string, string> = { ARDGPU_TEST_TIMEOUT_MS: String(timeout) };
if (/^swiftshader$/i.test(wanted)) {
  const icd = process.env.ARDGPU_SWIFTSHADER_ICD || '/usr/lib/chromium/vk_swiftshader_icd.json';
  if (!fs.existsSync(icd)) throw new Error(`ARDGPU_TEST_ADAPTER=swiftshader: no SwiftShader ICD file at ${icd} (install chromium: tools/setup.sh --with-test-tools)`);
  // VK_DRIVER_FILES is the newer loader's name for the same setting
  env.VK_ICD_FILENAMES = icd;
  env.VK_DRIVER_FILES = icd;
}

// The kernel, autograd and SAE test files: what a run with ARDGPU_TEST_ADAPTER set runs (npm run
// test:swiftshader; with ARDGPU_PROFILE=gpu, npm run test:gpu-profile and test:swiftshader:gpu-profile
// run it with the kernel variants and tunings a GPU gets).
// SwiftShader is several times slower than lavapipe; .ci/run times this set.
const ADAPTER_SUITE = [
  'test/elementwise.test.ts',
  'test/matmul.test.ts',
  'test/matmul-gpu.test.ts',
  'test/gpu-profile-ops.test.ts',
  'test/sae-gpu.test.ts',
  'test/reduce-layout.test.ts',
  'test/index-ops.test.ts',
  'test/nn-ops.test.ts',
  'test/optim.test.ts',
  'test/sae.test.ts',
  'test/engine.test.ts',
  'test/logmel.test.ts',
  'test/blocked.test.ts',
  'test/attention-chunks.test.ts',
  'test/attention-flash.test.ts',
  'test/attention-split.test.ts',
];

// These pick their kernels themselves (matmul-gpu forces each matmul variant, gpu-profile-ops and sae-gpu make
// their own engines with the GPU profile), whatever ARDGPU_PROFILE says: the adapter's own-profile run covers them, and a
// second run under ARDGPU_PROFILE=gpu would repeat the same dispatches (on SwiftShader, many minutes).
const PROFILE_INDEPENDENT = new Set(['test/matmul-gpu.test.ts', 'test/gpu-profile-ops.test.ts', 'test/sae-gpu.test.ts']);
const suite = process.env.ARDGPU_PROFILE === 'gpu' ? ADAPTER_SUITE.filter((f) => !PROFILE_INDEPENDENT.has(f)) : ADAPTER_SUITE;

// lavapipe runs every kernel on the CPU: GPU tests are slow and must not fight each other for 2 cores.
export default defineConfig({
  // the README's library example imports 'ardgpu': resolve it to the sources under test
  resolve: { alias: { ardgpu: path.resolve(import.meta.dirname, 'src/index.ts') } },
  test: {
    include: wanted ? suite : ['test/**/*.test.ts'],
    setupFiles: ['test/setup-adapter.ts'],
    env,
    // SwiftShader's reduce kernel takes ~95 ms a call where lavapipe takes ~5: the MLP's 1000
    // training steps would run for over 15 minutes there. Its kernels are each tested in this set.
    // SwiftShader under the GPU profile: the two SAE training loops (1000 steps; AuxK revival) took 598 s and
    // 642 s there (lavapipe: about 4 min together). Every SAE kernel they call is checked in the rest of
    // sae.test.ts on that adapter and profile, and the loops themselves run on SwiftShader's own profile and
    // on lavapipe under the GPU profile.
    testNamePattern: wanted
      ? /^(swiftshader)$/i.test(wanted) && process.env.ARDGPU_PROFILE === 'gpu'
        ? /^(?!.*(2-layer MLP learns a toy classification|trains on synthetic sparse data|AuxK revives dead latents))/
        : /^(?!.*2-layer MLP learns a toy classification)/
      : undefined,
    testTimeout: timeout,
    hookTimeout: timeout,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
  },
});
