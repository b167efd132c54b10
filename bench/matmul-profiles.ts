// fp32 matmul N×N×N on this adapter under each device profile (the CPU profile's 8-lane kernel, the
// GPU profile's workgroup-memory tiled kernel), wall and process-CPU time, next to the FMA peak of the
// same run: shows which kernel a software adapter should get.
//   npx tsx bench/matmul-profiles.ts [--n 1024] [--seconds 2]
import { pathToFileURL } from 'node:url';
import { Engine } from '../src/gpu/engine.js';
import { tensor } from '../src/tensor/index.js';
import { matmul } from '../src/tensor/ops/matmul.js';
import { measurePeakFma, timeRepeatedCpu } from '../src/tensor/ops/peak.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const n = arg('n', 1024);
  const seconds = arg('seconds', 2);
  const engine = await Engine.create();
  const data = (seed: number) => Float32Array.from({ length: n * n }, (_, i) => Math.sin(i * 0.37 + seed));
  const a = tensor(engine, data(1), [n, n]);
  const b = tensor(engine, data(2), [n, n]);
  const peak = await measurePeakFma(engine, { minSeconds: 0.5 });
  const out: Record<string, unknown> = { adapter: engine.adapter.name, n, peakGflops: peak };
  for (const variant of ['lanes', 'tiled'] as const) {
    const t = await timeRepeatedCpu(engine, () => matmul(a, b, { tune: { variant } }).dispose(), seconds);
    const flop = 2 * n ** 3;
    out[variant] = { ms: t.wall * 1e3, gflops: flop / t.wall / 1e9, cpuMs: t.cpu * 1e3, gflopsPerCpuS: flop / t.cpu / 1e9 };
  }
  console.log(JSON.stringify(out));
  engine.destroy();
}
