// The device profile: every device-dependent kernel choice (tilings, workgroup sizes, which
// variant runs) in one object, made once per engine from the adapter's info, features and limits.
// Ops read `engine.profile` instead of module constants, so one place says what a software
// adapter (lavapipe, SwiftShader: a workgroup is one CPU thread, barriers and cache misses are
// expensive) and a hardware GPU (thousands of threads, wide workgroups) each get.
// `ARDGPU_PROFILE=cpu|gpu` forces the kind, so a GPU's choices can be exercised on a CPU adapter.
// Choices that correctness depends on (the 8-lane subgroup paths) follow the hardware facts, never
// the forced kind.
import { ArdError } from '../util/errors.js';

export type ProfileKind = 'cpu' | 'gpu';

/** What the profile is built from: an adapter's (or a device's) info, features and limits. */
export interface DeviceFacts {
  /** GPUAdapterInfo-like: description, vendor, architecture, subgroup sizes, … (any may be missing). */
  info: {
    description?: string;
    device?: string;
    vendor?: string;
    architecture?: string;
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
    isFallbackAdapter?: boolean;
    subgroupMatrixConfigs?: readonly unknown[];
    type?: string;
  };
  features: Iterable<string>;
  limits: Partial<Record<string, number>> | GPUSupportedLimits;
}

export interface MatmulProfile {
  /** Rows per workgroup tile when M > 8 (M ≤ 8 always takes 8). */
  tm: 8 | 16;
  /** 8-lane groups (32 columns each) side by side per workgroup: 8·wgs invocations (kernel: 1–8). */
  wgs: number;
  /** The shuffle path: needs subgroups of exactly 8 lanes (a hardware fact, not a tuning choice). */
  subgroupPath: boolean;
  /**
   * Kernel for M above gemvMaxM: 'lanes' (kernels/matmul.wgsl: 8-lane tiles, no workgroup memory; what
   * lavapipe runs fastest) or 'tiled' (kernels/matmul_tiled.wgsl: 256 invocations, workgroup-memory tiles).
   */
  variant: 'lanes' | 'tiled';
  /** Largest M taken by the matrix-vector kernel (kernels/matmul_gemv.wgsl); 0: never. */
  gemvMaxM: number;
  /** Tiled kernel: 128-wide output tiles when both M and N reach this (else 64). */
  tile128MinM: number;
}

export interface TopkProfile {
  /**
   * 'row': one 256-invocation workgroup per row (kernels/topk_row.wgsl, rows ≤ 65,536 wide), what a GPU
   * wants; 'lanes': one invocation per (row, chunk) (kernels/topk.wgsl), what lavapipe runs fastest.
   */
  variant: 'lanes' | 'row';
  /** Independent (row, chunk) lanes wanted before rows are split into chunks merged by more passes. */
  lanes: number;
  /** Workgroup size wanted (reduced to fit the slot arrays in workgroup memory). */
  workgroup: number;
  /** Largest k for the threshold-and-filter variant (4k slots per lane); larger k use the heap. */
  filterMax: number;
  /** Slot-list length of the radix select. */
  radixSlots: number;
  /** Workgroup memory the slot arrays may use, bytes. */
  storageBytes: number;
}

