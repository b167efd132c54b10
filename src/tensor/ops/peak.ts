// Machine-peak probes (kernels/peak.wgsl): vec4 FMA throughput, vec4 copy bandwidth and the rate of
// storage-buffer loads (floats per second), timed
// with the wall clock around engine.sync(). Used by `ardgpu bench` and bench/matmul-explore.ts to
// put kernel figures next to what the adapter can do in the same run.
import { grid, Params } from '../../gpu/engine.js';
import type { Engine } from '../../gpu/engine.js';

export interface PeakOptions {
  /** Minimum timed wall-clock seconds (after one warm-up run). Default 0.3. */
  minSeconds?: number;
  /**
   * 'wall' (default): rate over elapsed time. 'cpu': rate per CPU-second of this process, only
   * meaningful on a software adapter whose threads run in this process (lavapipe).
   */
  clock?: 'wall' | 'cpu';
}

const CHAINS = 5;
const STEPS = 4; // FMA steps per loop iteration (kernels/peak.wgsl)

/**
 * Run `once` repeatedly (each call records work), syncing after each batch, until at least
 * `minSeconds` of timed work has run; returns seconds per call. One untimed warm-up call first.
 */
export async function timeRepeated(engine: Engine, once: () => void, minSeconds = 0.3): Promise<number> {
  return (await timeRepeatedCpu(engine, once, minSeconds)).wall;
}

/**
 * As timeRepeated, also giving the process CPU seconds per call (user + system, all threads):
 * on a software adapter (lavapipe runs kernels on threads of this process) this measures work
 * done regardless of how many other processes compete for the cores.
 */
export async function timeRepeatedCpu(engine: Engine, once: () => void, minSeconds = 0.3): Promise<{ wall: number; cpu: number }> {
  once();
  await engine.sync();
  let reps = 1;
  let calls = 0;
  let elapsed = 0;
  let cpu = 0;
  while (elapsed < minSeconds) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (let i = 0; i < reps; i++) once();
    await engine.sync();
    const dc = process.cpuUsage(c0);
    cpu += (dc.user + dc.system) / 1e6;
    elapsed += (performance.now() - t0) / 1e3;
    calls += reps;
    // aim the next batch at what is left (at least double, to amortise the sync)
    const per = elapsed / calls;
    reps = Math.max(reps * 2, Math.ceil((minSeconds - elapsed) / Math.max(per, 1e-6)));
    reps = Math.min(reps, 1000);
  }
  return { wall: elapsed / calls, cpu: cpu / calls };
}

/** Seconds per dispatch of one kernels/peak.wgsl probe, by the clock opts.clock names. */
async function timeProbe(
  engine: Engine,
  entry: string,
  defines: Record<string, boolean>,
  params: ArrayBuffer,
  buffers: GPUBuffer[],
  workgroups: ReturnType<typeof grid>,
  opts: PeakOptions,
): Promise<number> {
  const t = await timeRepeatedCpu(engine, () => engine.dispatch({ kernel: { family: 'peak', entry, defines }, params, buffers, workgroups }), opts.minSeconds);
  return opts.clock === 'cpu' ? t.cpu : t.wall;
}

/** vec4 FMA throughput in GFLOP/s (5 independent vec4 chains per invocation, 4 steps per loop iteration). */
export async function measurePeakFma(engine: Engine, opts: PeakOptions = {}): Promise<number> {
  const wgs = 512;
  const n = wgs * 64;
  const iters = 128;
  const out = engine.alloc(n * 16, 'peak fma out');
  try {
    const params = new Params().u32(iters, n).f32(0.999, 0.001).done();
    const s = await timeProbe(engine, 'fma_peak', { FMA: true }, params, [out], grid(wgs), opts);
    return (n * iters * STEPS * CHAINS * 4 * 2) / s / 1e9;
  } finally {
    engine.free(out);
  }
}

/** vec4 copy bandwidth in GB/s, counting bytes read plus bytes written. */
export async function measureCopyBandwidth(engine: Engine, opts: PeakOptions & { bytes?: number } = {}): Promise<number> {
  const bytes = opts.bytes ?? 64 << 20;
  const n = Math.floor(bytes / 16);
  const src = engine.alloc(n * 16, 'peak copy in');
  const dst = engine.alloc(n * 16, 'peak copy out');
  try {
    const params = new Params().u32(0, n).f32(0, 0).done();
    const s = await timeProbe(engine, 'copy', { COPY: true }, params, [src, dst], grid(Math.ceil(n / 64)), opts);
    return (2 * n * 16) / s / 1e9;
  } finally {
    engine.free(src);
    engine.free(dst);
  }
}

/**
 * Storage-buffer loads in G values/s: 16 values per group, read as four vec4 loads ('vec4'), one
 * mat4x4 load ('mat4'), or two vec4<u32> loads of packed halves ('f16x2'), at addresses that differ
 * across lanes. Next to measurePeakFma it gives the
 * price of a loaded float in FMAs, which bounds what a matmul can reach on the adapter.
 */
export async function measureLoadRate(engine: Engine, opts: PeakOptions & { kind?: 'vec4' | 'mat4' | 'f16x2' } = {}): Promise<number> {
  const groups = 1 << 16; // 4 MiB of input
  const wgs = 256;
  const n = wgs * 64;
  const iters = 64;
  const src = engine.alloc(groups * 64, 'peak load in');
  const out = engine.alloc(n * 16, 'peak load out');
  try {
    const params = new Params().u32(iters, groups).f32(0, 0).done();
    const s = await timeProbe(engine, 'load', { LOAD: true, LOAD_MAT4: opts.kind === 'mat4', LOAD_F16X2: opts.kind === 'f16x2' }, params, [src, out], grid(wgs), opts);
    return (n * iters * 16) / s / 1e9;
  } finally {
    engine.free(src);
    engine.free(out);
  }
}
