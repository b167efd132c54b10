// Indexing ops (gather, scatterAdd, indexSelect, embedding), top-k along the last axis and a fused
// cross-entropy. Kernels: kernels/gather.wgsl, kernels/topk.wgsl, kernels/xent.wgsl.
// Index tensors are i32 and never take gradients. Out-of-range indices read as 0 / are dropped
// on the GPU (checking them would need a host round trip).
import { grid, Params } from '../../gpu/engine.js';
import type { Engine } from '../../gpu/engine.js';
import { ArdError } from '../../util/errors.js';
import { record } from '../autograd.js';
import { DType, Tensor, contiguousStrides, empty, shapeStr } from '../tensor.js';
import { map, zeros } from './elementwise.js';
import { RowBlocks, type Weight } from '../blocked.js';
import { contiguous } from './layout.js';

const MAX_RANK = 8;

function normAxis(x: Tensor, axis: number, what: string): number {
  const a = axis < 0 ? axis + x.rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= x.rank) throw new ArdError(`${what}: axis ${axis} out of range for ${shapeStr(x.shape)}`);
  return a;
}

function checkIndex(idx: Tensor, what: string): void {
  if (idx.dtype !== 'i32') throw new ArdError(`${what}: indices must be i32, got ${idx.dtype}`);
}

function checkRank(t: Tensor, what: string): void {
  if (t.rank > MAX_RANK) throw new ArdError(`${what}: rank ${t.rank} > ${MAX_RANK}`);
}

function floatCheck(x: Tensor, what: string): void {
  if (x.dtype !== 'f32' && x.dtype !== 'f16') throw new ArdError(`${what}: expected a float tensor, got ${x.dtype}`);
}

/**
 * The index tensor a backward closure will read: a view of its own (same buffer, an extra
 * reference) when autograd records, so the caller may dispose theirs before backward(). The view
 * belongs to the current tidy() scope, like every intermediate a graph keeps.
 */
function hold(index: Tensor, inputs: readonly Tensor[]): Tensor {
  if (!index.engine.gradEnabled || !inputs.some((t) => t.requiresGrad)) return index;
  return index.view(index.shape, index.strides);
}

function gatherParams(o: {
  n: number;
  rank: number;
  axis: number;
  offX: number;
  offI: number;
  axisLen: number;
  nKeys?: number;
  W?: number;
  colStride?: number;
  offO?: number;
  idxBase?: number;
  keepOob?: boolean;
  shape: readonly number[];
  sa?: readonly number[];
  sb?: readonly number[];
  sc?: readonly number[];
}): ArrayBuffer {
  return new Params()
    .u32(o.n, o.rank, o.axis, o.offX, o.offI, o.axisLen, o.nKeys ?? 0, o.W ?? 0, o.colStride ?? 0, o.offO ?? 0, (o.idxBase ?? 0) >>> 0, o.keepOob ? 1 : 0)
    .u32Array(o.shape, MAX_RANK, 1)
    .u32Array(o.sa ?? [], MAX_RANK)
    .u32Array(o.sb ?? [], MAX_RANK)
    .u32Array(o.sc ?? [], MAX_RANK)
    .done();
}

/**
 * out[p] = x[p with p[axis] := index[p ∘ idxStrides]] for every p of `outShape`. No autograd.
 * `idxStrides` may contain zeros (index_select broadcasts a 1-D index).
 */
function gatherRaw(
  x: Tensor,
  axis: number,
  index: Tensor,
  outShape: readonly number[],
  idxStrides: readonly number[],
  /** Fill rows of this dense tensor instead: only indices in [idxBase, idxBase + axis length) write. */
  into?: { out: Tensor; idxBase: number },
): Tensor {
  const out = into?.out ?? empty(x.engine, outShape, x.dtype);
  if (out.size === 0) return out;
  x.engine.dispatch({
    kernel: { family: 'gather', entry: 'gather', defines: { TX: x.dtype } },
    params: gatherParams({
      n: out.size,
      rank: outShape.length,
      axis,
      offX: x.offset,
      offI: index.offset,
      axisLen: x.shape[axis]!,
      shape: outShape,
      sa: x.strides,
      sb: idxStrides,
      idxBase: into?.idxBase,
      keepOob: Boolean(into),
    }),
    buffers: [x.buffer, index.buffer, out.buffer],
    workgroups: grid(Math.ceil(out.size / 256)),
  });
  return out;
}

