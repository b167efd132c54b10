// Matrix multiplication (kernels/matmul.wgsl): batched like torch.matmul, either operand
// transposed, any strided view read in place (transposed views become column-major reads, other
// layouts a slower scalar path), fused bias + activation epilogue, f32 accumulation for f32 and
// f16 operands (output dtype = a's dtype).
//
// Autograd: dZ = dY ⊙ act'(Z), dA = dZ·op(B)ᵀ, dB = op(A)ᵀ·dZ (summed over broadcast batch dims),
// dBias = Σ dZ, each computed by this same kernel with transpose flags (no explicit transposes).
// With a fused activation, the forward pass also stores the pre-activation Z when a gradient is
// wanted (one extra store per output element; a recompute would cost a whole matmul).
import { type Engine, Params } from '../../gpu/engine.js';
import { ArdError } from '../../util/errors.js';
import { record } from '../autograd.js';
import { DTYPE_BYTES, DType, Tensor, empty, shapeStr } from '../tensor.js';
import type { Weight } from '../blocked.js';
import { broadcastShapes, map, zeros } from './elementwise.js';
import { reshape, transpose } from './layout.js';
import { sum, sumToShape } from './reduce.js';

export type MatmulAct = 'none' | 'gelu' | 'silu' | 'relu';

/** Kernel shape knobs (benchmarks and tests; the defaults come from the engine's device profile). */
export interface MatmulTuning {
  /** Rows per subgroup: 8 or 16. */
  tm?: 8 | 16;
  /** Subgroups (8 lanes, 32 columns each) per workgroup, 1–8. */
  wgs?: number;
  /** Use the path that does not need 8-lane subgroups (what other adapters get). */
  noSubgroups?: boolean;
  /**
   * Which kernel: 'lanes' (kernels/matmul.wgsl, the CPU profile's), 'tiled' (kernels/matmul_tiled.wgsl),
   * 'gemv' (kernels/matmul_gemv.wgsl, M ≤ 4 only). Default: the device profile's choice.
   */
  variant?: 'lanes' | 'tiled' | 'gemv';
  /** Tiled kernel: output tile edge (default: the profile's choice for the size). */
  tile?: 64 | 128;
  /** GEMV kernel: use subgroup reductions when the adapter has them (default true). */
  gemvSubgroups?: boolean;
}

export interface MatmulOptions {
  /** a holds [..., K, M]: use its transpose. */
  transA?: boolean;
  /** b holds [..., N, K] (nn weights stored [out, in]): use its transpose. */
  transB?: boolean;
  /** [N], added to every row before the activation. */
  bias?: Tensor;
  act?: MatmulAct;
  tune?: MatmulTuning;
}

const MAX_BATCH_DIMS = 4;
const MAX_GRID = 65535;
const ACT_DEFINE: Record<MatmulAct, string> = { none: 'ACT_NONE', gelu: 'ACT_GELU', silu: 'ACT_SILU', relu: 'ACT_RELU' };
// dY → dZ for each activation, with the elementwise kernel's helpers (a = Z, b = dY)
const ACT_GRAD: Record<Exclude<MatmulAct, 'none'>, string> = {
  gelu: 'gelu_grad_(a) * b',
  silu: 'silu_grad_(a) * b',
  relu: 'select(0.0, b, a > 0.0)',
};

function isFloat(d: DType): boolean {
  return d === 'f32' || d === 'f16';
}

interface OperandPlan {
  mode: 'ROWV' | 'COLV' | 'SCALAR';
  off: number;
  /** strides of the two matrix dims, in the kernel's units (vec4 units on the vector dim's partner) */
  sOuter: number;
  sInner: number;
  batchStrides: number[];
}

/**
 * How to read a [R, C] matrix whose element (r, c) sits at off + r·sr + c·sc, where the kernel
 * wants "ROWV" = vec4 along C (sc = 1) or "COLV" = vec4 along R (sr = 1).
 */