export interface SaeProfile {
  /** Bytes of the row-indexed operand per rows_grad / dz_csr dispatch (cache-sized); null: one block. */
  rowBlockBytes: number | null;
  /** Row chunks of the CSR counting sort (its rows per chunk = ⌈B / csrChunks⌉). */
  csrChunks: number;
  /** Column tiling of a d-long row: at most colQ vec4 per lane, at most colLanes lanes per workgroup. */
  colQ: number;
  colLanes: number;
  /** Lanes per workgroup of the per-entry kernels (decode_dz): at most this many. */
  entryLanes: number;
  /** dz by latent over the CSR (else by row). */
  dzByLatent: boolean;
  /** Decoder backward's dW_dec and dz in one pass where 8-lane subgroups exist and d ≤ 256. */
  fusedDecoderGrad: boolean;
  /** Subgroups of at least 8 lanes (the fused pass's requirement; a hardware fact). */
  subgroups8: boolean;
  /**
   * Decoder projection, row normalisation, the loss's row sums and db_dec = −W_enc·db_enc: one
   * workgroup per row (output) with workgroup reductions (GPU) instead of one lane per row and a
   * one-lane final sum (lavapipe).
   */
  wgReductions: boolean;
  /** The workgroup reductions of kernels/sae_gpu.wgsl start with subgroupAdd (subgroups of ≥ 4 lanes; a hardware fact). */
  wgSubgroups: boolean;
  /**
   * The CSR: 'chunks', a counting sort with one lane per row chunk (kernels/sae.wgsl: lavapipe), or
   * 'radix', a stable radix sort over tiles of 256 entries (kernels/sae_gpu.wgsl). The same CSR.
   */
  csrSort: 'chunks' | 'radix';
  /**
   * rows_grad and dz by latent from kernels/sae_gpu.wgsl: a workgroup stages each latent's entries in
   * workgroup memory, dz's dot products are workgroup reductions (not one lane per entry over d).
   */
  entryStaging: boolean;
}

export interface NnProfile {
  /** Row kernels (softmax, norms; 64-invocation workgroups): lanes per row grow to this many… */
  rowLanes: number;
  /** …while a lane would otherwise hold more than this many elements. */
  rowElemsPerLane: number;
  /** Norm weight gradient: column chunks wanted in flight, and the fewest rows per chunk. */
  normGradWorkgroups: number;
  normGradMinRows: number;
  /** Attention: largest f32 score matrix materialised at once (more query rows run in chunks). */
  attentionScoreBytes: number;
  /**
   * Attention kernel without autograd: 'chunked' (matmul + softmax, scores materialised a chunk of query
   * rows at a time: what lavapipe was tuned with) or 'flash' (kernels/attention.wgsl: one fused pass,
   * scores only in workgroup memory and registers).
   */
  attention: 'chunked' | 'flash';
  /** Flash kernel: query rows per workgroup (8 invocations each) and keys per tile wanted (see flashTile). */
  flashRows: number;
  flashKeys: number;
  /**
   * Split-K (flash-decoding, see flashSplitPlan): where the profile's flash attention would run fewer
   * than this many workgroups (a decode step: one per kv head), its keys are split into chunks run by
   * workgroups of their own and merged by a second kernel; 0: never (the one-pass kernel only).
   */
  flashSplitGroups: number;
  /** Fewest keys per chunk (rounded up to whole key tiles), and most chunks. */
  flashSplitMinKeys: number;
  flashSplitMax: number;
  /** Lanes per query row in the split pass (8, 16 or 32; the one-pass kernel has 8): few rows, wide rows. */
  flashSplitLanes: number;
}

export interface DeviceProfile {
  kind: ProfileKind;
  /** What the adapter itself is (software → cpu), before any ARDGPU_PROFILE override. */
  detected: ProfileKind;
  /** Where `kind` came from. */
  source: 'adapter' | 'ARDGPU_PROFILE' | 'option';
  name: string;
  vendor: string;
  architecture: string;
  subgroups: boolean;
  subgroupMinSize: number;
  subgroupMaxSize: number;
  f16: boolean;
  timestamps: boolean;
  /** Subgroup-matrix configurations reported (needs allow_unsafe_apis); empty if none. */
  subgroupMatrixConfigs: unknown[];
  limits: {
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxStorageBuffersPerShaderStage: number;
  };
  matmul: MatmulProfile;
  topk: TopkProfile;
  sae: SaeProfile;
  nn: NnProfile;
}