/**
 * Deterministic scatter-add into the dense tensor `out` (in place), viewed as [nKeys, W] rows.
 * Items are the elements of `itemShape`; item p reads index[p·idxStrides], its source row starts at
 * src.offset + p·srcStrides (columns `colStride` apart), and it adds into row
 * Σ_{d≠axis} p_d·keyStrides_d + index·keyStrides[axis] (dropped when index ∉ [0, axisLen)).
 * Items of one row are summed in ascending item order, so results are bit-reproducible.
 */
function segmentScatterAdd(
  out: Tensor,
  nKeys: number,
  W: number,
  src: Tensor,
  colStride: number,
  index: Tensor,
  itemShape: readonly number[],
  axis: number,
  axisLen: number,
  idxStrides: readonly number[],
  srcStrides: readonly number[],
  keyStrides: readonly number[],
): void {
  const engine = out.engine;
  const M = itemShape.reduce((a, b) => a * b, 1);
  if (M === 0 || nKeys === 0 || W === 0) return;
  if (nKeys * W !== out.size) throw new ArdError(`scatter: internal shape mismatch ${nKeys}×${W} vs ${shapeStr(out.shape)}`);
  const meta = zeros(engine, [2 * nKeys + 1], 'u32');
  const start = empty(engine, [nKeys], 'u32');
  const keys = empty(engine, [M], 'u32');
  const soff = empty(engine, [M], 'u32');
  const list = empty(engine, [M], 'u32');
  const base = {
    rank: itemShape.length,
    axis,
    offX: src.offset,
    offI: index.offset,
    axisLen,
    nKeys,
    W,
    colStride,
    offO: out.offset,
    shape: itemShape,
    sa: srcStrides,
    sb: idxStrides,
    sc: keyStrides,
  };
  const spec = (entry: string) => ({ family: 'gather', entry, defines: { TX: src.dtype } });
  const itemsWg = grid(Math.ceil(M / 256));
  const keysWg = grid(Math.ceil(nKeys / 256));
  engine.dispatch({ kernel: spec('seg_keys'), params: gatherParams({ ...base, n: M }), buffers: [index.buffer, keys.buffer, soff.buffer, meta.buffer], workgroups: itemsWg });
  engine.dispatch({ kernel: spec('seg_alloc'), params: gatherParams({ ...base, n: nKeys }), buffers: [meta.buffer, start.buffer], workgroups: keysWg });
  engine.dispatch({ kernel: spec('seg_place'), params: gatherParams({ ...base, n: M }), buffers: [keys.buffer, start.buffer, meta.buffer, list.buffer], workgroups: itemsWg });
  engine.dispatch({ kernel: spec('seg_sort'), params: gatherParams({ ...base, n: nKeys }), buffers: [meta.buffer, start.buffer, list.buffer], workgroups: keysWg });
  engine.dispatch({
    kernel: spec('seg_accum'),
    params: gatherParams({ ...base, n: nKeys * W }),
    buffers: [src.buffer, soff.buffer, meta.buffer, start.buffer, list.buffer, out.buffer],
    workgroups: grid(Math.ceil((nKeys * W) / 256)),
  });
  for (const t of [meta, start, keys, soff, list]) t.dispose();
}

function denseIndex(index: Tensor): Tensor {
  return index.isContiguousIgnoringOffset() ? index : index.engine.noGradScope(() => contiguous(index));
}

/** scatter-add of `src` (shape = index's shape) into a dense copy of `base` or into zeros. No autograd. */
function scatterAddRaw(base: Tensor | null, shape: readonly number[], dtype: DType, axis: number, index: Tensor, src: Tensor): Tensor {
  const engine = index.engine;
  const out = base ? engine.noGradScope(() => contiguous(base)) : zeros(engine, shape, dtype);
  segmentScatterAdd(out, out.size, 1, src, 0, index, index.shape, axis, shape[axis]!, index.strides, src.strides, contiguousStrides(shape));
  return out;
}