function planOperand(t: Tensor, off: number, R: number, C: number, sr: number, sc: number, batchStrides: number[]): OperandPlan {
  const r = R === 1 ? 0 : sr;
  const c = C === 1 ? 0 : sc;
  const aligned = (x: number) => x % 4 === 0;
  // the vec4 holding the view's last element must lie inside the buffer (a caller's buffer need
  // not be a multiple of 16 bytes; a vec4 read past its end would be clamped to other data)
  const last = off + t.shape.reduce((acc, d, i) => acc + (d - 1) * t.strides[i]!, 0);
  const inBuffer = (Math.floor(last / 4) + 1) * 4 * DTYPE_BYTES[t.dtype] <= t.buffer.size;
  const vecOk = inBuffer && aligned(off) && batchStrides.every(aligned);
  if (vecOk && (C === 1 || c === 1) && aligned(r)) {
    return { mode: 'ROWV', off: off / 4, sOuter: r / 4, sInner: 1, batchStrides: batchStrides.map((s) => s / 4) };
  }
  if (vecOk && (R === 1 || r === 1) && aligned(c)) {
    return { mode: 'COLV', off: off / 4, sOuter: 1, sInner: c / 4, batchStrides: batchStrides.map((s) => s / 4) };
  }
  return { mode: 'SCALAR', off, sOuter: r, sInner: c, batchStrides };
}

/** Merge batch dims that both operands step through contiguously; drop size-1 dims. */
function collapseBatch(shape: number[], sa: number[], sb: number[]): { shape: number[]; sa: number[]; sb: number[] } {
  const out = { shape: [] as number[], sa: [] as number[], sb: [] as number[] };
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const k = out.shape.length - 1;
    if (k >= 0 && out.sa[k] === sa[d]! * shape[d]! && out.sb[k] === sb[d]! * shape[d]!) {
      out.shape[k]! *= shape[d]!;
      out.sa[k] = sa[d]!;
      out.sb[k] = sb[d]!;
    } else {
      out.shape.push(shape[d]!);
      out.sa.push(sa[d]!);
      out.sb.push(sb[d]!);
    }
  }
  return out;
}

function batchStridesOf(t: Tensor, batch: readonly number[]): number[] {
  const nb = t.rank - 2;
  const lead = batch.length - nb;
  return batch.map((d, i) => {
    if (i < lead) return 0;
    const k = t.shape[i - lead]!;
    return k === 1 && d !== 1 ? 0 : t.strides[i - lead]!;
  });
}

interface RawResult {
  y: Tensor;
  z: Tensor | null;
}

/**
 * Where the forward kernel writes: by default a fresh dense [..., M, N]; `into` writes columns
 * [col, col + N) of an existing dense [..., M, W] tensor instead (one row block of a split weight).
 */
interface OutputSlice {
  y: Tensor;
  col: number;
}

