// f64 reference of the fused attention kernel (kernels/attention.wgsl, ops/nn.ts scaledDotProductAttention
// under the flash variant), with the error bound an f32 implementation of it must meet. Nothing here
// touches the GPU.

export interface AttentionDims {
  /** Batch entries (merged lead dims), query heads, kv heads, queries, keys, head dims. */
  B: number;
  H: number;
  Hkv: number;
  Tq: number;
  Tk: number;
  D: number;
  Dv: number;
}

export interface AttentionRefOptions {
  causal?: boolean;
  /** Query t sees keys j ≤ t + causalOffset (default Tk − Tq). */
  causalOffset?: number;
  /** Default 1/√D. */
  scale?: number;
  /** Split-K with this many key chunks (kernels/attention.wgsl SPLIT + attention_combine.wgsl): a looser bound. */
  splits?: number;
}

export interface AttentionRefResult {
  /** softmax(scale·q·kᵀ + mask)·v, dense [B, H, Tq, Dv] (rows that see no key: 0). */
  out: Float64Array;
  /**
   * Per output element, the largest |error| an implementation may have that computes in f32 with a
   * running max (any tiling), WGSL's exp accuracy and division accuracy, and stores to `outDtype`.
   */
  bound: Float64Array;
}

const U32 = 2 ** -24; // f32 unit roundoff
const ULP32 = 2 ** -23; // one f32 ulp, relative to the value, at most
const U16 = 2 ** -11; // f16 unit roundoff

/**
 * q [B, H, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv], dense (the values as stored: f16 inputs already
 * rounded). Query head h uses kv head ⌊h / (H / Hkv)⌋.
 *
 * The bound, per output element (row i, column c), to first order with a 1.001 factor for products of
 * (1 + δ) terms: with A_j = scale·Σ_d |q_d k_jd| and M = Σ_j w_j·|v_jc| (w the exact weights),
 *   · scores: q·scale rounded once, then a D-term dot product in any order: |δs_j| ≤ (D + 1)·u·A_j ≤ E;
 *     moving every score by ≤ E moves each weight by a factor within e^{±2E};
 *   · exp (WGSL: 3 + 2|x| ulp for f32): each exp(s_j − m) has relative error ≤ (3 + 2R)·ulp, R the spread
 *     of the row's visible scores (plus 2E); it enters a weight through numerator and sum: twice. The
 *     running-max rescale factors multiply the sum and the accumulators alike, so their errors cancel;
 *   · sums: the weight sum and the weighted sum of v each add ≤ Tk terms and ≤ Tk / 8 rescales (tiles of
 *     ≥ 8 keys): ≤ (Tk + Tk/8 + 2)·u each; 1 / sum (WGSL: 2.5 ulp) and the final product: 6u;
 *   · underflow of exp to subnormals: ≤ 2^-126 absolute per key;
 *   · an f16 output: |o|·2^-11 + 2^-25 (subnormals) more.
 * Split-K with S chunks adds, for a key's weight: its chunk's combine factor exp(m_s − M) (3 ulp; its
 * |x| and the chunk's own exps together span ≤ R, which the 2R term counts already) and one more
 * partial tile per chunk (≤ S more rescales, 3 ulp each): 2·(3 + 3S)·ulp; and for each of the two sums
 * ≤ S more rescales, S products f_s·a_s and S − 1 more additions: 2·3S·u.
 */
export function attentionBoundRef(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dims: AttentionDims, opts: AttentionRefOptions = {}, outDtype: 'f32' | 'f16' = 'f32'): AttentionRefResult {
  const { B, H, Hkv, Tq, Tk, D, Dv } = dims;
  const rep = H / Hkv;
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const offset = opts.causalOffset ?? Tk - Tq;
  const out = new Float64Array(B * H * Tq * Dv);
  const bound = new Float64Array(out.length);
  const s = new Float64Array(Tk);
  const a = new Float64Array(Tk);
  const w = new Float64Array(Tk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / rep);
      const kb = (b * Hkv + kvh) * Tk;
      for (let t = 0; t < Tq; t++) {
        const qo = ((b * H + h) * Tq + t) * D;
        const oo = ((b * H + h) * Tq + t) * Dv;
        const len = opts.causal ? Math.max(0, Math.min(Tk, t + offset + 1)) : Tk;
        if (len === 0) continue; // no key: 0, exactly
        let m = -Infinity;
        let lo = Infinity;
        let E = 0;
        for (let j = 0; j < len; j++) {
          let dot = 0;
          let abs = 0;
          for (let d = 0; d < D; d++) {
            const x = q[qo + d]! * k[(kb + j) * D + d]!;
            dot += x;
            abs += Math.abs(x);
          }
          s[j] = scale * dot;
          a[j] = Math.abs(scale) * abs;
          m = Math.max(m, s[j]!);
          lo = Math.min(lo, s[j]!);
          E = Math.max(E, (D + 1) * U32 * a[j]!);
        }
        let sum = 0;
        for (let j = 0; j < len; j++) sum += (w[j] = Math.exp(s[j]! - m));
        for (let j = 0; j < len; j++) w[j] = w[j]! / sum;
        const R = m - lo + 2 * E;
        const S = opts.splits ?? 0;
        const split = S > 0 ? 2 * (3 + 3 * S) * ULP32 + 2 * 3 * S * U32 : 0;
        const rel = Math.expm1(2 * E) + 2 * (3 + 2 * R) * ULP32 + 2 * (len + Math.ceil(len / 8) + 2) * U32 + 6 * U32 + split;
        for (let c = 0; c < Dv; c++) {
          let o = 0;
          let M = 0;
          let vmax = 0;
          for (let j = 0; j < len; j++) {
            const vj = v[(kb + j) * Dv + c]!;
            o += w[j]! * vj;
            M += w[j]! * Math.abs(vj);
            vmax = Math.max(vmax, Math.abs(vj));
          }
          out[oo + c] = o;
          bound[oo + c] = 1.001 * (M * rel + len * 2 ** -126 * vmax * 2) + (outDtype === 'f16' ? Math.abs(o) * U16 * 1.001 + 2 ** -25 : 0);
        }
      }
    }
  return { out, bound };
}
