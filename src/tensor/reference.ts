// Plain TypeScript references of the neural-network ops (ops/nn.ts), in f64, for tests only.
// Arrays are flat and row-major; shapes follow the ops' conventions. Nothing here touches the GPU.

function lastAxis(shape: readonly number[]): { rows: number; n: number } {
  const n = shape[shape.length - 1] ?? 1;
  const total = shape.reduce((a, b) => a * b, 1);
  return { rows: n === 0 ? 0 : total / n, n };
}

export interface SoftmaxRefOptions {
  causal?: boolean;
  /** Default Tk − Tq (see ops/nn.ts). */
  causalOffset?: number;
  scale?: number;
}

/** softmax(scale·x) along the last axis; causal rows see keys j ≤ (r mod Tq) + offset, others 0. */
export function softmaxRef(x: ArrayLike<number>, shape: readonly number[], opts: SoftmaxRefOptions = {}): Float64Array {
  return softmaxCore(x, shape, opts, false);
}

/** log softmax(scale·x) along the last axis; hidden causal keys give -inf. */
export function logSoftmaxRef(x: ArrayLike<number>, shape: readonly number[], opts: SoftmaxRefOptions = {}): Float64Array {
  return softmaxCore(x, shape, opts, true);
}

function softmaxCore(x: ArrayLike<number>, shape: readonly number[], opts: SoftmaxRefOptions, log: boolean): Float64Array {
  const { rows, n } = lastAxis(shape);
  const tq = shape.length >= 2 ? shape[shape.length - 2]! : 1;
  const offset = opts.causalOffset ?? n - tq;
  const scale = opts.scale ?? 1;
  const out = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const len = opts.causal ? Math.max(0, Math.min(n, (r % tq) + offset + 1)) : n;
    let m = -Infinity;
    for (let j = 0; j < len; j++) m = Math.max(m, scale * x[r * n + j]!);
    let s = 0;
    for (let j = 0; j < len; j++) s += Math.exp(scale * x[r * n + j]! - m);
    for (let j = 0; j < n; j++) {
      const v = scale * x[r * n + j]!;
      if (log) out[r * n + j] = j < len ? v - m - Math.log(s) : -Infinity;
      else out[r * n + j] = j < len ? Math.exp(v - m) / s : 0;
    }
  }
  return out;
}

/** LayerNorm over the last axis (biased variance); bias may be null. */
export function layerNormRef(x: ArrayLike<number>, shape: readonly number[], w: ArrayLike<number>, b: ArrayLike<number> | null, eps: number): Float64Array {
  const { rows, n } = lastAxis(shape);
  const out = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let j = 0; j < n; j++) mean += x[r * n + j]!;
    mean /= n;
    let v = 0;
    for (let j = 0; j < n; j++) v += (x[r * n + j]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / n + eps);
    for (let j = 0; j < n; j++) out[r * n + j] = (x[r * n + j]! - mean) * rstd * w[j]! + (b ? b[j]! : 0);
  }
  return out;
}

/** Qwen2 RMSNorm over the last axis: x·rsqrt(mean(x²) + eps)·w. */
export function rmsNormRef(x: ArrayLike<number>, shape: readonly number[], w: ArrayLike<number>, eps: number): Float64Array {
  const { rows, n } = lastAxis(shape);
  const out = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < n; j++) ss += x[r * n + j]! ** 2;
    const rstd = 1 / Math.sqrt(ss / n + eps);
    for (let j = 0; j < n; j++) out[r * n + j] = x[r * n + j]! * rstd * w[j]!;
  }
  return out;
}

export interface RopeRefOptions {
  theta?: number;
  /** Default: the last axis; smaller means the last axis packs H heads ('thd'). */
  headDim?: number;
  layout?: 'thd' | 'htd';
}

/**
 * Rotary embedding, HF rotate_half convention. The angle is pos·F[k] rounded to f32 with
 * F[k] = f32(1 / f32(θ^f32(2k/D))), as HF's Qwen2RotaryEmbedding computes it in f32; sin and cos
 * are then exact (f64). `positions`: T or batch·T values, or a start position.
 */
