// Sparse SAE ops with hand-written backward (kernels/sae.wgsl). After the encoder's one dense
// matmul, everything works on the kTot = k (+ kAux) active latents of each row:
//   encodeTopK   z = ReLU(TopK(pre)) (+ AuxK codes among dead latents), pre = (x − b_dec)·W_enc + b_enc
//                backward: dW_enc[:, j] = Σ_{active (b, s) of j} (x − b_dec)[b]·dpre,
//                db_enc[j] likewise, db_dec = −W_enc·db_enc (no gradient w.r.t. x)
//   sparseDecode x̂[b] = Σ_s z[b, s]·W_dec[idx[b, s]] (+ b_dec), over a column range of the codes
//                backward: dz = ⟨dx̂[b], W_dec[idx]⟩, dW_dec[j] = Σ_{(b, s) of j} z·dx̂[b], db_dec = Σ_b dx̂
//   reconLoss    mse + α·AuxK ratio, fused (one pass forward, one backward)
//
// Design (lavapipe, where every load and loop iteration has a high fixed cost per 8-lane batch
// and a load that misses the cache costs ~20× one that hits):
// - Per-latent sums (dW rows, dz by latent) read a CSR latent → entries of each code range (main,
//   AuxK), built per batch by a stable counting sort over row chunks: no atomics, buckets in row
//   order, so every float sum runs in a fixed order and training is bit-reproducible.
// - Those kernels run one dispatch per block of rows (~1 MiB of the row-indexed operand; the device
//   profile's sae.rowBlockBytes, none on a GPU), so the rows they gather stay in cache while all
//   latents go through them (3–4× faster than gathering rows from the whole batch at B = 4096, d = 256).
// - Up to d = 256 a row is one 8-lane vector (each lane owns d/32 vec4 columns), so each entry's
//   bookkeeping runs once per entry and feeds up to 8 vec4 FMAs per lane.
// - The decoder backward computes dW_dec and dz in one pass when 8-lane subgroups exist and
//   d ≤ 256 (the dot product is a subgroupAdd); otherwise dz runs by latent over the CSR.
// - The GPU profile (profile.sae: csrSort 'radix', entryStaging, wgReductions) swaps the serial or
//   low-parallel stages for kernels/sae_gpu.wgsl: the CSR by a stable radix sort over tiles of 256
//   entries (the same rowStart and list; chunkEnd then holds the bucket sizes, one chunk, so there is
//   one row block), rows_grad and dz by latent with each batch of a latent's entries staged in
//   workgroup memory by the workgroup's lanes, dz's dot products and db_dec's as workgroup reductions.
// - AuxK selects among the listed dead latents' pre-activations in place (topkColumns), so its
//   top-k costs in proportion to the number of dead latents, not m; it runs as a radix select
//   (k_aux is a large share of that row, where a heap's sifts diverge across the SIMD lanes).
import { grid, Params } from '../gpu/engine.js';
import type { Engine } from '../gpu/engine.js';
import type { SaeProfile } from '../gpu/profile.js';
import { ArdError } from '../util/errors.js';
import { record } from '../tensor/autograd.js';
import { Tensor, empty, shapeStr } from '../tensor/tensor.js';
import { sub, zeros } from '../tensor/ops/elementwise.js';
import { sum } from '../tensor/ops/reduce.js';
import { contiguous } from '../tensor/ops/layout.js';
import { topk, topkColumns } from '../tensor/ops/index.js';
import { matmul } from '../tensor/ops/matmul.js';

/** latent → entries map of a batch of codes: bucket j is list[rowStart[j] .. rowStart[j+1]). */
export interface Csr {
  rowStart: Tensor; // u32 [m + 1]
  list: Tensor; // u32 [B·kTot], entries (b, s) packed as b·1024 + s, ascending inside each bucket
  /** u32 [m, nC]: end of row chunk c's entries inside bucket j (chunks of rc rows) */
  chunkEnd: Tensor;
  nC: number;
  rc: number;
}

/** Sparse codes of a batch: columns [0, k) are the Top-K latents, [k, k + kAux) the AuxK ones. */
export interface SparseCodes {
  z: Tensor; // f32 [B, kTot], post-ReLU (≥ 0)
  idx: Tensor; // i32 [B, kTot]
  k: number;
  kAux: number;
  m: number;
  /** latent → entries maps per column range ("lo:hi"), built on first use (by the backward). */
  csr: Map<string, Csr>;
}

function csrOf(codes: SparseCodes, range: [number, number]): Csr {
  const key = `${range[0]}:${range[1]}`;
  let c = codes.csr.get(key);
  if (!c) codes.csr.set(key, (c = buildCsr(codes.idx, codes.m, range)));
  return c;
}