/**
 * torch.gather along `axis`: out[p] = x[p with p[axis] := index[p]]. `index` (i32) has x's rank and
 * index.shape[d] ≤ x.shape[d] for d ≠ axis; the output has index's shape.
 * Backward: scatter-add of the gradient into zeros shaped like x (deterministic).
 */
export function gather(x: Tensor, axis: number, index: Tensor): Tensor {
  const a = normAxis(x, axis, 'gather');
  checkIndex(index, 'gather');
  checkRank(x, 'gather');
  if (index.rank !== x.rank) throw new ArdError(`gather: index ${shapeStr(index.shape)} must have the rank of x ${shapeStr(x.shape)}`);
  for (let d = 0; d < x.rank; d++) {
    if (d !== a && index.shape[d]! > x.shape[d]!) throw new ArdError(`gather: index ${shapeStr(index.shape)} larger than x ${shapeStr(x.shape)} along axis ${d}`);
  }
  const out = gatherRaw(x, a, index, index.shape, index.strides);
  const idx = hold(index, [x]);
  return record(out, 'gather', [x], (g) => [scatterAddRaw(null, x.shape, g.dtype, a, idx, g)]);
}

/**
 * Out-of-place torch.scatter_add: a copy of `base` with out[p with p[axis] := index[p]] += src[p].
 * src has index's shape; index.shape[d] ≤ base.shape[d] for d ≠ axis. Sums are accumulated per
 * destination in index order (bit-reproducible; cost O(base + index) plus sorting each
 * destination's contributions). Gradients: base ← g, src ← gather(g, axis, index).
 */
export function scatterAdd(base: Tensor, axis: number, index: Tensor, src: Tensor): Tensor {
  const a = normAxis(base, axis, 'scatterAdd');
  checkIndex(index, 'scatterAdd');
  checkRank(base, 'scatterAdd');
  if (base.dtype !== src.dtype) throw new ArdError(`scatterAdd: dtype mismatch base ${base.dtype} vs src ${src.dtype}`);
  if (index.rank !== base.rank || src.rank !== index.rank || src.shape.some((d, i) => d !== index.shape[i])) {
    throw new ArdError(`scatterAdd: src ${shapeStr(src.shape)} and index ${shapeStr(index.shape)} must match and have the rank of base ${shapeStr(base.shape)}`);
  }
  for (let d = 0; d < base.rank; d++) {
    if (d !== a && index.shape[d]! > base.shape[d]!) throw new ArdError(`scatterAdd: index ${shapeStr(index.shape)} larger than base ${shapeStr(base.shape)} along axis ${d}`);
  }
  const out = scatterAddRaw(base, base.shape, base.dtype, a, index, src);
  const idx = hold(index, [src]);
  return record(out, 'scatterAdd', [base, src], (g) => [base.requiresGrad ? g : null, src.requiresGrad ? gatherRaw(g, a, idx, idx.shape, idx.strides) : null]);
}

/**
 * Select entries of x along `axis` by a 1-D i32 index (repeats allowed): out has x's shape with
 * shape[axis] = idx.length. Backward: rows of the gradient summed into their source rows
 * (deterministic segmented sum, cost O(x + grad)).
 */
export function indexSelect(x: Tensor, axis: number, idx: Tensor): Tensor {
  const a = normAxis(x, axis, 'indexSelect');
  checkIndex(idx, 'indexSelect');
  checkRank(x, 'indexSelect');
  if (idx.rank !== 1) throw new ArdError(`indexSelect: index must be 1-D, got ${shapeStr(idx.shape)}`);
  const K = idx.shape[0]!;
  const outShape = x.shape.map((d, i) => (i === a ? K : d));
  const idxStrides = outShape.map((_, i) => (i === a ? idx.strides[0]! : 0));
  const out = gatherRaw(x, a, idx, outShape, idxStrides);
  const held = hold(idx, [x]);
  return record(out, 'indexSelect', [x], (g) => [indexSelectBackward(g, x.shape, a, held, K, held.strides[0]!)]);
}