/** The forward kernel, no autograd. a, b of rank ≥ 2. */
function matmulRaw(a: Tensor, b: Tensor, opts: MatmulOptions, savePre: boolean, into?: OutputSlice): RawResult {
  const engine = a.engine;
  a.assertAlive();
  b.assertAlive();
  if (b.engine !== engine) throw new ArdError('matmul: tensors belong to different engines');
  if (!isFloat(a.dtype) || !isFloat(b.dtype)) throw new ArdError(`matmul: float tensors only, got ${a.dtype} and ${b.dtype}`);
  const transA = Boolean(opts.transA);
  const transB = Boolean(opts.transB);
  const [a0, a1] = a.shape.slice(-2) as [number, number];
  const [b0, b1] = b.shape.slice(-2) as [number, number];
  const [M, K] = transA ? [a1, a0] : [a0, a1];
  const [K2, N] = transB ? [b1, b0] : [b0, b1];
  if (K !== K2) {
    throw new ArdError(
      `matmul: inner dimensions differ: a ${shapeStr(a.shape)}${transA ? 'ᵀ' : ''} has K=${K}, b ${shapeStr(b.shape)}${transB ? 'ᵀ' : ''} has K=${K2}`,
    );
  }
  let batch: number[];
  try {
    batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  } catch {
    throw new ArdError(`matmul: batch dimensions of ${shapeStr(a.shape)} and ${shapeStr(b.shape)} do not broadcast`);
  }
  const bias = opts.bias;
  if (bias) {
    bias.assertAlive();
    if (!isFloat(bias.dtype)) throw new ArdError(`matmul: bias must be a float tensor, got ${bias.dtype}`);
    if (bias.rank !== 1 || bias.shape[0] !== N) throw new ArdError(`matmul: bias ${shapeStr(bias.shape)} does not match N=${N}`);
  }
  const act = opts.act ?? 'none';
  if (!(act in ACT_DEFINE)) throw new ArdError(`matmul: unknown activation '${act}'`);
  const outShape = [...batch, M, N];
  let ldc = N;
  let offC = 0;
  if (into) {
    const W = into.y.shape[into.y.rank - 1]!;
    const want = [...batch, M, W];
    if (!into.y.isContiguousIgnoringOffset() || into.y.dtype !== a.dtype || into.y.rank !== want.length || want.some((d, i) => into.y.shape[i] !== d)) {
      throw new ArdError(`matmul: output ${shapeStr(into.y.shape)} ${into.y.dtype} is not a dense ${shapeStr(want)} ${a.dtype}`);
    }
    if (!(Number.isInteger(into.col) && into.col >= 0 && into.col + N <= W)) throw new ArdError(`matmul: columns [${into.col}, ${into.col + N}) outside the output's ${W}`);
    ldc = W;
    offC = into.y.offset + into.col;
  }
  const y = into ? into.y : empty(engine, outShape, a.dtype);
  const z = savePre && act !== 'none' ? empty(engine, outShape, a.dtype) : null;
  if (y.size === 0 || N === 0) return { y, z };
  if (K === 0) {
    if (into) throw new ArdError('matmul: an empty inner dimension cannot write into an output slice');
    // an empty sum: every row is act(bias), or act(0)
    const pre = bias ?? zeros(engine, [N], a.dtype);
    const expr = act === 'none' ? 'a' : act === 'relu' ? 'max(a, 0.0)' : act === 'gelu' ? 'gelu_(a)' : 'silu_(a)';
    map([pre], expr, { name: 'matmul_empty_k', into: y });
    if (z) map([pre], 'a', { name: 'matmul_empty_k', into: z });
    if (pre !== bias) pre.dispose();
    return { y, z };
  }

  const c = collapseBatch(batch, batchStridesOf(a, batch), batchStridesOf(b, batch));
  if (c.shape.length > MAX_BATCH_DIMS) {
    throw new ArdError(`matmul: more than ${MAX_BATCH_DIMS} non-mergeable batch dims in ${shapeStr(a.shape)} × ${shapeStr(b.shape)} (make the operands contiguous)`);
  }
  const [sa0, sa1] = a.strides.slice(-2) as [number, number];
  const [sb0, sb1] = b.strides.slice(-2) as [number, number];
  const tune = opts.tune ?? {};
  const prof = engine.profile.matmul;
  const variant = tune.variant ?? (M <= prof.gemvMaxM ? 'gemv' : prof.variant);
  if (variant !== 'lanes') {
    // element (m, k) of A at a.offset + m·sAm + k·sAk; (k, n) of B at b.offset + k·sBk + n·sBn
    const ea: ElemPlan = { t: a, off: a.offset, s0: M === 1 ? 0 : transA ? sa1 : sa0, s1: K === 1 ? 0 : transA ? sa0 : sa1, bs: c.sa };
    const eb: ElemPlan = { t: b, off: b.offset, s0: K === 1 ? 0 : transB ? sb1 : sb0, s1: N === 1 ? 0 : transB ? sb0 : sb1, bs: c.sb };
    const common = { M, N, K, batch: c.shape, offC, ldc, bias, act, y, z, a, b };
    if (variant === 'gemv') {
      if (M > 4) throw new ArdError(`matmul: the gemv kernel takes M ≤ 4, got M=${M}`);
      dispatchGemv(common, ea, eb, tune.gemvSubgroups ?? true);
    } else {
      dispatchTiled(common, ea, eb, tune.tile ?? (M >= prof.tile128MinM && N >= prof.tile128MinM ? 128 : 64));
    }
    return { y, z };
  }
  // A as [M, K]: element (m, k); B as [K, N]: element (k, n)
  const pa = planOperand(a, a.offset, M, K, transA ? sa1 : sa0, transA ? sa0 : sa1, c.sa);
  const pb = planOperand(b, b.offset, K, N, transB ? sb1 : sb0, transB ? sb0 : sb1, c.sb);

  const noSg = Boolean(tune.noSubgroups) || !prof.subgroupPath;
  const TM = tune.tm ?? (M <= 8 ? 8 : prof.tm);
  const WGS = tune.wgs ?? prof.wgs;
  const cvec = N % 4 === 0 && ldc % 4 === 0 && offC % 4 === 0;
  const defines = {
    TA: a.dtype,
    TB: b.dtype,
    TC: a.dtype,
    TBIAS: bias?.dtype ?? 'f32',
    [`A_${pa.mode}`]: true,
    [`B_${pb.mode}`]: true,
    A_LANEK: pa.mode === 'COLV' && !noSg,
    TM,
    TM16: TM === 16,
    WGS,
    CVEC: cvec,
    BIAS: Boolean(bias),
    [ACT_DEFINE[act]]: true,
    SAVE_PRE: Boolean(z),
    ZB: bias ? 5 : 4,
    NOSG: noSg,
  };
  const buffers = [a.buffer, b.buffer, y.buffer];
  if (bias) buffers.push(bias.buffer);
  if (z) buffers.push(z.buffer);
  const nBatch = c.shape.reduce((x, d) => x * d, 1);
  const bshape = [...c.shape, 1, 1, 1, 1].slice(0, MAX_BATCH_DIMS);
  const colBlocks = Math.ceil(N / (32 * WGS));
  if (colBlocks > MAX_GRID) throw new ArdError(`matmul: N=${N} is too large for one dispatch`);
  const rowBlocks = Math.ceil(M / TM);
  for (let zb = 0; zb < nBatch; zb += MAX_GRID) {
    for (let rb = 0; rb < rowBlocks; rb += MAX_GRID) {
      const params = new Params()
        .u32(M, N, K, c.shape.length)
        .u32(pa.off, pa.sOuter, pa.sInner, pb.off)
        .u32(pb.sOuter, pb.sInner, bias?.offset ?? 0, rb * TM)
        .u32(zb, offC, ldc, 0)
        .u32Array(bshape, 4, 1)
        .u32Array(pa.batchStrides, 4)
        .u32Array(pb.batchStrides, 4)
        .done();
      engine.dispatch({
        kernel: { family: 'matmul', defines },
        params,
        buffers,
        workgroups: [colBlocks, Math.min(MAX_GRID, rowBlocks - rb), Math.min(MAX_GRID, nBatch - zb)],
      });
    }
  }
  return { y, z };
}