/** Software rasterisers on the CPU: lavapipe/llvmpipe, SwiftShader, WARP, Dawn's fallback adapters. */
export function isSoftwareAdapter(info: DeviceFacts['info']): boolean {
  const name = `${info.description ?? ''} ${info.device ?? ''}`;
  return (
    Boolean(info.isFallbackAdapter) ||
    info.type === 'cpu' ||
    /^software$/i.test(info.architecture ?? '') ||
    /llvmpipe|lavapipe|swiftshader|software|microsoft basic render/i.test(name)
  );
}

/** ARDGPU_PROFILE, if set: 'cpu' or 'gpu' (anything else is an error). */
export function profileOverride(env: NodeJS.ProcessEnv = process.env): ProfileKind | undefined {
  const v = env.ARDGPU_PROFILE;
  if (v === undefined || v === '') return undefined;
  const k = v.trim().toLowerCase();
  if (k === 'cpu' || k === 'gpu') return k;
  throw new ArdError(`ARDGPU_PROFILE=${v}: expected cpu or gpu`);
}

const num = (v: unknown, fallback: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);

/**
 * The profile for these facts. `kind` (an explicit choice) wins over ARDGPU_PROFILE in `env`,
 * which wins over detection.
 */
export function buildProfile(facts: DeviceFacts, opts: { kind?: ProfileKind; env?: NodeJS.ProcessEnv } = {}): DeviceProfile {
  const { info } = facts;
  const features = new Set([...facts.features].map(String));
  const lim = facts.limits as Record<string, number | undefined>;
  const detected: ProfileKind = isSoftwareAdapter(info) ? 'cpu' : 'gpu';
  const forced = profileOverride(opts.env ?? process.env);
  const kind = opts.kind ?? forced ?? detected;
  const source = opts.kind ? 'option' : forced ? 'ARDGPU_PROFILE' : 'adapter';
  const subgroups = features.has('subgroups');
  const sgMin = subgroups ? num(info.subgroupMinSize, 0) : 0;
  const sgMax = subgroups ? num(info.subgroupMaxSize, 0) : 0;
  const storage = num(lim.maxComputeWorkgroupStorageSize, 16384);
  const cpu = kind === 'cpu';
  return {
    kind,
    detected,
    source,
    name: String(info.description || info.device || 'unknown adapter'),
    vendor: String(info.vendor ?? ''),
    architecture: String(info.architecture ?? ''),
    subgroups,
    subgroupMinSize: sgMin,
    subgroupMaxSize: sgMax,
    f16: features.has('shader-f16'),
    timestamps: features.has('timestamp-query'),
    subgroupMatrixConfigs: [...(info.subgroupMatrixConfigs ?? [])].map(plain),
    limits: {
      maxComputeWorkgroupStorageSize: storage,
      maxComputeInvocationsPerWorkgroup: num(lim.maxComputeInvocationsPerWorkgroup, 256),
      maxStorageBufferBindingSize: num(lim.maxStorageBufferBindingSize, 128 << 20),
      maxBufferSize: num(lim.maxBufferSize, 256 << 20),
      maxStorageBuffersPerShaderStage: num(lim.maxStorageBuffersPerShaderStage, 8),
    },
    matmul: {
      tm: 16,
      // one 8-lane group per workgroup ran 13–33 % faster than 8 side by side on lavapipe (bench/RESULTS.md);
      // a GPU wants the widest workgroup the kernel has (64 invocations)
      wgs: cpu ? 1 : 8,
      subgroupPath: subgroups && sgMin === 8 && sgMax === 8,
      variant: cpu ? 'lanes' : 'tiled',
      gemvMaxM: cpu ? 0 : 4,
      // 128² tiles (8×8 accumulators per invocation) once there are enough of them to fill a GPU
      tile128MinM: 1024,
    },
    topk: {
      variant: cpu ? 'lanes' : 'row',
      // a CPU has a few cores; a GPU wants tens of thousands of threads in flight before rows split
      lanes: cpu ? 256 : 16384,
      workgroup: cpu ? 64 : 256,
      filterMax: 128,
      radixSlots: 256,
      storageBytes: Math.min(32768, storage),
    },
    sae: {
      // row blocks keep gathered rows in a CPU's cache; a GPU hides the latency with threads
      rowBlockBytes: cpu ? 1 << 20 : null,
      csrChunks: 128,
      // lavapipe: one 8-lane SIMD vector per row with up to 8 vec4 per lane (per-entry bookkeeping
      // once per entry); a GPU: one vec4 per lane, up to 256 lanes
      colQ: cpu ? 8 : 1,
      colLanes: cpu ? 64 : 256,
      entryLanes: cpu ? 64 : 256,
      dzByLatent: true,
      // the fused pass runs an 8-lane workgroup per latent: a GPU takes the two staged passes instead
      fusedDecoderGrad: cpu,
      subgroups8: subgroups && sgMin >= 8,
      wgReductions: !cpu,
      wgSubgroups: subgroups && sgMin >= 4,
      csrSort: cpu ? 'chunks' : 'radix',
      entryStaging: !cpu,
    },
    nn: {
      rowLanes: 64,
      rowElemsPerLane: cpu ? 8 : 1,
      normGradWorkgroups: cpu ? 64 : 1024,
      normGradMinRows: 32,
      attentionScoreBytes: attentionScoreBudget(num(lim.maxStorageBufferBindingSize, 128 << 20)),
      attention: cpu ? 'chunked' : 'flash',
      // a GPU: 256 invocations per workgroup (32 rows); a CPU thread runs a workgroup, fewer rows idle at the edges
      flashRows: cpu ? 16 : 32,
      flashKeys: 32,
      // A GPU: an H100 has 132 SMs, each holding many workgroups; a decode step of a 7B model (32 kv
      // heads) gives 32. Untimed guesses: ~1024 one-warp workgroups in flight, chunks of ≥ 64 keys (two
      // tiles) so a chunk's work outweighs its partial's write. The CPU profile keeps chunked attention.
      flashSplitGroups: cpu ? 0 : 1024,
      flashSplitMinKeys: 64,
      flashSplitMax: 64,
      flashSplitLanes: cpu ? 8 : 32,
    },
  };
}