/** dx[o, r, i] = Σ_{j: idx[j] = r} g[o, j, i]; idx has K entries `idxStride` apart. */
function indexSelectBackward(g: Tensor, xShape: readonly number[], a: number, idx: Tensor, K: number, idxStride: number): Tensor {
  const engine = g.engine;
  const outer = xShape.slice(0, a).reduce((p, d) => p * d, 1);
  const inner = xShape.slice(a + 1).reduce((p, d) => p * d, 1);
  const L = xShape[a]!;
  const gd = g.isContiguousIgnoringOffset() ? g : contiguous(g);
  const dx = zeros(engine, xShape, g.dtype);
  // items are gradient rows (o, j) of `inner` contiguous columns, adding into dx row o·L + idx[j]
  segmentScatterAdd(dx, outer * L, inner, gd, 1, idx, [outer, K], 1, L, [0, idxStride], [K * inner, inner], [L, 1]);
  if (gd !== g) gd.dispose();
  return dx;
}

/**
 * Embedding lookup: weight [V, D], ids (i32, any shape) → [...ids.shape, D]. Out-of-range ids
 * give zero rows. Backward: deterministic segmented sum of the gradient rows into dWeight.
 */
export function embedding(weight: Weight, ids: Tensor): Tensor {
  if (weight instanceof RowBlocks) return embeddingBlocks(weight, ids);
  if (weight.rank !== 2) throw new ArdError(`embedding: weight must be [vocab, dim], got ${shapeStr(weight.shape)}`);
  checkIndex(ids, 'embedding');
  const engine = weight.engine;
  const [V, D] = weight.shape as [number, number];
  const flat = ids.isContiguousIgnoringOffset() ? ids : engine.noGradScope(() => contiguous(ids));
  const N = ids.size;
  // rows gathered straight into the output's shape: one node, no intermediate in the graph
  const outShape = [...ids.shape, D];
  const out = gatherRaw(weight, 0, flat, outShape.length === 2 ? outShape : [N, D], [1, 0]);
  const shaped = outShape.length === 2 ? out : out.view(outShape, contiguousStrides(outShape));
  if (shaped !== out) out.dispose();
  const held = flat === ids ? hold(ids, [weight]) : flat; // a dense copy is already ours
  const res = record(shaped, 'embedding', [weight], (g) => [indexSelectBackward(g, [V, D], 0, held, N, 1)]);
  if (!res.node && flat !== ids) flat.dispose();
  return res;
}

/**
 * embedding() over a table split into row blocks: each block writes the rows of the tokens it holds
 * (one gather per block into the same output, zero-filled first so an id outside the table reads 0 as
 * it does unsplit). Inference only: a split table takes no gradient.
 */
function embeddingBlocks(weight: RowBlocks, ids: Tensor): Tensor {
  checkIndex(ids, 'embedding');
  const engine = ids.engine;
  if (engine.gradEnabled && weight.blocks.some((b) => b.requiresGrad)) throw new ArdError('embedding: a table split into row blocks has no gradient (inference only)');
  const D = weight.shape[1];
  const flat = ids.isContiguousIgnoringOffset() ? ids : engine.noGradScope(() => contiguous(ids));
  const out = zeros(engine, [ids.size, D], weight.dtype);
  weight.blocks.forEach((block, i) => gatherRaw(block, 0, flat, [ids.size, D], [1, 0], { out, idxBase: weight.starts[i]! }));
  if (flat !== ids) flat.dispose();
  const outShape = [...ids.shape, D];
  if (outShape.length === 2) return out;
  const shaped = out.view(outShape, contiguousStrides(outShape));
  out.dispose();
  return shaped;
}

// ---- top-k ----------------------------------------------------------------------------------

export interface TopK {
  values: Tensor;
  indices: Tensor;
}

export const TOPK_MAX_K = 256;
/** Widest row the one-workgroup-per-row kernel takes (16-bit indices in its composite keys). */
export const TOPK_ROW_MAX_N = 65536;
/** Slots per workgroup: 2 × 4 bytes each, within the profile's share of workgroup memory. */
function topkSlotsPerWg(engine: Engine): number {
  return engine.profile.topk.storageBytes / 8;
}

function topkCap(k: number): number {
  let c = 8;
  while (c < k) c *= 2;
  return c;
}