/** An operand read element by element: (i, j) at off + i·s0 + j·s1, batch strides bs (elements). */
interface ElemPlan {
  t: Tensor;
  off: number;
  s0: number;
  s1: number;
  bs: number[];
}

interface GpuCall {
  M: number;
  N: number;
  K: number;
  batch: number[];
  offC: number;
  ldc: number;
  bias: Tensor | undefined;
  act: MatmulAct;
  y: Tensor;
  z: Tensor | null;
  a: Tensor;
  b: Tensor;
}

function epilogueDefines(g: GpuCall): Record<string, string | number | boolean> {
  return {
    TA: g.a.dtype,
    TB: g.b.dtype,
    TC: g.a.dtype,
    TBIAS: g.bias?.dtype ?? 'f32',
    BIAS: Boolean(g.bias),
    [ACT_DEFINE[g.act]]: true,
    SAVE_PRE: Boolean(g.z),
    ZB: g.bias ? 5 : 4,
  };
}

function gpuBuffers(g: GpuCall): GPUBuffer[] {
  const buffers = [g.a.buffer, g.b.buffer, g.y.buffer];
  if (g.bias) buffers.push(g.bias.buffer);
  if (g.z) buffers.push(g.z.buffer);
  return buffers;
}

/** The Params block both GPU kernels share with kernels/matmul.wgsl (element units). */
function gpuParams(g: GpuCall, pa: { off: number; s0: number; s1: number; bs: number[] }, pb: typeof pa, mBase: number, zBase: number, gridX: number): ArrayBuffer {
  const bshape = [...g.batch, 1, 1, 1, 1].slice(0, MAX_BATCH_DIMS);
  return new Params()
    .u32(g.M, g.N, g.K, g.batch.length)
    .u32(pa.off, pa.s0, pa.s1, pb.off)
    .u32(pb.s0, pb.s1, g.bias?.offset ?? 0, mBase)
    .u32(zBase, g.offC, g.ldc, gridX)
    .u32Array(bshape, 4, 1)
    .u32Array(pa.bs, 4)
    .u32Array(pb.bs, 4)
    .done();
}