/** A subgroup-matrix configuration (a Dawn object) as plain data. */
function plain(c: unknown): unknown {
  if (!c || typeof c !== 'object') return c;
  const o: Record<string, unknown> = {};
  for (const k in c as object) o[k] = (c as Record<string, unknown>)[k];
  return o;
}

/** The profile's kernel choice per op family, one line each (for `ardgpu info`). */
export function describeVariants(p: DeviceProfile): Record<string, string> {
  const t = p.topk;
  const s = p.sae;
  return {
    matmul:
      p.matmul.variant === 'tiled'
        ? `workgroup-memory tiles of 64² (128² when M, N ≥ ${p.matmul.tile128MinM}), 256 invocations, double-buffered k tiles${p.matmul.gemvMaxM ? `; matrix-vector kernel for M ≤ ${p.matmul.gemvMaxM} (${p.subgroups ? 'subgroup' : 'workgroup-memory'} reductions)` : ''}`
        : `${p.matmul.subgroupPath ? '8-lane subgroup shuffles' : 'no subgroups'}, TM ${p.matmul.tm} (8 for M ≤ 8), ${p.matmul.wgs * 8} invocations per workgroup${p.matmul.gemvMaxM ? `; matrix-vector kernel for M ≤ ${p.matmul.gemvMaxM}` : ''}`,
    topk: `${t.variant === 'row' ? 'one 256-invocation workgroup per row (radix select, bitonic sort) for rows ≤ 65,536 wide; wider: ' : ''}one lane per (row, chunk), rows split below ${t.lanes} lanes, workgroup ≤ ${t.workgroup}, filter for k ≤ ${t.filterMax} else heap, radix select for unsorted single passes`,
    sae: `${s.rowBlockBytes === null ? 'no row blocks' : `row blocks of ${s.rowBlockBytes} bytes`}, ≤ ${s.colQ} vec4 × ${s.colLanes} lanes per row tile, dz ${s.dzByLatent ? 'by latent' : 'by row'}, decoder backward ${s.fusedDecoderGrad && s.subgroups8 ? 'fused (subgroups, d ≤ 256)' : 'in two passes'}, ${s.wgReductions ? `projection, normalisation, loss and db_dec by workgroup reductions (${s.wgSubgroups ? 'subgroupAdd' : 'trees'})` : 'projection, normalisation, loss and db_dec one lane per row'}, CSR by ${s.csrSort === 'radix' ? 'a stable radix sort (tile histograms, multi-workgroup scans, parallel placement)' : `a counting sort over ${s.csrChunks} row chunks`}${s.entryStaging ? ', dW rows and dz with entries staged in workgroup memory' : ''}`,
    attention:
      p.nn.attention === 'flash'
        ? `flash: one fused pass per (kv head, ${p.nn.flashRows} query rows), K/V tiles of ≤ ${p.nn.flashKeys} keys in workgroup memory, online softmax, f32 accumulation (K/V read as stored, f16 included); no scores in memory (training: composed matmul + softmax)`
        : `chunked: matmul + softmax, scores ≤ ${p.nn.attentionScoreBytes} bytes at once (chunks of query rows)`,
    attentionDecode: describeDecodeAttention(p),
    nn: `row kernels: ≤ ${p.nn.rowLanes} lanes per row at ${p.nn.rowElemsPerLane}+ elements each; norm weight gradient over ${p.nn.normGradWorkgroups} chunks of ≥ ${p.nn.normGradMinRows} rows`,
  };
}