interface P {
  B?: number;
  d?: number;
  m?: number;
  kTot?: number;
  lo?: number;
  hi?: number;
  nC?: number;
  rc?: number;
  k1?: number;
  k2?: number;
  step?: number;
  flag?: number;
  c0?: number;
  c1?: number;
}
function params(p: P): ArrayBuffer {
  return new Params()
    .u32(p.B ?? 0, p.d ?? 0, p.m ?? 0, p.kTot ?? 0, p.lo ?? 0, p.hi ?? 0, p.nC ?? 0, p.rc ?? 0)
    .u32(p.k1 ?? 0, p.k2 ?? 0, p.step ?? 0, 0, p.flag ?? 0, p.c0 ?? 0, p.c1 ?? 0)
    .done();
}

function pow2ceil(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
/** Lanes per workgroup for n entries: 8 up to the profile's sae.entryLanes. */
function lanes(engine: Engine, n: number): number {
  return Math.min(engine.profile.sae.entryLanes, Math.max(8, pow2ceil(n)));
}
/**
 * A row of d4 vec4s over lanes: WG lanes with Q vec4 each, gridX workgroups per row, Q ≤ qMax and
 * WG ≤ wgMax. The CPU profile (8, 64): rows up to d = 256 take one 8-lane SIMD vector with
 * Q = d4/8 (no lane loads a clamped column twice), so each entry's bookkeeping (its id and
 * coefficient loads, the loop) runs once per entry, not once per vector (at d = 256, Q = 4 over 16
 * lanes was ~10 % slower); wider rows add lanes at Q = 8. The GPU profile (1, 256): a vec4 per lane.
 */
function colTiling(d4: number, qMax: number, wgMax: number): { WG: number; Q: number; gridX: number } {
  const Q = Math.min(qMax, Math.ceil(d4 / 8));
  const WG = Math.min(wgMax, Math.max(8, pow2ceil(Math.ceil(d4 / Q))));
  return { WG, Q, gridX: Math.ceil(d4 / (WG * Q)) };
}
function profileTiling(engine: Engine, d4: number): { WG: number; Q: number; gridX: number } {
  const p = engine.profile.sae;
  return colTiling(d4, p.colQ, p.colLanes);
}
/** Grid: x = ceil(cols / wg), rows over y (≤ 65535) and z. */
function rowGrid(cols: number, wg: number, rows: number): [number, number, number] {
  const y = Math.min(rows, 65535);
  return [Math.ceil(cols / wg), Math.max(1, y), Math.max(1, Math.ceil(rows / 65535))];
}

function checkF32(t: Tensor, what: string, shape?: readonly number[]): void {
  if (t.dtype !== 'f32') throw new ArdError(`sae ${what}: expected f32, got ${t.dtype}`);
  if (!t.isContiguous) throw new ArdError(`sae ${what}: expected a dense tensor`);
  if (shape && (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
    throw new ArdError(`sae ${what}: shape ${shapeStr(t.shape)}, expected ${shapeStr(shape)}`);
  }
}

function dense(t: Tensor): Tensor {
  if (t.isContiguous) return t;
  throw new ArdError(`sae: expected a dense tensor, got a view ${shapeStr(t.shape)}`);
}

// ---- CSR ------------------------------------------------------------------------------------

/** Build the latent → entries map of columns [lo, hi) of idx [B, kTot] (ids ≥ m are left out). */
export function buildCsr(idx: Tensor, m: number, range?: [number, number]): Csr {
  const engine = idx.engine;
  if (idx.dtype !== 'i32' || idx.rank !== 2) throw new ArdError(`sae buildCsr: expected i32 [B, kTot], got ${idx.dtype} ${shapeStr(idx.shape)}`);
  dense(idx);
  const [B, kTot] = idx.shape as [number, number];
  if (kTot > 1024 || B >= 1 << 22) throw new ArdError(`sae buildCsr: ${B} rows of ${kTot} codes exceed the packed entry format (kTot ≤ 1024, B < 4M)`);
  const [lo, hi] = range ?? [0, kTot];
  if (tuning(engine).csrSort === 'radix') return buildCsrRadix(idx, m, lo, hi);
  const rc = Math.max(1, Math.ceil(B / engine.profile.sae.csrChunks));
  const nC = Math.max(1, Math.ceil(B / rc));
  const p = params({ B, m, kTot, nC, rc, lo, hi });
  const cnt = empty(engine, [m, nC], 'u32');
  const rowStart = empty(engine, [m + 1], 'u32');
  const list = empty(engine, [Math.max(1, B * (hi - lo))], 'u32');
  const k = (name: string) => ({ family: 'sae', entry: name.toLowerCase(), defines: { [name]: true } });
  engine.dispatch({ kernel: k('CSR_COUNT'), params: p, buffers: [idx.buffer, cnt.buffer], workgroups: [Math.ceil(nC / 8)] });
  engine.dispatch({ kernel: k('CSR_SCAN_LATENT'), params: p, buffers: [cnt.buffer, rowStart.buffer], workgroups: [Math.ceil(m / 64)] });
  engine.dispatch({ kernel: k('CSR_SCAN_TOTAL'), params: p, buffers: [rowStart.buffer], workgroups: [1] });
  engine.dispatch({ kernel: k('CSR_PLACE'), params: p, buffers: [idx.buffer, cnt.buffer, rowStart.buffer, list.buffer], workgroups: [Math.ceil(nC / 8)] });
  return { rowStart, list, chunkEnd: cnt, nC, rc };
}

// ---- the GPU profile's CSR (kernels/sae_gpu.wgsl): a stable LSD radix sort of the latent ids ----

interface PG {
  B?: number;
  d?: number;
  m?: number;
  kTot?: number;
  lo?: number;
  hi?: number;
  nC?: number;
  c0?: number;
  c1?: number;
  n?: number;
  nT?: number;
  shift?: number;
}
function paramsGpu(p: PG): ArrayBuffer {
  return new Params()
    .u32(p.B ?? 0, p.d ?? 0, p.m ?? 0, p.kTot ?? 0, p.lo ?? 0, p.hi ?? 0, p.nC ?? 0, p.c0 ?? 0)
    .u32(p.c1 ?? 0, p.n ?? 0, p.nT ?? 0, p.shift ?? 0)
    .done();
}
const gk = (entry: string, defines: Record<string, string | number | boolean> = {}) => ({ family: 'sae_gpu', entry, defines: { [entry.toUpperCase()]: true, ...defines } });

/** In place: a[0, n) (u32) → its exclusive prefix sums. Blocks of 1024, their totals scanned recursively. */
export function scanExclusiveU32(a: Tensor, n: number): void {
  const engine = a.engine;
  if (n <= 0) return;
  const nb = Math.ceil(n / 1024);
  const sums = empty(engine, [nb], 'u32');
  engine.dispatch({ kernel: gk('scan_block'), params: paramsGpu({ n, nT: nb }), buffers: [a.buffer, sums.buffer], workgroups: grid(nb) });
  if (nb > 1) {
    scanExclusiveU32(sums, nb);
    engine.dispatch({ kernel: gk('scan_add'), params: paramsGpu({ n, nT: nb }), buffers: [a.buffer, sums.buffer], workgroups: grid(nb) });
  }
  sums.dispose();
}

/**
 * The CSR of columns [lo, hi) of idx by radix sort: keys min(id, m) in entry order, 8 bits per pass
 * (⌈log2(m + 1) / 8⌉ passes), each a tile histogram, a scan of the digit-major histograms and a stable
 * placement; then the bucket bounds by binary search. Same rowStart and list as the counting sort;
 * chunkEnd is the bucket sizes (one chunk: the kernels see a single row block).
 */
function buildCsrRadix(idx: Tensor, m: number, lo: number, hi: number): Csr {
  const engine = idx.engine;
  const [B, kTot] = idx.shape as [number, number];
  const n = B * (hi - lo);
  const nT = Math.ceil(n / 256);
  const rowStart = empty(engine, [m + 1], 'u32');
  const cnt = empty(engine, [m, 1], 'u32');
  const list = empty(engine, [Math.max(1, n)], 'u32');
  const keys = [empty(engine, [Math.max(1, n)], 'u32'), empty(engine, [Math.max(1, n)], 'u32')];
  const vals = empty(engine, [Math.max(1, n)], 'u32');
  const bits = Math.max(1, Math.ceil(Math.log2(m + 1)));
  const passes = Math.ceil(bits / 8);
  const hist = empty(engine, [Math.max(1, 256 * nT)], 'u32');
  if (n > 0) {
    for (let pass = 0; pass < passes; pass++) {
      const first = pass === 0;
      // values ping-pong so that the last pass writes the list
      const vin = (passes - pass) % 2 === 0 ? list : vals;
      const vout = vin === list ? vals : list;
      const kin = keys[(pass + 1) % 2]!;
      const kout = keys[pass % 2]!;
      const p = paramsGpu({ B, m, kTot, lo, hi, n, nT, shift: 8 * pass });
      engine.dispatch({ kernel: gk('radix_hist', { FIRST: first }), params: p, buffers: [(first ? idx : kin).buffer, hist.buffer], workgroups: grid(nT) });
      scanExclusiveU32(hist, 256 * nT);
      engine.dispatch({
        kernel: gk('radix_scatter', { FIRST: first }),
        params: p,
        buffers: first ? [idx.buffer, hist.buffer, kout.buffer, vout.buffer] : [kin.buffer, vin.buffer, hist.buffer, kout.buffer, vout.buffer],
        workgroups: grid(nT),
      });
    }
  }
  const sorted = keys[(passes - 1) % 2]!;
  engine.dispatch({ kernel: gk('csr_bounds'), params: paramsGpu({ m, n }), buffers: [sorted.buffer, rowStart.buffer, cnt.buffer], workgroups: grid(Math.ceil((m + 1) / 256)) });
  for (const t of [...keys, vals, hist]) t.dispose();
  return { rowStart, list, chunkEnd: cnt, nC: 1, rc: Math.max(1, B) };
}

/**
 * Overrides of the device profile's SAE choices, for tests and benchmarks (unset: the profile's).
 * rowBlockBytes: bytes of V per rows_grad block (cache-sized), null for one block.
 */
export const saeTuning: Partial<Pick<SaeProfile, 'rowBlockBytes' | 'dzByLatent' | 'fusedDecoderGrad' | 'csrSort' | 'entryStaging' | 'wgReductions' | 'wgSubgroups'>> = {};

function tuning(engine: Engine): SaeProfile {
  const t = saeTuning;
  const p = engine.profile.sae;
  return {
    ...p,
    rowBlockBytes: t.rowBlockBytes !== undefined ? t.rowBlockBytes : p.rowBlockBytes,
    dzByLatent: t.dzByLatent ?? p.dzByLatent,
    fusedDecoderGrad: t.fusedDecoderGrad ?? p.fusedDecoderGrad,
    csrSort: t.csrSort ?? p.csrSort,
    entryStaging: t.entryStaging ?? p.entryStaging,
    wgReductions: t.wgReductions ?? p.wgReductions,
    // never on an adapter without subgroups, whatever the override
    wgSubgroups: (t.wgSubgroups ?? p.wgSubgroups) && engine.profile.subgroups && engine.profile.subgroupMinSize >= 4,
  };
}

/** Lanes of the staged kernels (rows_grad, dz): one vec4 column each, 64 to the profile's colLanes. */
function stagedLanes(engine: Engine, d4: number): number {
  return Math.max(64, Math.min(engine.profile.sae.colLanes, pow2ceil(d4)));
}

/**
 * The fused decoder backward (rows_grad + dz in one pass) runs one 8-lane subgroup per latent row,
 * so it needs subgroups of at least 8 lanes and d ≤ 256 (8 lanes × 8 vec4); null when unavailable.
 * The kernel fixes this tiling (the whole row in one subgroup), whatever the profile.
 */
function fusedTiling(d4: number): { WG: number; Q: number; gridX: number } | null {
  return d4 > 64 ? null : colTiling(d4, 8, 8); // one 8-lane vector per row there
}

/**
 * CSR chunks per row block: as many rows as fit rowBlockBytes, but few enough blocks that the
 * per-block costs (every latent's workgroup, and rows_grad's read-modify-write of the whole [m, d]
 * output) stay below the gathering they save: blocks ≤ entries / (2m).
 */
function chunksPerBlock(engine: Engine, csr: Csr, d: number, entries: number, m: number): number {
  const blockBytes = tuning(engine).rowBlockBytes;
  if (blockBytes === null) return csr.nC; // one block
  const byCache = Math.max(1, Math.floor(blockBytes / (d * 4) / csr.rc));
  const maxBlocks = Math.max(1, Math.floor(entries / (2 * m)));
  return Math.max(byCache, Math.ceil(csr.nC / maxBlocks));
}

/**
 * OUT[j] (+)= Σ_{e ∈ bucket j of range} c(e)·V[b(e)], c = z (decoder) or g·[z > 0] (encoder);
 * OUT [m, d] (the caller transposes for W_enc). bias: also Σ c(e) per latent into ob.
 * With `into`, adds to those tensors instead of allocating new ones. Runs one dispatch per block of
 * rows: gathering rows of V at random from all of it would wait on memory for every entry.
 */
export function rowsGrad(
  codes: SparseCodes,
  g: Tensor | null,
  V: Tensor,
  range: [number, number],
  opts: { bias: boolean; into?: { out: Tensor; ob: Tensor | null }; dz?: { W: Tensor; out: Tensor } },
): { out: Tensor; ob: Tensor | null } {
  const engine = V.engine;
  const m = codes.m;
  const [B, kTot] = codes.z.shape as [number, number];
  const d = V.shape[1]!;
  const { WG, Q, gridX } = opts.dz ? fusedTiling(d / 4)! : profileTiling(engine, d / 4);
  const out = opts.into?.out ?? empty(engine, [m, d]);
  const ob = opts.into ? opts.into.ob : opts.bias ? empty(engine, [m]) : null;
  const enc = g !== null;
  const csr = csrOf(codes, range);
  const per = chunksPerBlock(engine, csr, d, B * (range[1] - range[0]), m);
  const staged = !opts.dz && tuning(engine).entryStaging;
  const sWG = stagedLanes(engine, d / 4);
  for (let c0 = 0; c0 < csr.nC; c0 += per) {
    const accum = Boolean(opts.into) || c0 > 0;
    if (staged) {
      engine.dispatch({
        kernel: gk('rows_grad', { WG: sWG, BUCKET: true, BIAS: opts.bias, ENC: enc, BV: enc ? 6 : 5, ACCUM: accum }),
        params: paramsGpu({ B, d, m, kTot, nC: csr.nC, c0, c1: Math.min(csr.nC, c0 + per) }),
        buffers: [csr.rowStart.buffer, csr.list.buffer, csr.chunkEnd.buffer, codes.z.buffer, ...(g ? [g.buffer] : []), V.buffer, out.buffer, ...(opts.bias ? [ob!.buffer] : [])],
        workgroups: rowGrid(Math.ceil(d / 4 / sWG), 1, m),
      });
      continue;
    }
    engine.dispatch({
      kernel: {
        family: 'sae',
        entry: 'rows_grad',
        defines: { ROWS_GRAD: true, WG, Q, BIAS: opts.bias, ENC: enc, BV: enc ? 6 : 5, ACCUM: accum, DZF: Boolean(opts.dz) },
      },
      params: params({ B, d, m, kTot, lo: range[0], hi: range[1], nC: csr.nC, rc: csr.rc, c0, c1: Math.min(csr.nC, c0 + per) }),
      buffers: [
        csr.rowStart.buffer, csr.list.buffer, csr.chunkEnd.buffer, codes.z.buffer, ...(g ? [g.buffer] : []), V.buffer, out.buffer,
        ...(opts.bias ? [ob!.buffer] : []), ...(opts.dz ? [opts.dz.W.buffer, opts.dz.out.buffer] : []),
      ],
      workgroups: rowGrid(gridX, 1, m),
    });
  }
  return { out, ob };
}

/** [m, d] → [d, m]. */
function transposeMD(t: Tensor): Tensor {
  const [m, d] = t.shape as [number, number];
  const out = empty(t.engine, [d, m]);
  t.engine.dispatch({
    kernel: { family: 'sae', entry: 'transpose', defines: { TRANSPOSE: true } },
    params: params({ d, m }),
    buffers: [t.buffer, out.buffer],
    workgroups: [Math.ceil(m / 8), Math.ceil(d / 8)],
  });
  return out;
}

// ---- decode ---------------------------------------------------------------------------------

/**
 * x̂[b] = Σ_{s ∈ [lo, hi)} z[b, s]·W_dec[idx[b, s]] (+ b_dec). Autograd reaches z, W_dec, b_dec.
 * The gradient w.r.t. z is computed only where z > 0 (0 elsewhere): codes come out of a ReLU, whose
 * backward zeroes those entries anyway, and skipping them saves the AuxK slots that hold nothing.
 */
export function sparseDecode(codes: SparseCodes, W_dec: Tensor, b_dec: Tensor | null, range?: [number, number]): Tensor {
  const engine = W_dec.engine;
  const { z, idx, m } = codes;
  const [B, kTot] = z.shape as [number, number];
  const d = W_dec.shape[1]!;
  checkF32(W_dec, 'W_dec', [m, d]);
  if (b_dec) checkF32(b_dec, 'b_dec', [d]);
  if (d % 4) throw new ArdError(`sae: model width d = ${d} must be a multiple of 4`);
  const [lo, hi] = range ?? [0, kTot];
  const { WG, Q, gridX } = profileTiling(engine, d / 4);
  const out = empty(engine, [B, d]);
  engine.dispatch({
    kernel: { family: 'sae', entry: 'decode', defines: { DECODE: true, WG, Q } },
    params: params({ B, d, m, kTot, lo, hi, flag: b_dec ? 1 : 0 }),
    buffers: [z.buffer, idx.buffer, W_dec.buffer, (b_dec ?? W_dec).buffer, out.buffer],
    workgroups: rowGrid(gridX, 1, B),
  });
  const inputs = b_dec ? [z, W_dec, b_dec] : [z, W_dec];
  return record(out, 'sae_decode', inputs, (g0) => {
    const g = g0.isContiguous ? g0 : contiguous(g0);
    checkF32(g, 'decode gradient', [B, d]);
    let dz: Tensor | null = null;
    let dW: Tensor | null = null;
    const tune = tuning(engine);
    const fused = z.requiresGrad && W_dec.requiresGrad && tune.fusedDecoderGrad && fusedTiling(d / 4) !== null && tune.subgroups8;
    if (fused) {
      dz = zeros(engine, [B, kTot]);
      dW = rowsGrad(codes, null, g, [lo, hi], { bias: false, dz: { W: W_dec, out: dz } }).out;
    } else if (z.requiresGrad) {
      if (tune.dzByLatent) {
        // by latent over the CSR, in row blocks (see DZ_CSR); entries outside [lo, hi) stay 0
        dz = zeros(engine, [B, kTot]);
        const csr = csrOf(codes, [lo, hi]);
        const per = chunksPerBlock(engine, csr, d, B * (hi - lo), m);
        for (let c0 = 0; c0 < csr.nC; c0 += per) {
          if (tune.entryStaging) {
            const WG = stagedLanes(engine, d / 4);
            engine.dispatch({
              kernel: gk('dz_csr', { WG, BUCKET: true, WGR: true, SG: tune.wgSubgroups }),
              params: paramsGpu({ B, d, m, kTot, nC: csr.nC, c0, c1: Math.min(csr.nC, c0 + per) }),
              buffers: [csr.rowStart.buffer, csr.list.buffer, csr.chunkEnd.buffer, z.buffer, W_dec.buffer, g.buffer, dz.buffer],
              workgroups: rowGrid(1, 1, m),
            });
            continue;
          }
          engine.dispatch({
            kernel: { family: 'sae', entry: 'dz_csr', defines: { DZ_CSR: true } },
            params: params({ B, d, m, kTot, nC: csr.nC, rc: csr.rc, c0, c1: Math.min(csr.nC, c0 + per) }),
            buffers: [csr.rowStart.buffer, csr.list.buffer, csr.chunkEnd.buffer, z.buffer, W_dec.buffer, g.buffer, dz.buffer],
            workgroups: rowGrid(1, 1, m),
          });
        }
      } else {
        dz = empty(engine, [B, kTot]);
        const wgs = lanes(engine, kTot);
        engine.dispatch({
          kernel: { family: 'sae', entry: 'decode_dz', defines: { DECODE_DZ: true, WG: wgs } },
          params: params({ B, d, m, kTot, lo, hi }),
          buffers: [z.buffer, idx.buffer, W_dec.buffer, g.buffer, dz.buffer],
          workgroups: rowGrid(kTot, wgs, B),
        });
      }
    }
    if (!fused && W_dec.requiresGrad) dW = rowsGrad(codes, null, g, [lo, hi], { bias: false }).out;
    const db = b_dec && b_dec.requiresGrad ? sum(g, 0) : null;
    return b_dec ? [dz, dW, db] : [dz, dW];
  });
}

// ---- encode ---------------------------------------------------------------------------------

export interface EncodeOptions {
  /** AuxK codes per row (0: none); min(kAux, number of dead latents) are taken. */
  kAux?: number;
  /** i32 [nDead]: the latents that count as dead (AuxK picks only among those). */
  dead?: Tensor | null;
}

/**
 * Top-K codes of x [B, d]: z = ReLU(TopK_k(pre)) with pre = (x − b_dec)·W_enc + b_enc, plus with
 * kAux > 0 the top min(kAux, nDead) pre-activations among the dead latents (only their columns are
 * read, so the AuxK selection costs in proportion to nDead; codes k.. are that set, in no
 * particular order). Autograd: z reaches W_enc, b_enc, b_dec (not x).
 * The only dense work is the matmul.
 */
export function encodeTopK(x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor, k: number, opts: EncodeOptions = {}, build: { csr?: boolean } = {}): SparseCodes {
  const engine = x.engine;
  const [d, m] = W_enc.shape as [number, number];
  checkF32(x, 'x');
  if (x.rank !== 2 || x.shape[1] !== d) throw new ArdError(`sae encode: x ${shapeStr(x.shape)} does not match W_enc ${shapeStr(W_enc.shape)}`);
  checkF32(W_enc, 'W_enc', [d, m]);
  checkF32(b_enc, 'b_enc', [m]);
  checkF32(b_dec, 'b_dec', [d]);
  if (d % 4) throw new ArdError(`sae: model width d = ${d} must be a multiple of 4`);
  const dead = opts.dead ?? null;
  if (dead && (dead.dtype !== 'i32' || dead.rank !== 1)) throw new ArdError(`sae encode: dead latents must be an i32 list, got ${dead.dtype} ${shapeStr(dead.shape)}`);
  const kAux = dead ? Math.min(opts.kAux ?? 0, dead.size) : 0;
  if (!Number.isInteger(k) || k < 1 || k > m) throw new ArdError(`sae encode: k = ${k} must be in [1, m = ${m}]`);
  if (!Number.isInteger(kAux) || kAux < 0) throw new ArdError(`sae encode: kAux = ${opts.kAux} must be a non-negative integer`);
  const B = x.shape[0]!;
  const kTot = k + kAux;

  const { xc, z, idx } = engine.noGradScope(() => {
    const xc = sub(x, b_dec);
    const pre = matmul(xc, W_enc, { bias: b_enc });
    const main = topk(pre, k);
    let aux = main;
    // AuxK: the top kAux pre-activations among the dead latents' columns, read in place (a set:
    // its order does not matter)
    if (kAux > 0) aux = topkColumns(pre, dead!, kAux, { sorted: false });
    pre.dispose();
    const z = empty(engine, [B, kTot]);
    const idx = empty(engine, [B, kTot], 'i32');
    engine.dispatch({
      kernel: { family: 'sae', entry: 'pack', defines: { PACK: true } },
      params: params({ B, kTot, k1: k, k2: kAux }),
      buffers: [main.values.buffer, main.indices.buffer, aux.values.buffer, aux.indices.buffer, (dead ?? main.indices).buffer, z.buffer, idx.buffer],
      workgroups: rowGrid(kTot, 64, B),
    });
    main.values.dispose();
    main.indices.dispose();
    if (aux !== main) {
      aux.values.dispose();
      aux.indices.dispose();
    }
    return { xc, z, idx };
  });
  const wantGrad = engine.gradEnabled && (W_enc.requiresGrad || b_enc.requiresGrad || b_dec.requiresGrad);
  const codes: SparseCodes = { z, idx, k, kAux, m, csr: new Map() };
  if (build.csr ?? wantGrad) {
    // both backward passes need these; building them here keeps the forward's work together
    csrOf(codes, [0, k]);
    if (kAux > 0) csrOf(codes, [k, kTot]);
  }
  if (!wantGrad) xc.dispose();
  record(z, 'sae_encode', [W_enc, b_enc, b_dec], (g0) => {
    const g = g0.isContiguous ? g0 : contiguous(g0);
    checkF32(g, 'encode gradient', [B, kTot]);
    const main = rowsGrad(codes, g, xc, [0, k], { bias: true });
    if (kAux > 0) rowsGrad(codes, g, xc, [k, kTot], { bias: true, into: main });
    const db = main.ob;
    const dW = transposeMD(main.out);
    main.out.dispose();
    return [dW, db, matvecNeg(W_enc, db!)];
  });
  return codes;
}

/** −W·v for W [d, m], v [m] (db_dec from db_enc): one lane per output, or one workgroup per output (wgReductions). */
export function matvecNeg(W: Tensor, v: Tensor): Tensor {
  const engine = W.engine;
  const [d, m] = W.shape as [number, number];
  checkF32(W, 'W_enc', [d, m]);
  checkF32(v, 'vector', [m]);
  const out = empty(engine, [d]);
  const tune = tuning(engine);
  if (tune.wgReductions) {
    engine.dispatch({
      kernel: gk('matvec_neg', { WG: 256, WGR: true, SG: tune.wgSubgroups }),
      params: paramsGpu({ d, m }),
      buffers: [W.buffer, v.buffer, out.buffer],
      workgroups: grid(d),
    });
  } else {
    engine.dispatch({
      kernel: { family: 'sae', entry: 'matvec_neg', defines: { MATVEC_NEG: true } },
      params: params({ d, m }),
      buffers: [W.buffer, v.buffer, out.buffer],
      workgroups: [Math.ceil(d / 64)],
    });
  }
  return out;
}

// ---- decoder geometry and dead-latent bookkeeping --------------------------------------------

/** g[j] −= ⟨g[j], w[j]⟩·w[j] in place (w's rows unit norm): no step along a row's own direction. */
export function projectParallel(W_dec: Tensor, g: Tensor): void {
  const [m, d] = W_dec.shape as [number, number];
  checkF32(g, 'W_dec gradient', [m, d]);
  const wgr = W_dec.engine.profile.sae.wgReductions;
  W_dec.engine.dispatch({
    kernel: { family: 'sae', entry: wgr ? 'project_wg' : 'project', defines: { PROJECT: true, WGR: wgr } },
    params: params({ d, m }),
    buffers: [W_dec.buffer, g.buffer],
    workgroups: wgr ? grid(m) : [Math.ceil(m / 64)],
  });
}

/** Rows of W scaled to unit norm in place (zero rows stay zero). */
export function normalizeRows(W: Tensor): void {
  const [m, d] = W.shape as [number, number];
  checkF32(W, 'W_dec');
  if (d % 4) throw new ArdError(`sae: model width d = ${d} must be a multiple of 4`);
  const wgr = W.engine.profile.sae.wgReductions;
  W.engine.dispatch({
    kernel: { family: 'sae', entry: wgr ? 'normalize_rows_wg' : 'normalize_rows', defines: { NORMALIZE: true, WGR: wgr } },
    params: params({ d, m }),
    buffers: [W.buffer],
    workgroups: wgr ? grid(m) : [Math.ceil(m / 64)],
  });
}

/** last[j] = step for every latent that fired (z > 0 among the first k codes) in this batch. */
export function markFired(codes: SparseCodes, last: Tensor, step: number): void {
  const [B, kTot] = codes.z.shape as [number, number];
  codes.z.engine.dispatch({
    kernel: { family: 'sae', entry: 'fired', defines: { FIRED: true } },
    params: params({ B, m: codes.m, kTot, k1: codes.k, step }),
    buffers: [codes.z.buffer, codes.idx.buffer, last.buffer],
    workgroups: rowGrid(codes.k, 64, B),
  });
}

// ---- the loss ---------------------------------------------------------------------------------

const f32bits = (v: number) => new Uint32Array(new Float32Array([v]).buffer)[0]!;

/**
 * loss = mean (x − x̂)² + α·‖e − ê‖²/‖e‖² with e = x − x̂ held constant (the AuxK target), as one
 * fused op: per-row partial sums, one ordered total, and a one-pass backward. Autograd reaches x̂
 * and ê. stats (no gradient): [mse, aux ratio, Σ(x − x̂)², 0].
 */
export function reconLoss(x: Tensor, xhat: Tensor, ehat: Tensor | null, alpha: number): { loss: Tensor; stats: Tensor } {
  const engine = x.engine;
  const [B, d] = x.shape as [number, number];
  checkF32(x, 'x', [B, d]);
  checkF32(xhat, 'x̂', [B, d]);
  if (ehat) checkF32(ehat, 'ê', [B, d]);
  if (d % 4) throw new ArdError(`sae: model width d = ${d} must be a multiple of 4`);
  const p = params({ B, d, k1: f32bits(alpha), flag: ehat ? 1 : 0 });
  const rows = empty(engine, [B, 2]);
  const loss = empty(engine, []);
  const stats = empty(engine, [4]);
  const wgr = engine.profile.sae.wgReductions;
  engine.dispatch({
    kernel: { family: 'sae', entry: wgr ? 'loss_rows_wg' : 'loss_rows', defines: { LOSS_ROWS: true, WGR: wgr } },
    params: p,
    buffers: [x.buffer, xhat.buffer, (ehat ?? xhat).buffer, rows.buffer],
    workgroups: grid(wgr ? B : Math.ceil(B / 64)),
  });
  engine.dispatch({
    kernel: { family: 'sae', entry: wgr ? 'loss_final_wg' : 'loss_final', defines: { LOSS_FINAL: true, WGR: wgr } },
    params: p,
    buffers: [rows.buffer, loss.buffer, stats.buffer],
    workgroups: [1],
  });
  rows.dispose();
  const inputs = ehat ? [xhat, ehat] : [xhat];
  record(loss, 'sae_loss', inputs, (g) => {
    const dxh = empty(engine, [B, d]);
    const deh = ehat ? empty(engine, [B, d]) : null;
    engine.dispatch({
      kernel: { family: 'sae', entry: 'loss_bwd', defines: { LOSS_BWD: true, AUX: Boolean(ehat) } },
      params: p,
      buffers: [x.buffer, xhat.buffer, (ehat ?? xhat).buffer, dense(g).buffer, stats.buffer, dxh.buffer, ...(deh ? [deh.buffer] : [])],
      workgroups: grid(Math.ceil((B * d) / 4 / 64)),
    });
    return ehat ? [dxh, deh] : [dxh];
  });
  return { loss, stats };
}

// ---- BatchTopK (kernels/batchtopk.wgsl) ---------------------------------------------------------

/**
 * BatchTopK's batch threshold: the t-th largest of the codes' first kc columns over the whole batch
 * (z [B, kTot] post-ReLU, from encodeTopK with k = kc), as an f32 [1] tensor on the GPU.
 */
export function batchThreshold(z: Tensor, kc: number, t: number): Tensor {
  checkF32(z, 'codes');
  if (z.rank !== 2) throw new ArdError(`batchtopk: codes must be [B, kTot], got ${shapeStr(z.shape)}`);
  const [B, kTot] = z.shape as [number, number];
  if (!Number.isInteger(kc) || kc < 1 || kc > kTot) throw new ArdError(`batchtopk: kc = ${kc} must be in [1, ${kTot}]`);
  if (!Number.isInteger(t) || t < 1 || t > B * kc) throw new ArdError(`batchtopk: t = ${t} must be in [1, B·kc = ${B * kc}]`);
  const theta = empty(z.engine, [1]);
  z.engine.dispatch({
    kernel: { family: 'batchtopk', entry: 'select_', defines: { SELECT: true } },
    params: new Params().u32(B, kTot, kc, t).done(),
    buffers: [z.buffer, theta.buffer],
    workgroups: [1],
  });
  return theta;
}

/**
 * In place: codes in the first kc columns below theta (f32 [1]) become 0, so the sparse decoder,
 * both backward passes (which follow z > 0) and the dead-latent bookkeeping ignore them.
 */
export function thresholdCodes(z: Tensor, kc: number, theta: Tensor): void {
  checkF32(z, 'codes');
  checkF32(theta, 'threshold', [1]);
  const [B, kTot] = z.shape as [number, number];
  if (!Number.isInteger(kc) || kc < 1 || kc > kTot) throw new ArdError(`batchtopk: kc = ${kc} must be in [1, ${kTot}]`);
  const n = B * kTot;
  const wgs = Math.ceil(n / 256);
  z.engine.dispatch({
    kernel: { family: 'batchtopk', entry: 'mask', defines: { MASK: true } },
    params: new Params().u32(B, kTot, kc, 0).done(),
    buffers: [theta.buffer, z.buffer],
    workgroups: [Math.min(wgs, 65535), Math.ceil(wgs / 65535)],
  });
}