/**
 * The k largest entries along the last axis, sorted descending; equal values keep the lower index
 * first; NaN counts as larger than +inf, -0 equals +0. values: x's dtype, indices: i32, both
 * [..., k]. k ≤ 256 and k ≤ n. Gradient (values only): g scattered into zeros at the indices.
 *
 * Design (for lavapipe, where a workgroup is one CPU thread running 8 invocations per SIMD vector
 * and barriers cost): one invocation per (row, chunk), no barriers, per-invocation slot arrays in
 * workgroup memory laid out slot-major. Values become order-preserving u32 keys.
 *  - filter (k ≤ 128 and chunks ≥ 16k long): pass 1 takes the maxima of 2k interleaved groups;
 *    the k-th largest maximum is a lower bound tau with ≥ k elements above it. Pass 2 appends the
 *    elements ≥ tau (≈ 1.35k on random data) to a 4k-slot list, cut to its top k when full; a
 *    partial selection sort of the list gives the result. Both passes read 16-byte quads.
 *  - heap (otherwise): a streaming k-slot min-heap, one compare per element against its root.
 * With fewer rows than the device profile's topk.lanes (256 on a CPU), rows are split into chunks whose k candidates each further passes of
 * the same kernel merge, so every core has work; the last pass writes the result.
 * sorted: false returns the same k entries in no particular order: for callers that only need the
 * set, such as the SAE's AuxK selection (k_aux = 4k on a short row). Where the heap would run in a
 * single pass, a radix select (topk_radix in kernels/topk.wgsl) runs instead: the heap's sifts
 * diverge across the 8 rows of a SIMD vector when k is a large share of the row.
 */
export function topk(x: Tensor, k: number, opts: { sorted?: boolean } = {}): TopK {
  floatCheck(x, 'topk');
  if (x.rank < 1) throw new ArdError('topk: needs a tensor of rank ≥ 1');
  const n = x.shape[x.rank - 1]!;
  const { values, indices, rows } = selectTopk(x, n, k, opts.sorted ?? true, null, `the last dimension of ${shapeStr(x.shape)}`);
  const held = hold(indices, [x]);
  return {
    values: record(values, 'topk', [x], (g) => [topkBackward(g, held, x.shape, rows, n, k)]),
    indices,
  };
}

/**
 * topk over a subset of each row's columns, without a gradient: element j of row r is
 * x[r, cols[j]] (cols i32 [n], each in [0, x's last dim); out-of-range ones are clamped). Returns
 * positions into cols, not column ids. For the SAE's AuxK selection among dead latents: it reads
 * the pre-activations in place instead of gathering the dead columns first.
 */
export function topkColumns(x: Tensor, cols: Tensor, k: number, opts: { sorted?: boolean } = {}): TopK {
  floatCheck(x, 'topk');
  if (cols.dtype !== 'i32' || cols.rank !== 1) throw new ArdError(`topk: cols must be an i32 list, got ${cols.dtype} ${shapeStr(cols.shape)}`);
  if (x.rank < 1) throw new ArdError('topk: needs a tensor of rank ≥ 1');
  const { values, indices } = selectTopk(x, cols.size, k, opts.sorted ?? true, cols, `the ${cols.size} columns chosen`);
  return { values, indices };
}

/** Checks k against the n candidates per row (`what` names them), allocates the outputs, selects. */
function selectTopk(x: Tensor, n: number, k: number, sorted: boolean, cols: Tensor | null, what: string): TopK & { rows: number } {
  if (!Number.isInteger(k) || k < 1 || k > TOPK_MAX_K) throw new ArdError(`topk: k = ${k} must be an integer in [1, ${TOPK_MAX_K}]`);
  if (k > n) throw new ArdError(`topk: k = ${k} exceeds ${what}`);
  const width = x.shape[x.rank - 1]!;
  const rows = width > 0 ? x.size / width : 0;
  const outShape = [...x.shape.slice(0, -1), k];
  const values = empty(x.engine, outShape, x.dtype);
  const indices = empty(x.engine, outShape, 'i32');
  if (rows > 0) topkRaw(x.engine, x, rows, n, k, values, indices, sorted, cols);
  return { values, indices, rows };
}

