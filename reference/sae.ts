// Plain TypeScript references of the sparse SAE kernels (kernels/sae.wgsl, kernels/sae_gpu.wgsl),
// tests only. Sums in f64; each also returns the sum of the terms' magnitudes (`mag`), from which a
// test derives how far an f32 sum in any order may be from the exact one.

/**
 * The latent → entries map of columns [lo, hi) of idx [B, kTot]: bucket j is
 * list[rowStart[j] .. rowStart[j + 1]), entries packed as b·1024 + s in ascending order; ids outside
 * [0, m) are left out.
 */
export function csrRef(idx: ArrayLike<number>, B: number, kTot: number, m: number, lo: number, hi: number): { rowStart: Uint32Array; list: Uint32Array } {
  const buckets: number[][] = Array.from({ length: m }, () => []);
  for (let b = 0; b < B; b++) {
    for (let s = lo; s < hi; s++) {
      const j = idx[b * kTot + s]!;
      if (j >= 0 && j < m) buckets[j]!.push(b * 1024 + s);
    }
  }
  const rowStart = new Uint32Array(m + 1);
  const list: number[] = [];
  for (let j = 0; j < m; j++) {
    rowStart[j] = list.length;
    list.push(...buckets[j]!);
  }
  rowStart[m] = list.length;
  return { rowStart, list: Uint32Array.from(list) };
}

/** −W·v, W [d, m] row-major. */
export function matvecNegRef(W: ArrayLike<number>, v: ArrayLike<number>, d: number, m: number): { value: Float64Array; mag: Float64Array } {
  const value = new Float64Array(d);
  const mag = new Float64Array(d);
  for (let c = 0; c < d; c++) {
    let s = 0, a = 0;
    for (let j = 0; j < m; j++) {
      const t = W[c * m + j]! * v[j]!;
      s += t;
      a += Math.abs(t);
    }
    value[c] = -s;
    mag[c] = a;
  }
  return { value, mag };
}

/** dz[b, s] = ⟨G[b], W[idx[b, s]]⟩ for s ∈ [lo, hi) with z > 0 and a valid id, else 0. G [B, d], W [m, d]. */
export function dzRef(z: ArrayLike<number>, idx: ArrayLike<number>, G: ArrayLike<number>, W: ArrayLike<number>, B: number, kTot: number, m: number, d: number, lo: number, hi: number): { value: Float64Array; mag: Float64Array } {
  const value = new Float64Array(B * kTot);
  const mag = new Float64Array(B * kTot);
  for (let b = 0; b < B; b++) {
    for (let s = lo; s < hi; s++) {
      const e = b * kTot + s;
      const j = idx[e]!;
      if (!(z[e]! > 0) || j < 0 || j >= m) continue;
      let v = 0, a = 0;
      for (let c = 0; c < d; c++) {
        const t = G[b * d + c]! * W[j * d + c]!;
        v += t;
        a += Math.abs(t);
      }
      value[e] = v;
      mag[e] = a;
    }
  }
  return { value, mag };
}

/**
 * out[j] = Σ_{(b, s): idx = j, s ∈ [lo, hi)} c·V[b], ob[j] = Σ c, with c = z (decoder) or
 * g·[z > 0] (encoder, g given). V [B, d]; out [m, d].
 */
export function rowsGradRef(z: ArrayLike<number>, g: ArrayLike<number> | null, idx: ArrayLike<number>, V: ArrayLike<number>, B: number, kTot: number, m: number, d: number, lo: number, hi: number): { out: Float64Array; mag: Float64Array; ob: Float64Array; obMag: Float64Array } {
  const out = new Float64Array(m * d);
  const mag = new Float64Array(m * d);
  const ob = new Float64Array(m);
  const obMag = new Float64Array(m);
  for (let b = 0; b < B; b++) {
    for (let s = lo; s < hi; s++) {
      const e = b * kTot + s;
      const j = idx[e]!;
      if (j < 0 || j >= m) continue;
      const c = g ? (z[e]! > 0 ? g[e]! : 0) : z[e]!;
      if (c === 0) continue;
      ob[j] += c;
      obMag[j] += Math.abs(c);
      for (let k = 0; k < d; k++) {
        out[j * d + k] += c * V[b * d + k]!;
        mag[j * d + k] += Math.abs(c * V[b * d + k]!);
      }
    }
  }
  return { out, mag, ob, obMag };
}