export function ropeRef(x: ArrayLike<number>, shape: readonly number[], positions: ArrayLike<number> | number, opts: RopeRefOptions = {}): Float64Array {
  const f32 = Math.fround;
  const theta = opts.theta ?? 10000;
  const last = shape[shape.length - 1]!;
  const D = opts.headDim ?? last;
  const layout = opts.layout ?? 'thd';
  const s4 = D === last ? [...shape] : [...shape.slice(0, -1), last / D, D];
  const r = s4.length;
  const T = layout === 'thd' ? s4[r - 3]! : s4[r - 2]!;
  const H = layout === 'thd' ? s4[r - 2]! : s4[r - 3]!;
  const total = shape.reduce((a, b) => a * b, 1);
  const half = D / 2;
  const inv: number[] = [];
  for (let k = 0; k < half; k++) inv.push(f32(1 / f32(f32(theta) ** f32((2 * k) / D))));
  const out = new Float64Array(total);
  const headRows = total / D;
  for (let hr = 0; hr < headRows; hr++) {
    const t = layout === 'thd' ? Math.floor(hr / H) % T : hr % T;
    const b = Math.floor(hr / (H * T));
    let pos: number;
    if (typeof positions === 'number') pos = positions + t;
    else pos = positions.length === T ? positions[t]! : positions[b * T + t]!;
    for (let k = 0; k < half; k++) {
      const a = f32(pos * inv[k]!);
      const c = Math.cos(a);
      const s = Math.sin(a);
      const i1 = hr * D + k;
      const i2 = i1 + half;
      out[i1] = x[i1]! * c - x[i2]! * s;
      out[i2] = x[i2]! * c + x[i1]! * s;
    }
  }
  return out;
}

export function conv1dOutLength(T: number, K: number, stride = 1, padding = 0): number {
  return Math.floor((T + 2 * padding - K) / stride) + 1;
}

/** unfold1d: x [Cin, T] (row-major) → cols [Tout, Cin·K], cols[t, c·K + k] = x[c, t·s + k − p] or 0. */
export function unfold1dRef(x: ArrayLike<number>, Cin: number, T: number, K: number, stride = 1, pad = 0): Float64Array {
  const Tout = conv1dOutLength(T, K, stride, pad);
  const out = new Float64Array(Tout * Cin * K);
  for (let t = 0; t < Tout; t++) {
    for (let c = 0; c < Cin; c++) {
      for (let k = 0; k < K; k++) {
        const tau = t * stride + k - pad;
        if (tau >= 0 && tau < T) out[t * Cin * K + c * K + k] = x[c * T + tau]!;
      }
    }
  }
  return out;
}

/** torch conv1d: x [B, Cin, T] (B = 1 for [Cin, T]), w [Cout, Cin, K] → [B, Cout, Tout] flat. */
export function conv1dRef(
  x: ArrayLike<number>,
  xShape: readonly number[],
  w: ArrayLike<number>,
  wShape: readonly number[],
  bias: ArrayLike<number> | null,
  opts: { stride?: number; padding?: number } = {},
): Float64Array {
  const stride = opts.stride ?? 1;
  const pad = opts.padding ?? 0;
  const B = xShape.length === 3 ? xShape[0]! : 1;
  const Cin = xShape[xShape.length - 2]!;
  const T = xShape[xShape.length - 1]!;
  const [Cout, , K] = wShape as [number, number, number];
  const Tout = conv1dOutLength(T, K, stride, pad);
  const out = new Float64Array(B * Cout * Tout);
  for (let b = 0; b < B; b++) {
    for (let o = 0; o < Cout; o++) {
      for (let t = 0; t < Tout; t++) {
        let acc = bias ? bias[o]! : 0;
        for (let i = 0; i < Cin; i++) {
          for (let k = 0; k < K; k++) {
            const tau = t * stride + k - pad;
            if (tau >= 0 && tau < T) acc += w[(o * Cin + i) * K + k]! * x[(b * Cin + i) * T + tau]!;
          }
        }
        out[(b * Cout + o) * Tout + t] = acc;
      }
    }
  }
  return out;
}

/** Batched matrix product [batch, M, K] · [batch, K, N] (b transposed when `transB`). */
export function matmulRef(a: ArrayLike<number>, b: ArrayLike<number>, batch: number, M: number, K: number, N: number, transB = false): Float64Array {
  const out = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[(z * M + i) * K + k]! * (transB ? b[(z * N + j) * K + k]! : b[(z * K + k) * N + j]!);
        out[(z * M + i) * N + j] = s;
      }
    }
  }
  return out;
}

/**
 * Attention softmax(scale·q·kᵀ)·v for q [batch, Tq, D], k [batch, Tk, D], v [batch, Tk, Dv]
 * (causal as in softmaxRef; scale defaults to 1/√D).
 */
export function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  batch: number,
  Tq: number,
  Tk: number,
  D: number,
  Dv: number,
  opts: SoftmaxRefOptions = {},
): Float64Array {
  const scores = matmulRef(q, k, batch, Tq, D, Tk, true);
  const p = softmaxRef(scores, [batch, Tq, Tk], { ...opts, scale: opts.scale ?? 1 / Math.sqrt(D) });
  return matmulRef(p, v, batch, Tq, Tk, Dv);
}