/** Workgroup-memory tiled kernel (kernels/matmul_tiled.wgsl): BM × BM output tiles, 256 invocations. */
function dispatchTiled(g: GpuCall, ea: ElemPlan, eb: ElemPlan, tile: 64 | 128): void {
  const engine = g.a.engine;
  const BM = tile;
  const BK = tile === 128 ? 8 : 16;
  const defines = {
    ...epilogueDefines(g),
    BM,
    BK,
    // consecutive invocations along the contiguous dimension (coalesced loads)
    A_KFAST: ea.s1 === 1 || (g.K === 1 && ea.s0 !== 1),
    B_NFAST: eb.s1 === 1 || (g.N === 1 && eb.s0 !== 1),
    CVEC: g.N % 4 === 0 && g.ldc % 4 === 0 && g.offC % 4 === 0,
  };
  const nBatch = g.batch.reduce((x, d) => x * d, 1);
  const colBlocks = Math.ceil(g.N / BM);
  if (colBlocks > MAX_GRID) throw new ArdError(`matmul: N=${g.N} is too large for one dispatch`);
  const rowBlocks = Math.ceil(g.M / BM);
  for (let zb = 0; zb < nBatch; zb += MAX_GRID) {
    for (let rb = 0; rb < rowBlocks; rb += MAX_GRID) {
      engine.dispatch({
        kernel: { family: 'matmul_tiled', defines },
        params: gpuParams(g, ea, eb, rb * BM, zb, 0),
        buffers: gpuBuffers(g),
        workgroups: [colBlocks, Math.min(MAX_GRID, rowBlocks - rb), Math.min(MAX_GRID, nBatch - zb)],
      });
    }
  }
}

/**
 * Whether an operand's vectors along K can be read as vec4: k stride 1, the other stride, the
 * offset and the batch strides multiples of 4, and the vec4 holding its last element inside the buffer.
 */
function vecAlongK(p: ElemPlan, kStride: number, otherStride: number): boolean {
  const t = p.t;
  const aligned = (x: number) => x % 4 === 0;
  if (kStride !== 1 || !aligned(p.off) || !aligned(otherStride) || !p.bs.every(aligned)) return false;
  const last = p.off + t.shape.reduce((acc, d, i) => acc + (d - 1) * t.strides[i]!, 0);
  return (Math.floor(last / 4) + 1) * 4 * DTYPE_BYTES[t.dtype] <= t.buffer.size;
}

/** Matrix-vector kernel for M ≤ 4 (kernels/matmul_gemv.wgsl). */
function dispatchGemv(g: GpuCall, ea: ElemPlan, eb: ElemPlan, subgroups: boolean): void {
  const engine = g.a.engine;
  const prof = engine.profile;
  // B contiguous along K (nn weights [out, in] with transB): split K across the workgroup
  const kfast = eb.s0 === 1 || g.K === 1;
  const kA = g.K === 1 ? 1 : ea.s1;
  const kB = g.K === 1 ? 1 : eb.s0;
  const aVec = kfast && vecAlongK(ea, kA, ea.s0);
  const bVec = kfast && vecAlongK(eb, kB, eb.s1);
  // vec4 units: A's row stride (s0) and B's column stride (s1); the k stride is implied
  const pa = aVec ? { off: ea.off / 4, s0: ea.s0 / 4, s1: 1, bs: ea.bs.map((s) => s / 4) } : ea;
  const pb = bVec ? { off: eb.off / 4, s0: 1, s1: eb.s1 / 4, bs: eb.bs.map((s) => s / 4) } : eb;
  const defines = {
    ...epilogueDefines(g),
    MR: g.M,
    KFAST: kfast,
    A_VEC: aVec,
    B_VEC: bVec,
    SG: kfast && subgroups && prof.subgroups && prof.subgroupMinSize >= 4,
  };
  const groups = Math.ceil(g.N / (kfast ? 4 : 64));
  const gridX = Math.min(groups, MAX_GRID);
  const gridY = Math.ceil(groups / gridX);
  if (gridY > MAX_GRID) throw new ArdError(`matmul: N=${g.N} is too large for one dispatch`);
  const nBatch = g.batch.reduce((x, d) => x * d, 1);
  for (let zb = 0; zb < nBatch; zb += MAX_GRID) {
    engine.dispatch({
      kernel: { family: 'matmul_gemv', defines },
      params: gpuParams(g, pa, pb, 0, zb, gridX),
      buffers: gpuBuffers(g),
      workgroups: [gridX, gridY, Math.min(MAX_GRID, nBatch - zb)],
    });
  }
}

