// The device profile: built from adapter facts (software → cpu, else gpu), forced by
// ARDGPU_PROFILE or an option, and the values each kind gets; the Dawn flags that carry the
// toggles; ops running under the GPU profile on this adapter; `ardgpu info --json`.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/gpu/engine.js';
import { dawnFlags, requestAdapter, requestDevice } from '../src/gpu/device.js';
import { buildProfile, describeVariants, profileOverride, type DeviceFacts } from '../src/gpu/profile.js';
import * as T from '../src/tensor/index.js';
import { encodeTopK, sparseDecode } from '../src/sae/ops.js';
import { ArdError } from '../src/util/errors.js';
import { expectClose, getEngine, randn } from './helpers.js';

const LIMITS = {
  maxComputeWorkgroupStorageSize: 32768,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxStorageBufferBindingSize: 128 << 20,
  maxBufferSize: 1 << 30,
  maxStorageBuffersPerShaderStage: 16,
};
// adapter info as Dawn reports it for the two adapters this project meets (lavapipe seen here)
const LAVAPIPE: DeviceFacts = {
  info: { vendor: 'mesa', architecture: 'software', description: 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)', subgroupMinSize: 8, subgroupMaxSize: 8, isFallbackAdapter: true },
  features: ['shader-f16', 'subgroups', 'timestamp-query'],
  limits: LIMITS,
};
const NVIDIA: DeviceFacts = {
  info: { vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA H100 80GB HBM3', subgroupMinSize: 32, subgroupMaxSize: 32, isFallbackAdapter: false },
  features: ['shader-f16', 'subgroups', 'timestamp-query'],
  limits: { ...LIMITS, maxComputeWorkgroupStorageSize: 49152 },
};
const NO_ENV = {};

describe('device profile from adapter facts', () => {
  it('a software adapter gets the cpu profile: exactly the values the kernels were tuned with on lavapipe', () => {
    const p = buildProfile(LAVAPIPE, { env: NO_ENV });
    expect(p.kind).toBe('cpu');
    expect(p.detected).toBe('cpu');
    expect(p.source).toBe('adapter');
    expect([p.subgroupMinSize, p.subgroupMaxSize, p.f16, p.timestamps]).toEqual([8, 8, true, true]);
    expect(p.matmul).toEqual({ tm: 16, wgs: 1, subgroupPath: true, variant: 'lanes', gemvMaxM: 0, tile128MinM: 1024 });
    expect(p.topk).toEqual({ variant: 'lanes', lanes: 256, workgroup: 64, filterMax: 128, radixSlots: 256, storageBytes: 32768 });
    expect(p.sae).toEqual({ rowBlockBytes: 1 << 20, csrChunks: 128, colQ: 8, colLanes: 64, entryLanes: 64, dzByLatent: true, fusedDecoderGrad: true, subgroups8: true, wgReductions: false, wgSubgroups: true, csrSort: 'chunks', entryStaging: false });
    // attention scores: one 128 MiB binding less the pool's 1/8 rounding is 113.8 MiB, capped at 64 MiB
    // attention keeps the composed matmul + softmax chunked over queries (the flash kernel's tile is set but unused)
    expect(p.nn).toEqual({
      rowLanes: 64,
      rowElemsPerLane: 8,
      normGradWorkgroups: 64,
      normGradMinRows: 32,
      attentionScoreBytes: 64 << 20,
      attention: 'chunked',
      flashRows: 16,
      flashKeys: 32,
      flashSplitGroups: 0,
      flashSplitMinKeys: 64,
      flashSplitMax: 64,
      flashSplitLanes: 8,
    });
  });

  it('SwiftShader and a CPU-typed adapter count as software too', () => {
    const swift = { ...LAVAPIPE, info: { vendor: 'google', architecture: '', description: 'SwiftShader Device (Subzero)' } };
    expect(buildProfile(swift, { env: NO_ENV }).kind).toBe('cpu');
    expect(buildProfile({ ...NVIDIA, info: { description: 'x', type: 'cpu' } }, { env: NO_ENV }).kind).toBe('cpu');
  });

  it('a hardware adapter gets the gpu profile; 32-lane subgroups never take the 8-lane paths', () => {
    const p = buildProfile(NVIDIA, { env: NO_ENV });
    expect(p.kind).toBe('gpu');
    expect(p.vendor).toBe('nvidia');
    expect(p.matmul).toEqual({ tm: 16, wgs: 8, subgroupPath: false, variant: 'tiled', gemvMaxM: 4, tile128MinM: 1024 });
    expect(p.topk.variant).toBe('row');
    expect(p.sae.wgReductions).toBe(true);
    expect(p.topk.workgroup).toBe(256);
    expect(p.topk.lanes).toBeGreaterThan(256);
    expect(p.topk.storageBytes).toBe(32768);
    expect(p.sae.rowBlockBytes).toBeNull();
    expect([p.sae.colQ, p.sae.colLanes, p.sae.subgroups8]).toEqual([1, 256, true]);
    expect([p.sae.csrSort, p.sae.entryStaging, p.sae.fusedDecoderGrad, p.sae.wgSubgroups]).toEqual(['radix', true, false, true]);
    expect(describeVariants(p).sae).toMatch(/radix sort.*staged/);
    expect(describeVariants(buildProfile(LAVAPIPE, { env: NO_ENV })).sae).toMatch(/counting sort over 128 row chunks/);
    expect(p.nn.rowElemsPerLane).toBe(1);
    expect([p.nn.attention, p.nn.flashRows, p.nn.flashKeys]).toEqual(['flash', 32, 32]);
    expect([p.nn.flashSplitGroups, p.nn.flashSplitMinKeys, p.nn.flashSplitMax, p.nn.flashSplitLanes]).toEqual([1024, 64, 64, 32]);
    // without the subgroups feature nothing may use subgroups, whatever the sizes say
    const bare = buildProfile({ ...NVIDIA, features: ['shader-f16'] }, { env: NO_ENV });
    expect([bare.subgroups, bare.subgroupMinSize, bare.matmul.subgroupPath, bare.sae.subgroups8, bare.sae.wgSubgroups]).toEqual([false, 0, false, false, false]);
  });

  it('ARDGPU_PROFILE forces the kind (the option wins over it); the hardware facts stay', () => {
    const g = buildProfile(LAVAPIPE, { env: { ARDGPU_PROFILE: 'gpu' } });
    expect([g.kind, g.detected, g.source]).toEqual(['gpu', 'cpu', 'ARDGPU_PROFILE']);
    expect(g.matmul).toEqual({ tm: 16, wgs: 8, subgroupPath: true, variant: 'tiled', gemvMaxM: 4, tile128MinM: 1024 });
    expect(g.sae.rowBlockBytes).toBeNull();
    const c = buildProfile(NVIDIA, { env: { ARDGPU_PROFILE: 'CPU' } });
    expect([c.kind, c.detected, c.matmul.wgs, c.matmul.subgroupPath]).toEqual(['cpu', 'gpu', 1, false]);
    const o = buildProfile(LAVAPIPE, { kind: 'gpu', env: { ARDGPU_PROFILE: 'cpu' } });
    expect([o.kind, o.source]).toEqual(['gpu', 'option']);
    expect(profileOverride({ ARDGPU_PROFILE: '' })).toBeUndefined();
  });

  it('an invalid ARDGPU_PROFILE is a one-line error naming the variable', () => {
    expect(() => buildProfile(LAVAPIPE, { env: { ARDGPU_PROFILE: 'fast' } })).toThrow(ArdError);
    expect(() => profileOverride({ ARDGPU_PROFILE: 'fast' })).toThrow(/^ARDGPU_PROFILE=fast: expected cpu or gpu$/);
  });
});

describe('Dawn flags', () => {
  it('f16 on NVIDIA always; allow_unsafe_apis only on request; timestamp quantisation off while timing', () => {
    expect(dawnFlags({}, {})).toEqual(['enable-dawn-features=vulkan_enable_f16_on_nvidia']);
    expect(dawnFlags({ unsafeApis: true }, {})).toEqual(['enable-dawn-features=vulkan_enable_f16_on_nvidia,allow_unsafe_apis']);
    expect(dawnFlags({}, { ARDGPU_UNSAFE_APIS: '1' })).toContain('enable-dawn-features=vulkan_enable_f16_on_nvidia,allow_unsafe_apis');
    expect(dawnFlags({ unsafeApis: false }, { ARDGPU_UNSAFE_APIS: '1' })).toEqual(['enable-dawn-features=vulkan_enable_f16_on_nvidia']);
    expect(dawnFlags({ timing: true, backend: 'vulkan' }, {})).toEqual([
      'backend=vulkan',
      'enable-dawn-features=vulkan_enable_f16_on_nvidia',
      'disable-dawn-features=timestamp_quantization',
    ]);
    expect(() => dawnFlags({}, { ARDGPU_UNSAFE_APIS: 'maybe' })).toThrow(/^ARDGPU_UNSAFE_APIS=maybe: expected 1 or 0$/);
  });

  it('an engine made with every toggle computes; allow_unsafe_apis reaches Dawn (more features exposed)', async () => {
    const plain = await getEngine();
    const e = await Engine.create({ unsafeApis: true, timing: true });
    try {
      expect(await T.add(T.tensor(e, [2]), T.tensor(e, [3])).item()).toBe(5);
      expect(e.timing).toBe(e.hasTimestamps);
      const t = await e.takeTimings();
      if (e.hasTimestamps) expect(t.map((k) => k.kernel)).toContain('elementwise.main');
      for (const f of plain.adapter.features) expect(e.adapter.features).toContain(f);
      // seen on lavapipe: experimental features appear only with allow_unsafe_apis
      if (/llvmpipe/i.test(plain.adapter.name)) expect(e.adapter.features.length).toBeGreaterThan(plain.adapter.features.length);
    } finally {
      e.destroy();
    }
  });
});

describe('engine.profile on this adapter', () => {
  const engines: Engine[] = [];
  afterAll(() => engines.forEach((e) => e.destroy()));

  it('is detected from the adapter; a caller\'s own device gets the same facts and a summary', async () => {
    const e = await getEngine();
    expect(e.profile.detected).toBe(e.adapter.isSoftware ? 'cpu' : 'gpu');
    const adapter = await requestAdapter();
    const device = await requestDevice(adapter);
    const own = await Engine.create({ device });
    engines.push(own);
    expect(own.adapter.name).toBe(e.adapter.name);
    expect(own.profile.detected).toBe(e.profile.detected);
    expect([own.profile.subgroupMinSize, own.profile.subgroupMaxSize]).toEqual([e.profile.subgroupMinSize, e.profile.subgroupMaxSize]);
    own.destroy();
    device.destroy();
  });

  it('profileKind gpu selects the GPU values here, and matmul, top-k, softmax, layerNorm and the SAE ops agree with the cpu profile', async () => {
    const cpu = await Engine.create({ profileKind: 'cpu' });
    const gpu = await Engine.create({ profileKind: 'gpu' });
    engines.push(cpu, gpu);
    expect(gpu.profile.kind).toBe('gpu');
    expect(gpu.profile.matmul.wgs).toBe(8);
    expect(gpu.profile.sae.rowBlockBytes).toBeNull();
    expect(cpu.profile.matmul.wgs).toBe(1);
    const run = async (e: Engine) => {
      const a = T.tensor(e, randn(70 * 96, 1), [70, 96]);
      const b = T.tensor(e, randn(96 * 300, 2), [96, 300]);
      const y = T.matmul(a, b);
      const top = T.topk(y, 12);
      const sm = T.softmax(y);
      const ln = T.layerNorm(y, T.tensor(e, randn(300, 3)), null);
      // SAE: d = 96, m = 300, k = 8
      const x = T.tensor(e, randn(70 * 96, 4), [70, 96]);
      const bEnc = T.tensor(e, randn(300, 5, 0.1));
      const bDec = T.tensor(e, randn(96, 6, 0.1));
      const wDec = T.tensor(e, randn(300 * 96, 7, 0.1), [300, 96]);
      const codes = encodeTopK(x, b, bEnc, bDec, 8);
      const xhat = sparseDecode(codes, wDec, bDec);
      return Promise.all([y, top.values, top.indices, sm, ln, codes.z, codes.idx, xhat].map((t) => t.read()));
    };
    const [rc, rg] = [await run(cpu), await run(gpu)];
    const names = ['matmul', 'topk values', 'topk indices', 'softmax', 'layerNorm', 'sae z', 'sae idx', 'sae decode'];
    names.forEach((n, i) => {
      if (n.includes('indices') || n.includes('idx')) expect(Array.from(rg[i] as Int32Array), n).toEqual(Array.from(rc[i] as Int32Array));
      else expectClose(rg[i] as Float32Array, rc[i] as Float32Array, 1e-4, 1e-5, n);
    });
  });
});

describe('ardgpu info --json', () => {
  it('includes the profile (kind, subgroup sizes, variant per op family) next to the adapter fields', () => {
    const bin = path.join(import.meta.dirname, '..', 'bin', 'ardgpu.mjs');
    const env = { ...process.env, ARDGPU_FROM_SOURCE: '1', XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
    const r = spawnSync(process.execPath, [bin, 'info', '--json'], { encoding: 'utf8', env: { ...env, ARDGPU_PROFILE: 'gpu' }, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.name).toMatch(/\S/);
    expect(typeof j.f16).toBe('boolean');
    expect(j.profile.kind).toBe('gpu');
    expect(j.profile.source).toBe('ARDGPU_PROFILE');
    expect(j.profile.detected).toBe(j.isSoftware ? 'cpu' : 'gpu');
    expect(typeof j.profile.subgroupMinSize).toBe('number');
    expect(Object.keys(j.profile.variants).sort()).toEqual(['attention', 'attentionDecode', 'matmul', 'nn', 'sae', 'topk']);
    expect(j.profile.variants.attention).toMatch(/^flash: /);
    // a decode step on the GPU profile: split-K (flash-decoding), its knobs in profile.nn
    expect(j.profile.variants.attentionDecode).toMatch(/^split-K \(flash-decoding\)/);
    expect(j.profile.nn.flashSplitGroups).toBeGreaterThan(0);
    expect(j.profile.nn.attention).toBe('flash');
    expect(j.profile.matmul.wgs).toBe(8);
    const bad = spawnSync(process.execPath, [bin, 'info'], { encoding: 'utf8', env: { ...env, ARDGPU_PROFILE: 'fast' }, timeout: 120_000 });
    expect(bad.status).toBe(1);
    expect(bad.stderr.split('\n').filter((l) => l && !/artificially reduced/.test(l))).toEqual(['error: ARDGPU_PROFILE=fast: expected cpu or gpu']);
  });
});