/**
 * Attention scores materialised at once: one binding (less the buffer pool's 1/8 rounding), and no more
 * than 64 MiB, so a 30 s Whisper window's [20, 1500, 1500] f32 scores (172 MiB) run in 3 chunks of rows.
 */
export function attentionScoreBudget(maxStorageBufferBindingSize: number): number {
  return Math.min(64 << 20, Math.floor(maxStorageBufferBindingSize / 1.125));
}

/**
 * The flash attention kernel's tile for head dims D, Dv: the profile's rows and keys, halved (keys to 8,
 * then rows to 8) until Q, one K/V tile (rows padded to max(D, Dv) + 1), the probabilities and the row
 * reductions fit the adapter's workgroup storage and invocation limits; null if nothing fits.
 */
export function flashTile(p: DeviceProfile, D: number, Dv: number): { rows: number; keys: number } | null {
  const kp = Math.max(D, Dv) + 1;
  const bytes = (rows: number, keys: number) => 4 * (rows * D + keys * kp + rows * keys + 16 * rows);
  let rows = Math.max(8, p.nn.flashRows);
  let keys = Math.max(8, p.nn.flashKeys - (p.nn.flashKeys % 8));
  while (8 * rows > p.limits.maxComputeInvocationsPerWorkgroup && rows > 8) rows /= 2;
  while (bytes(rows, keys) > p.limits.maxComputeWorkgroupStorageSize) {
    if (keys > 8) keys = Math.max(8, Math.floor(keys / 16) * 8);
    else if (rows > 8) rows = Math.floor(rows / 2);
    else return null;
  }
  return { rows, keys };
}