/**
 * The fewest rows M from which matmulRaw's choice of kernel (gemv or not, tile, rows per thread)
 * stops depending on M. Each row of a product is computed the same way by a given kernel, so a
 * matrix multiplied in row blocks of at least this many rows (or in one block) gives every row
 * what one product over all its rows gives, bit for bit: what callers that take a long clip's rows
 * a part at a time rely on (src/ard/retrieve.ts, FeatureActivationStream).
 */
export function matmulSteadyRows(engine: Engine): number {
  const p = engine.profile.matmul;
  // gemv: M ≤ gemvMaxM; lanes: TM 8 for M ≤ 8; tiled: 128² tiles from tile128MinM
  return Math.max(p.gemvMaxM + 1, 9, p.tile128MinM);
}

/**
 * a [..., M, K] · b [..., K, N] → [..., M, N] (leading dims broadcast; b may be 2-D weights shared
 * across the batch). transA / transB read a as [..., K, M] / b as [..., N, K]. 1-D operands are
 * treated as a row (a) or column (b) vector and that dim is dropped from the result, as in torch.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  if (a.rank === 0 || b.rank === 0) throw new ArdError('matmul: scalars are not matrices');
  if ((a.rank === 1 && opts.transA) || (b.rank === 1 && opts.transB)) throw new ArdError('matmul: transA/transB need 2-D operands');
  if (a.rank === 1 || b.rank === 1) {
    const a2 = a.rank === 1 ? reshape(a, [1, a.shape[0]!]) : a;
    const b2 = b.rank === 1 ? reshape(b, [b.shape[0]!, 1]) : b;
    const y = matmul(a2, b2, opts);
    const shape = y.shape.filter((_, i) => !(a.rank === 1 && i === y.rank - 2) && !(b.rank === 1 && i === y.rank - 1));
    const out = reshape(y, shape);
    // without autograd the intermediates can go now (with it, the graph holds them until the scope ends)
    if (!out.requiresGrad) for (const t of [a2, b2, y]) if (t !== a && t !== b && t !== out) t.dispose();
    return out;
  }
  const engine = a.engine;
  const bias = opts.bias;
  const act = opts.act ?? 'none';
  const wantGrad = engine.gradEnabled && (a.requiresGrad || b.requiresGrad || Boolean(bias?.requiresGrad));
  const { y, z } = matmulRaw(a, b, opts, wantGrad);
  if (!wantGrad) return y;
  const transA = Boolean(opts.transA);
  const transB = Boolean(opts.transB);
  const inputs = bias ? [a, b, bias] : [a, b];
  return record(y, 'matmul', inputs, (g) => {
    const dz = act === 'none' ? g : map([z!, g], ACT_GRAD[act], { name: `matmul_${act}_grad`, out: g.dtype });
    const ga = a.requiresGrad ? gradA(a, b, dz, transA, transB) : null;
    const gb = b.requiresGrad ? gradB(a, b, dz, transA, transB) : null;
    const gbias = bias?.requiresGrad ? sumToBias(dz, bias) : null;
    if (dz !== g) dz.dispose();
    return bias ? [ga, gb, gbias] : [ga, gb];
  });
}

function sumToBias(dz: Tensor, bias: Tensor): Tensor {
  const axes = dz.shape.slice(0, -1).map((_, i) => i);
  const s = sum(dz, axes);
  if (s.dtype === bias.dtype) return s;
  const c = map([s], 'a', { name: 'cast', out: bias.dtype });
  s.dispose();
  return c;
}

/** Sum g to `shape` and cast to `dtype`, disposing the intermediates (g included). */
function finishGrad(g: Tensor, shape: readonly number[], dtype: DType): Tensor {
  const s = sumToShape(g, shape);
  if (s !== g) g.dispose();
  if (s.dtype === dtype) return s;
  const c = map([s], 'a', { name: 'cast', out: dtype });
  s.dispose();
  return c;
}

