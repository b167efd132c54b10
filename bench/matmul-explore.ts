// Matmul benchmark: GFLOP/s of kernel variants (tile shape, operand layout) at several sizes next
// to the FMA peak measured in the same process. The machine is shared, so each figure is the best
// of --rounds, and rates are given both per wall-clock second and per CPU-second of this process
// (lavapipe runs kernels on this process's threads, so the latter ignores competing processes).
//   npx tsx bench/matmul-explore.ts [--sizes 256,512,1024,4096x4096x256] [--variants a,b] [--rounds 3] [--secs 0.3]
// (a size is S for S×S×S, or M×N×K written MxNxK)
import { Engine } from '../src/gpu/engine.js';
import { tensor, tidy } from '../src/tensor/index.js';
import { MatmulOptions, matmul } from '../src/tensor/ops/matmul.js';
import { measureCopyBandwidth, measureLoadRate, measurePeakFma, timeRepeatedCpu } from '../src/tensor/ops/peak.js';

interface Variant {
  name: string;
  opts: MatmulOptions;
}
const VARIANTS: Variant[] = [
  { name: 'nn', opts: {} },
  { name: 'nt', opts: { transB: true } },
  { name: 'tn', opts: { transA: true } },
  { name: 'tt', opts: { transA: true, transB: true } },
  { name: 'nn-tm8', opts: { tune: { tm: 8 } } },
  { name: 'nn-wgs2', opts: { tune: { wgs: 2 } } },
  { name: 'nn-wgs4', opts: { tune: { wgs: 4 } } },
  { name: 'nn-wgs8', opts: { tune: { wgs: 8 } } },
  { name: 'nn-nosg', opts: { tune: { noSubgroups: true } } },
  { name: 'nt-bias-gelu', opts: { transB: true, act: 'gelu' } }, // bias added below
];

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : def;
}
const sizes = arg('sizes', '256,512,1024').split(',').map((s) => {
  const [M, N, K] = s.split('x').map(Number);
  return { label: s, M: M!, N: N ?? M!, K: K ?? M! };
});
const wanted = arg('variants', 'nn,nt');
const rounds = Number(arg('rounds', '2'));
const secs = Number(arg('secs', '0.3'));
const variants = wanted === 'all' ? VARIANTS : VARIANTS.filter((v) => wanted.split(',').includes(v.name));

const engine = await Engine.create();
const rand = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.618) * 0.5);

async function peak(): Promise<{ wall: number; cpu: number }> {
  let w = 0, c = 0;
  for (let r = 0; r < rounds; r++) {
    w = Math.max(w, await measurePeakFma(engine, { minSeconds: secs }));
    c = Math.max(c, await measurePeakFma(engine, { minSeconds: secs, clock: 'cpu' }));
  }
  return { wall: w, cpu: c };
}

console.log(`adapter: ${engine.adapter?.name}`);
const p0 = await peak();
console.log(`FMA peak: ${p0.wall.toFixed(1)} GFLOP/s wall, ${p0.cpu.toFixed(1)} GFLOP per CPU-second`);
console.log(`copy bandwidth: ${(await measureCopyBandwidth(engine, { minSeconds: secs })).toFixed(2)} GB/s`);
// what one loaded float costs in FMAs (per CPU-second, so other processes matter less): with at
// most ~64 accumulators per lane, a matmul tile needs ≳ 0.09 loaded floats per FMA, which bounds
// its share of the FMA peak (bench/RESULTS.md, 2026-11-21 19:50)
// f16x2: halves packed two per u32 (unpack2x16float), what an f16-input kernel could gain: 1.13–1.15×
// the values per CPU-second of vec4 f32 loads, 1.4–1.5× per wall second (idle machine; bench/RESULTS.md)
for (const kind of ['vec4', 'mat4', 'f16x2'] as const) {
  let l = 0;
  for (let r = 0; r < rounds; r++) l = Math.max(l, await measureLoadRate(engine, { minSeconds: secs, clock: 'cpu', kind }));
  console.log(`storage loads (${kind}): ${l.toFixed(2)} G values per CPU-second; one loaded value ≈ ${(p0.cpu / 2 / l).toFixed(1)} FMAs`);
}
// Rounds go over every (size, variant) cell in turn, so slow spells of a shared machine hit all
// variants alike; each cell keeps its best round.
const wall = sizes.map(() => variants.map(() => Infinity));
const cpu = sizes.map(() => variants.map(() => Infinity));
for (let r = 0; r < rounds; r++) {
  for (const [si, { M, N, K }] of sizes.entries()) {
    for (const [vi, v] of variants.entries()) {
      // operands stored as the variant reads them (transA: [K, M], transB: [N, K])
      const a = tensor(engine, rand(M * K), v.opts.transA ? [K, M] : [M, K]);
      const b = tensor(engine, rand(K * N), v.opts.transB ? [N, K] : [K, N]);
      const bias = v.opts.act ? tensor(engine, rand(N), [N]) : undefined;
      const t = await timeRepeatedCpu(engine, () => tidy(() => void matmul(a, b, { ...v.opts, bias })), secs);
      a.dispose();
      b.dispose();
      bias?.dispose();
      wall[si]![vi] = Math.min(wall[si]![vi]!, t.wall);
      cpu[si]![vi] = Math.min(cpu[si]![vi]!, t.cpu);
    }
  }
}
console.log(`variant       ${sizes.map((s) => s.label.padStart(13)).join(' ')}   GFLOP/s wall / per CPU-s`);
for (const [vi, v] of variants.entries()) {
  const cells = sizes.map(({ M, N, K }, si) => {
    const f = 2 * M * N * K;
    return `${(f / wall[si]![vi]! / 1e9).toFixed(1)}/${(f / cpu[si]![vi]! / 1e9).toFixed(1)}`;
  });
  console.log(`${v.name.padEnd(13)} ${cells.map((x) => x.padStart(13)).join(' ')}`);
}
const p1 = await peak();
console.log(`FMA peak after: ${p1.wall.toFixed(1)} GFLOP/s wall, ${p1.cpu.toFixed(1)} GFLOP per CPU-second`);
engine.destroy();