/** What the profile's attention does for a decode step (one query row per head), for `ardgpu info`. */
function describeDecodeAttention(p: DeviceProfile): string {
  if (p.nn.attention !== 'flash') return 'chunked: matmul + softmax (one query row: scores [heads, 1, keys])';
  if (p.nn.flashSplitGroups <= 0) return 'flash: one workgroup per kv head over every key (no split-K)';
  // Qwen2-Audio-7B: 32 query and kv heads of 128; 30 s of audio is 750 positions, plus a short prompt
  const eg = flashSplitPlan(p, { batchHeads: 32, rows: 1, keys: 800, D: 128, Dv: 128 });
  const egText = eg && eg.splits > 1 ? `${eg.splits} chunks of ${eg.chunk} keys, ${eg.groups} workgroups of ${eg.lanes * eg.rows} invocations` : 'one pass';
  return (
    `split-K (flash-decoding) where the flash kernel would run fewer than ${p.nn.flashSplitGroups} workgroups: keys in ≤ ${p.nn.flashSplitMax} chunks of ≥ ${p.nn.flashSplitMinKeys} ` +
    `(whole key tiles), ${p.nn.flashSplitLanes} lanes per query row; each chunk's unnormalised output, max and sum of exponentials go to an f32 scratch ` +
    `[rows, chunks, Dv + 2], a second kernel merges them with log-sum-exp rescaling (e.g. a 7B decode step, 32 kv heads of 128, 800 keys: ${egText}); otherwise flash`
  );
}

/** The split-K attention launch: tile, lanes, chunks (see NnProfile.flashSplitGroups). */
export interface FlashSplitPlan {
  /** Query rows per workgroup, keys per tile, lanes per row (rows·lanes invocations). */
  rows: number;
  keys: number;
  lanes: number;
  /** Key chunks and keys per chunk (splits·chunk ≥ keys; 1 chunk: the one-pass kernel would do). */
  splits: number;
  chunk: number;
  /** Workgroups of the split pass (batchHeads·query tiles·splits). */
  groups: number;
}

/**
 * Split-K for attention over `keys` keys (those the last query row sees), `rows` query rows per kv
 * head (rep·Tq) and `batchHeads` = B·Hkv: the split pass's tile (the flash tile's keys; rows the next
 * power of two ≥ `rows`, as few as fit the lanes, ≤ the flash tile's rows·8 / lanes so workgroup memory
 * and invocations stay within the flash tile's), and, unless `splits` is given, the profile's chunks:
 * when the query tiles give fewer than nn.flashSplitGroups workgroups, enough chunks to reach it, at
 * most nn.flashSplitMax and keys / nn.flashSplitMinKeys, each a whole number of key tiles. Given
 * `splits`, chunks of ⌈keys / splits⌉ keys (trailing chunks may be empty). null: no flash tile fits.
 */
export function flashSplitPlan(
  p: DeviceProfile,
  s: { batchHeads: number; rows: number; keys: number; D: number; Dv: number; splits?: number },
): FlashSplitPlan | null {
  const tile = flashTile(p, s.D, s.Dv);
  if (!tile) return null;
  let lanes = 8;
  while (lanes < p.nn.flashSplitLanes && lanes < 32 && tile.keys % (2 * lanes) === 0) lanes *= 2;
  const maxRows = Math.max(1, Math.floor((tile.rows * 8) / lanes));
  let rows = 1;
  while (rows < s.rows && rows < maxRows) rows *= 2;
  const perSplit = s.batchHeads * Math.ceil(s.rows / rows);
  const keys = Math.max(1, s.keys);
  let splits: number;
  let chunk: number;
  if (s.splits !== undefined) {
    splits = Math.max(1, Math.floor(s.splits));
    chunk = Math.ceil(keys / splits);
  } else {
    const want = p.nn.flashSplitGroups;
    splits = perSplit < want ? Math.min(p.nn.flashSplitMax, Math.ceil(want / perSplit), Math.floor(keys / Math.max(1, p.nn.flashSplitMinKeys))) : 1;
    splits = Math.max(1, splits);
    chunk = Math.ceil(Math.ceil(keys / splits) / tile.keys) * tile.keys;
    splits = Math.ceil(keys / chunk);
  }
  return { rows, keys: tile.keys, lanes, splits, chunk, groups: perSplit * splits };
}