/** dA for Y = op(A)·op(B): dZ·op(B)ᵀ, or op(B)·dZᵀ when A is stored transposed. */
function gradA(a: Tensor, b: Tensor, dz: Tensor, transA: boolean, transB: boolean): Tensor {
  const g = transA ? matmulRaw(b, dz, { transA: transB, transB: true }, false).y : matmulRaw(dz, b, { transB: !transB }, false).y;
  return finishGrad(g, a.shape, a.dtype);
}

/** dB for Y = op(A)·op(B): op(A)ᵀ·dZ, or dZᵀ·op(A) when B is stored transposed. */
function gradB(a: Tensor, b: Tensor, dz: Tensor, transA: boolean, transB: boolean): Tensor {
  let g: Tensor;
  if (b.rank === 2 && a.rank > 2) {
    // weights shared across the batch: fold the batch into the reduction dimension
    const N = dz.shape[dz.rank - 1]!;
    const K = transA ? a.shape[a.rank - 2]! : a.shape[a.rank - 1]!;
    const aMK = transA ? transpose(a) : a; // [..., M, K] view
    const a2 = reshape(aMK, [-1, K]); // a view when a is dense, else a copy
    const dz2 = reshape(dz, [-1, N]);
    g = transB ? matmulRaw(dz2, a2, { transA: true }, false).y : matmulRaw(a2, dz2, { transA: true }, false).y;
    for (const t of [aMK, a2, dz2]) if (t !== a && t !== dz) t.dispose();
  } else {
    g = transB ? matmulRaw(dz, a, { transA: true, transB: transA }, false).y : matmulRaw(a, dz, { transA: !transA }, false).y;
  }
  return finishGrad(g, b.shape, b.dtype);
}

/**
 * y = x · weightᵀ (+ bias), weight stored [out, in] as in nn.Linear. A weight split into row blocks
 * (RowBlocks: larger than one binding) runs one matmul per block, each writing its columns of y;
 * every output element sums over k in the same order either way, so the results are the same bits.
 */
export function linear(x: Tensor, weight: Weight, bias?: Tensor, act: MatmulAct = 'none'): Tensor {
  if (weight instanceof Tensor) return matmul(x, weight, { transB: true, bias, act });
  const wantGrad = x.engine.gradEnabled && (x.requiresGrad || Boolean(bias?.requiresGrad) || weight.blocks.some((b) => b.requiresGrad));
  if (wantGrad) throw new ArdError('linear: a weight split into row blocks has no gradient (inference only)');
  if (x.rank < 2) {
    const x2 = reshape(x, [1, x.shape[0]!]);
    const y2 = linear(x2, weight, bias, act);
    const y = reshape(y2, [y2.shape[1]!]);
    x2.dispose();
    y2.dispose();
    return y;
  }
  if (weight.shape.length !== 2) throw new ArdError(`linear: weight ${shapeStr(weight.shape)} must be [out, in]`);
  const [N, K] = weight.shape as [number, number];
  if (x.shape[x.rank - 1] !== K) throw new ArdError(`linear: input ${shapeStr(x.shape)} does not match the weight's ${K} inputs`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== N)) throw new ArdError(`linear: bias ${shapeStr(bias.shape)} does not match ${N} outputs`);
  const y = empty(x.engine, [...x.shape.slice(0, -1), N], x.dtype);
  weight.blocks.forEach((block, i) => {
    const start = weight.starts[i]!;
    const b = bias?.view([block.shape[0]!], [bias.strides[0]!], bias.offset + start * bias.strides[0]!);
    matmulRaw(x, block, { transB: true, bias: b, act }, false, { y, col: start });
    b?.dispose();
  });
  return y;
}