function topkRaw(engine: Engine, x: Tensor, rows: number, n: number, k: number, values: Tensor, indices: Tensor, sorted: boolean, cols: Tensor | null): void {
  const dense = x.isContiguousIgnoringOffset() ? x : engine.noGradScope(() => contiguous(x));
  const stride = x.shape[x.rank - 1]!;
  const cap = topkCap(k);
  const prof = engine.profile.topk;
  if (prof.variant === 'row' && n <= TOPK_ROW_MAX_N) {
    // one workgroup per row (kernels/topk_row.wgsl); sorted even when not asked (deterministic order)
    const gridX = Math.min(rows, 65535);
    engine.dispatch({
      kernel: { family: 'topk_row', defines: { TX: x.dtype, P2: cap, SORTED: true, COLS: cols !== null } },
      params: new Params().u32(rows, n, k, gridX, dense.offset, stride, 0, 0).done(),
      buffers: [dense.buffer, values.buffer, indices.buffer, ...(cols ? [cols.buffer] : [])],
      workgroups: [gridX, Math.ceil(rows / gridX)],
    });
    if (dense !== x) dense.dispose();
    return;
  }
  let cand: Tensor | null = null; // (key, index) pairs from the previous pass, [rows, len]
  let len = n;
  for (;;) {
    let chunks = 1;
    if (rows < prof.lanes) chunks = Math.max(1, Math.min(Math.ceil(prof.lanes / rows), Math.floor(len / (4 * k))));
    const chunkLen = Math.ceil(len / chunks / 8) * 8; // multiple of 8: aligned quad loads
    chunks = Math.ceil(len / chunkLen);
    const final = chunks === 1;
    const first = cand === null;
    const lanes = rows * chunks;
    const heap = !first || k > prof.filterMax || chunkLen < 16 * k;
    // an unsorted single-pass heap selection runs as a radix select instead (no divergent sifts)
    const radix = heap && first && final && !sorted;
    const vec4 = first && !cols && !radix && len % 4 === 0 && dense.offset % 4 === 0;
    const withCols = first && cols !== null;
    const slots = radix ? prof.radixSlots : heap ? cap : 4 * cap;
    // the radix select also keeps 256 histogram bins per lane (1 KiB: 128 slots' worth)
    // a whole number of 8-lane SIMD vectors where possible (lavapipe runs a workgroup of 10 as 2 vectors)
    const wgFit = Math.max(1, Math.min(prof.workgroup, Math.floor(topkSlotsPerWg(engine) / (slots + (radix ? 128 : 0)))));
    const wgSize = wgFit > 8 ? wgFit - (wgFit % 8) : wgFit;
    const next: Tensor | null = final ? null : empty(engine, [rows, chunks * k * 2], 'u32');
    engine.dispatch({
      kernel: {
        family: 'topk',
        entry: radix ? 'topk_radix' : 'topk_select',
        defines: { TX: x.dtype, SLOTS: slots, FIRST: first, FINAL: final, WG: wgSize, HEAP: heap, POP: heap && final && sorted, VEC4: vec4, COLS: withCols, BCOLS: final ? 4 : 3, RADIX: radix },
      },
      params: new Params().u32(rows, len, k, chunks, chunkLen, first ? dense.offset : 0, first ? stride : 0, 0).done(),
      buffers: [first ? dense.buffer : cand!.buffer, ...(final ? [values.buffer, indices.buffer] : [next!.buffer]), ...(withCols ? [cols!.buffer] : [])],
      workgroups: grid(Math.ceil(lanes / wgSize)),
    });
    cand?.dispose();
    if (final) break;
    cand = next;
    len = chunks * k;
  }
  if (dense !== x) dense.dispose();
}

function topkBackward(g: Tensor, indices: Tensor, xShape: readonly number[], rows: number, n: number, k: number): Tensor {
  const engine = g.engine;
  const gd = g.isContiguous ? g : contiguous(g);
  const dx = zeros(engine, xShape, g.dtype);
  engine.dispatch({
    kernel: { family: 'topk', entry: 'scatter', defines: { TX: g.dtype, SLOTS: 8, FIRST: true, FINAL: true, WG: engine.profile.topk.workgroup, HEAP: false } },
    params: new Params().u32(rows, n, k, 1, n, 0, 0, 0).done(),
    buffers: [gd.buffer, indices.buffer, dx.buffer],
    workgroups: grid(Math.ceil((rows * k) / 256)),
  });
  if (gd !== g) gd.dispose();
  return dx;
}

