import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Float16Array } from '@petamoriken/float16';
import { describe, expect, it } from 'vitest';
import { Engine, Params } from '../src/gpu/engine.js';
import { requestAdapter, requestDevice } from '../src/gpu/device.js';
import { preprocess } from '../src/gpu/registry.js';
import * as T from '../src/tensor/index.js';
import { getEngine, itF16, randn } from './helpers.js';

describe('engine', () => {
  it('runs on a real adapter (never Dawn\'s null backend)', async () => {
    const e = await getEngine();
    expect(e.adapter).not.toBeNull();
    expect(e.adapter!.name).not.toMatch(/null/i);
    // and it computes: 2 + 3 on the device
    const t = T.add(T.tensor(e, [2]), T.tensor(e, [3]));
    expect(await t.item()).toBe(5);
  });

  it('enables shader-f16 whenever the adapter offers it, and lavapipe offers it (so f16 tests skip only where f16 is absent)', async () => {
    const e = await getEngine();
    expect(e.f16).toBe(e.adapter!.features.includes('shader-f16'));
    if (/llvmpipe|lavapipe/i.test(e.adapter!.name)) expect(e.f16).toBe(true);
  });

  it('refuses ARDGPU_BACKEND=null with a clear error', async () => {
    await expect(Engine.create({ backend: 'null' })).rejects.toThrow(/null backend computes nothing/);
  });

  it('tidy frees everything but the result; live bytes return to the baseline', async () => {
    const e = await getEngine();
    await e.sync();
    const before = e.memory().liveBytes;
    const kept = T.tidy(() => {
      const a = T.tensor(e, randn(1000, 1));
      const b = T.exp(T.mul(a, a));
      return T.sum(b);
    });
    expect(e.memory().liveBytes).toBeGreaterThan(before);
    kept.dispose();
    expect(e.memory().liveBytes).toBe(before);
    // a view keeps the storage alive until the last holder is disposed
    const base = T.tensor(e, randn(64, 2), [8, 8]);
    const v = T.transpose(base);
    base.dispose();
    expect((await v.read()).length).toBe(64);
    v.dispose();
    expect(e.memory().liveBytes).toBe(before);
    expect(() => base.buffer).toThrow(/used after dispose/);
  });

  it('a training-style loop does not grow live GPU memory', async () => {
    const e = await getEngine();
    const w = T.param(T.tensor(e, randn(256, 3), [16, 16]));
    const x = T.tensor(e, randn(16 * 4, 4), [4, 16]);
    const step = () =>
      T.tidy(() => {
        const y = T.sum(T.square(T.tanh(T.mul(T.reshape(x, [4, 1, 16]), w))));
        T.backward(y);
        const upd = T.sub(w, T.scale(w.grad!, 1e-3));
        T.copyInto(w, upd);
        T.zeroGrad([w]);
      });
    step();
    await e.sync();
    const after1 = e.memory().liveBytes;
    for (let i = 0; i < 200; i++) step();
    await e.sync();
    expect(e.memory().liveBytes).toBe(after1);
  });

  it('buffers evicted from the pool mid-batch are destroyed only after the batch is submitted', async () => {
    const e = await Engine.create();
    try {
      e.pool.maxPooledBytes = 0; // every freed buffer is evicted
      const x = T.tensor(e, randn(1000, 7));
      // a chain in one batch: each intermediate is freed (and evicted) while later commands
      // recorded in the same open batch still read it
      let y = T.exp(x);
      for (let i = 0; i < 20; i++) {
        const next = T.add(y, x);
        y.dispose();
        y = next;
      }
      const ref = Array.from(await x.read(), (v) => Math.exp(v) + 20 * v);
      const got = await y.read();
      for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i]! - ref[i]!)).toBeLessThan(1e-4 * (1 + Math.abs(ref[i]!)));
      await e.sync(); // no "used in submit while destroyed"
      expect(e.memory().pooledBytes).toBe(0);
    } finally {
      e.destroy();
    }
  });

  it('the load probe of kernels/peak.wgsl sums what it reads (vec4, mat4x4 and packed-f16 loads alike)', async () => {
    // the probe behind measureLoadRate: invocation i reads groups (i + 1031t) mod n of 16 floats
    const e = await getEngine();
    const groups = 37;
    const iters = 5;
    const inv = 2 * 64;
    const data = Float32Array.from(randn(groups * 16, 7));
    const halves = Float16Array.from(data);
    // LOAD_F16X2 reads the same groups of 16 values as halves packed two per u32 (same component order)
    const kinds = [
      { defines: { LOAD_MAT4: false }, bytes: data, values: data },
      { defines: { LOAD_MAT4: true }, bytes: data, values: data },
      { defines: { LOAD_F16X2: true }, bytes: new Uint16Array(halves.buffer), values: Float32Array.from(halves) },
    ];
    for (const { defines, bytes, values } of kinds) {
      const expected = new Float32Array(inv * 4);
      for (let i = 0; i < inv; i++) {
        for (let t = 0; t < iters; t++) {
          const j = (i + t * 1031) % groups;
          for (let q = 0; q < 4; q++) for (let c = 0; c < 4; c++) expected[i * 4 + c] += values[j * 16 + q * 4 + c]!;
        }
      }
      const src = e.alloc(bytes.byteLength);
      e.write(src, 0, bytes);
      const out = e.alloc(inv * 16);
      e.dispatch({
        kernel: { family: 'peak', entry: 'load', defines: { LOAD: true, ...defines } },
        params: new Params().u32(iters, groups).f32(0, 0).done(),
        buffers: [src, out],
        workgroups: [2],
      });
      const got = new Float32Array(await e.read(out, 0, inv * 16));
      got.forEach((g, k) => expect(Math.abs(g - expected[k]!)).toBeLessThan(1e-4 * (1 + Math.abs(expected[k]!))));
      e.free(src);
      e.free(out);
    }
  });

  it('errors name the kernel and surface at the next sync point', async () => {
    const e = await getEngine();
    // a WGSL compile error in a specialisation
    e.dispatch({
      kernel: { family: 'fill', defines: { TO: 'not_a_type', INT: false } },
      params: new ArrayBuffer(16),
      buffers: [e.alloc(16)],
      workgroups: [1],
    });
    await expect(e.sync()).rejects.toThrow(/fill\.main/);
    // the engine keeps working afterwards
    expect(await T.add(T.tensor(e, [1]), T.tensor(e, [1])).item()).toBe(2);
    expect(() => preprocess('x ${MISSING}', {}, 'k.main')).toThrow(/k\.main: define \$\{MISSING\} not given/);
  });

  it('timing mode reports per-kernel GPU time with timestamp queries', async () => {
    const e = await Engine.create({ timing: true });
    try {
      expect(e.timing).toBe(e.hasTimestamps);
      const a = T.tensor(e, randn(4096, 5));
      T.exp(a);
      T.sum(a);
      const t = await e.takeTimings();
      if (e.hasTimestamps) {
        const names = t.map((k) => k.kernel);
        expect(names).toContain('elementwise.main');
        expect(names).toContain('reduce.main');
        for (const k of t) expect(k.totalMs).toBeGreaterThanOrEqual(0);
      }
    } finally {
      e.destroy();
    }
  });

  it('embeds in a caller-owned GPUDevice and destroys nothing it did not create', async () => {
    const adapter = await requestAdapter();
    const device = await requestDevice(adapter);
    const mine = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(mine, 0, new Float32Array([1, 2, 3, 4]));
    const e = await Engine.create({ device });
    const t = T.fromBuffer(e, mine, [4]);
    const y = T.scale(t, 2);
    expect(Array.from(await y.read())).toEqual([2, 4, 6, 8]);
    t.dispose(); // not owned: must not be recycled or destroyed
    e.destroy();
    // the device and the caller's buffer still work
    const enc = device.createCommandEncoder();
    const staging = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    enc.copyBufferToBuffer(mine, 0, staging, 0, 16);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    expect(Array.from(new Float32Array(staging.getMappedRange()))).toEqual([1, 2, 3, 4]);
    staging.unmap();
    device.destroy();
  });

  it('uploads and downloads odd-sized integer data exactly', async () => {
    const e = await getEngine();
    const ints = Int32Array.from({ length: 7 }, (_, i) => i * 1000 - 3000);
    expect(Array.from(await T.tensor(e, ints, [7], 'i32').read())).toEqual(Array.from(ints));
    const big = T.slice(T.tensor(e, Float32Array.from({ length: 10 }, (_, i) => i)), 0, 3, 9, 2);
    expect(Array.from(await big.read())).toEqual([3, 5, 7]);
  });

  itF16('uploads and downloads odd-sized f16 data exactly', async (e) => {
    const h = T.tensor(e, [0.5, -2, 1024], [3], 'f16');
    expect(Array.from(await h.read())).toEqual([0.5, -2, 1024]);
  });
});

describe('atomic writes', () => {
  it('writeFileAtomic leaves no temporary file and replaces content whole', async () => {
    const { writeFileAtomic } = await import('../src/util/fs.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-'));
    const f = path.join(dir, 'a.json');
    writeFileAtomic(f, 'one');
    writeFileAtomic(f, 'two');
    expect(fs.readFileSync(f, 'utf8')).toBe('two');
    expect(fs.readdirSync(dir)).toEqual(['a.json']);
  });
});