// ---- cross-entropy --------------------------------------------------------------------------

export interface CrossEntropyOptions {
  /** Targets equal to this contribute nothing and are not counted (default -100). */
  ignoreIndex?: number;
  /** 'mean' over non-ignored targets (default), 'sum', or 'none' (per-row losses, 0 where ignored). */
  reduction?: 'mean' | 'sum' | 'none';
}

/**
 * Softmax cross-entropy of logits [N, V] against i32 targets [N], fused and stable (log-sum-exp
 * per row). A target outside [0, V) that is not ignoreIndex gives NaN for its row. 'mean' with
 * every target ignored is NaN (as in PyTorch). Backward: g·(softmax − onehot)/count in one kernel.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  floatCheck(logits, 'crossEntropy');
  checkIndex(targets, 'crossEntropy');
  const reduction = opts.reduction ?? 'mean';
  if (reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none') throw new ArdError(`crossEntropy: unknown reduction '${reduction}'`);
  const ignore = opts.ignoreIndex ?? -100;
  if (logits.rank !== 2) throw new ArdError(`crossEntropy: logits must be [N, V], got ${shapeStr(logits.shape)}`);
  const [N, V] = logits.shape as [number, number];
  if (targets.rank !== 1 || targets.shape[0] !== N) throw new ArdError(`crossEntropy: targets ${shapeStr(targets.shape)} must be [${N}] for logits ${shapeStr(logits.shape)}`);
  if (V === 0) throw new ArdError('crossEntropy: logits have no classes');
  const engine = logits.engine;
  // what backward reads must outlive the caller's tensors: dense copies are ours, else hold views
  const x = logits.isContiguousIgnoringOffset() ? hold(logits, [logits]) : engine.noGradScope(() => contiguous(logits));
  const t = targets.isContiguousIgnoringOffset() ? hold(targets, [logits]) : engine.noGradScope(() => contiguous(targets));
  const params = () => new Params().u32(N, V, x.offset, t.offset).i32(ignore).u32(reduction === 'mean' ? 1 : 0, 0, 0).done();
  // one module per (dtype, reduction kind) holds all three entries
  const defines = { TX: logits.dtype, TG: reduction === 'none' ? logits.dtype : 'f32', PER_ROW: reduction === 'none', OUT_BINDING: reduction === 'none' ? 5 : 6 };
  const spec = (entry: string) => ({ family: 'xent', entry, defines });
  const rowLoss = empty(engine, [N], 'f32');
  const lse = empty(engine, [N], 'f32');
  if (N > 0) {
    engine.dispatch({ kernel: spec('forward'), params: params(), buffers: [x.buffer, t.buffer, rowLoss.buffer, lse.buffer], workgroups: grid(N) });
  }
  let out: Tensor;
  let stats: Tensor | null = null; // [gradient scale per row for reductions]
  if (reduction === 'none') {
    out = logits.dtype === 'f32' ? rowLoss : map([rowLoss], 'a', { name: 'cast', out: logits.dtype });
  } else {
    out = empty(engine, [], 'f32');
    stats = empty(engine, [1], 'f32');
    engine.dispatch({ kernel: spec('finish'), params: params(), buffers: [t.buffer, rowLoss.buffer, out.buffer, stats.buffer], workgroups: [1] });
  }
  if (out !== rowLoss) rowLoss.dispose();
  const res = record(out, 'crossEntropy', [logits], (g) => {
    const gd = g.isContiguous ? g : contiguous(g);
    const dx = empty(engine, [N, V], logits.dtype);
    if (N * V > 0) {
      engine.dispatch({
        kernel: spec('backward'),
        params: params(),
        buffers: [x.buffer, t.buffer, lse.buffer, gd.buffer, ...(stats ? [stats.buffer] : []), dx.buffer],
        workgroups: grid(Math.ceil((N * V) / 256)),
      });
    }
    if (gd !== g) gd.dispose();
    return [dx];
  });
  if (!res.node) {
    lse.dispose();
    stats?.dispose();
    if (x !== logits) x.dispose();
    if (t !== targets) t.dispose();
  }
  return res;
}
