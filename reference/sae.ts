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

/** A value and a bound on how far an f32 computation of it (in any summation order) can be from it. */
export interface Bounded {
  value: Float64Array;
  err: Float64Array;
}

/**
 * One SAE training step's loss and gradients (src/sae/model.ts loss: Top-K codes given by the caller,
 * AuxK, mse + α·‖e − ê‖²/‖e‖², then the decoder gradient's projection), in f64 from the f32 inputs,
 * with a first-order running error bound of the f32 computation: a sum of n terms adds
 * (n + 1)·u·Σ|terms| (its additions and the products' roundings, any order) to the terms' own
 * bounds carried through (|a|·err(b) + |b|·err(a) for a product, err(a)/|b| + |a|·err(b)/b² for a
 * quotient), u = 2^-24. Codes come from idx [B, k + kAux] (the AuxK ones already mapped to latents).
 */
export function saeStepRef(o: {
  x: Float32Array; W_enc: Float32Array; b_enc: Float32Array; W_dec: Float32Array; b_dec: Float32Array;
  idx: Int32Array; B: number; d: number; m: number; k: number; kAux: number; alpha: number;
}): { loss: Bounded; pre: Bounded; dW_enc: Bounded; db_enc: Bounded; dW_dec: Bounded; db_dec: Bounded } {
  const { x, W_enc, b_enc, W_dec, b_dec, idx, B, d, m, k, kAux, alpha } = o;
  const u = 2 ** -24;
  const kTot = k + kAux;
  const mk = (n: number): Bounded => ({ value: new Float64Array(n), err: new Float64Array(n) });
  // xc = x − b_dec (one rounding)
  const xc = mk(B * d);
  for (let b = 0; b < B; b++) for (let c = 0; c < d; c++) {
    const v = x[b * d + c]! - b_dec[c]!;
    xc.value[b * d + c] = v;
    xc.err[b * d + c] = u * Math.abs(v);
  }
  // pre-activations of the selected codes, z = relu(pre)
  const pre = mk(B * kTot);
  for (let e = 0; e < B * kTot; e++) {
    const b = Math.floor(e / kTot), j = idx[e]!;
    let v = b_enc[j]!, a = Math.abs(b_enc[j]!), ec = 0;
    for (let c = 0; c < d; c++) {
      const w = W_enc[c * m + j]!;
      v += xc.value[b * d + c]! * w;
      a += Math.abs(xc.value[b * d + c]! * w);
      ec += Math.abs(w) * xc.err[b * d + c]!;
    }
    pre.value[e] = v;
    pre.err[e] = ec + (d + 2) * u * a;
  }
  const z = (e: number) => Math.max(0, pre.value[e]!);
  const ez = (e: number) => (pre.value[e]! > 0 ? pre.err[e]! : 0);
  // x̂ = b_dec + Σ_{s<k} z·W_dec[j], ê = Σ_{s≥k} z·W_dec[j]
  const decode = (lo: number, hi: number, bias: boolean): Bounded => {
    const out = mk(B * d);
    for (let b = 0; b < B; b++) for (let c = 0; c < d; c++) {
      let v = bias ? b_dec[c]! : 0, a = Math.abs(v), ee = 0;
      for (let s = lo; s < hi; s++) {
        const e = b * kTot + s, w = W_dec[idx[e]! * d + c]!;
        v += z(e) * w;
        a += Math.abs(z(e) * w);
        ee += Math.abs(w) * ez(e);
      }
      out.value[b * d + c] = v;
      out.err[b * d + c] = ee + (hi - lo + 2) * u * a;
    }
    return out;
  };
  const xhat = decode(0, k, true);
  const ehat = kAux ? decode(k, kTot, false) : null;
  // r = x − x̂, t = r − ê; sse = Σ r², auxSum = Σ t²
  const r = mk(B * d), t = mk(B * d);
  let sse = 0, eSse = 0, aux = 0, eAux = 0;
  for (let i = 0; i < B * d; i++) {
    const rv = x[i]! - xhat.value[i]!;
    r.value[i] = rv;
    r.err[i] = xhat.err[i]! + u * Math.abs(rv);
    sse += rv * rv;
    eSse += 2 * Math.abs(rv) * r.err[i]!;
    if (ehat) {
      const tv = rv - ehat.value[i]!;
      t.value[i] = tv;
      t.err[i] = r.err[i]! + ehat.err[i]! + u * Math.abs(tv);
      aux += tv * tv;
      eAux += 2 * Math.abs(tv) * t.err[i]!;
    }
  }
  eSse += (B * d + 1) * u * sse;
  eAux += (B * d + 1) * u * aux;
  const n = B * d;
  const loss = mk(1);
  const ratio = ehat ? aux / sse : 0;
  loss.value[0] = sse / n + alpha * ratio;
  loss.err[0] = eSse / n + (ehat ? alpha * (eAux / sse + (aux * eSse) / (sse * sse)) : 0) + 4 * u * loss.value[0]!;
  // gradients of the loss w.r.t. x̂ (−2r/n) and ê (−2α·t/sse)
  const gx = mk(B * d), ge = mk(B * d);
  for (let i = 0; i < n; i++) {
    gx.value[i] = (-2 * r.value[i]!) / n;
    gx.err[i] = (2 * r.err[i]!) / n + 3 * u * Math.abs(gx.value[i]!);
    if (ehat) {
      ge.value[i] = (-2 * alpha * t.value[i]!) / sse;
      ge.err[i] = 2 * alpha * (t.err[i]! / sse + (Math.abs(t.value[i]!) * eSse) / (sse * sse)) + 4 * u * Math.abs(ge.value[i]!);
    }
  }
  // dz = ⟨g, W_dec[j]⟩ (g = gx for the main codes, ge for AuxK) where z > 0
  const dz = mk(B * kTot);
  for (let e = 0; e < B * kTot; e++) {
    if (!(pre.value[e]! > 0)) continue;
    const b = Math.floor(e / kTot), j = idx[e]!, g = e % kTot < k ? gx : ge;
    let v = 0, a = 0, ee = 0;
    for (let c = 0; c < d; c++) {
      const w = W_dec[j * d + c]!;
      v += g.value[b * d + c]! * w;
      a += Math.abs(g.value[b * d + c]! * w);
      ee += Math.abs(w) * g.err[b * d + c]!;
    }
    dz.value[e] = v;
    dz.err[e] = ee + (d + 2) * u * a;
  }
  // per-latent sums: dW_dec[j] = Σ z·g[b], dW_enc[:, j] = Σ dz·xc[b], db_enc[j] = Σ dz
  const dW_dec = mk(m * d), dWencT = mk(m * d), db_enc = mk(m);
  const absDec = new Float64Array(m * d), absEnc = new Float64Array(m * d), absB = new Float64Array(m);
  const count = new Float64Array(m);
  for (let e = 0; e < B * kTot; e++) {
    if (!(pre.value[e]! > 0)) continue;
    const b = Math.floor(e / kTot), j = idx[e]!, g = e % kTot < k ? gx : ge;
    count[j]!++;
    const zv = z(e), zE = ez(e), dv = dz.value[e]!, dE = dz.err[e]!;
    db_enc.value[j] += dv;
    db_enc.err[j] += dE;
    absB[j] += Math.abs(dv);
    for (let c = 0; c < d; c++) {
      const i = j * d + c, gv = g.value[b * d + c]!, xv = xc.value[b * d + c]!;
      dW_dec.value[i] += zv * gv;
      dW_dec.err[i] += Math.abs(zv) * g.err[b * d + c]! + Math.abs(gv) * zE;
      absDec[i] += Math.abs(zv * gv);
      dWencT.value[i] += dv * xv;
      dWencT.err[i] += Math.abs(dv) * xc.err[b * d + c]! + Math.abs(xv) * dE;
      absEnc[i] += Math.abs(dv * xv);
    }
  }
  // (+3: the product's rounding, and adding the main and AuxK ranges' partial results)
  for (let j = 0; j < m; j++) {
    db_enc.err[j] += (count[j]! + 3) * u * absB[j]!;
    for (let c = 0; c < d; c++) {
      dW_dec.err[j * d + c] += (count[j]! + 3) * u * absDec[j * d + c]!;
      dWencT.err[j * d + c] += (count[j]! + 3) * u * absEnc[j * d + c]!;
    }
  }
  const dW_enc = mk(d * m);
  for (let j = 0; j < m; j++) for (let c = 0; c < d; c++) {
    dW_enc.value[c * m + j] = dWencT.value[j * d + c]!;
    dW_enc.err[c * m + j] = dWencT.err[j * d + c]!;
  }
  // db_dec = Σ_b gx[b] (decoder bias) − W_enc·db_enc (through x − b_dec)
  const db_dec = mk(d);
  for (let c = 0; c < d; c++) {
    let v1 = 0, a1 = 0, e1 = 0;
    for (let b = 0; b < B; b++) {
      v1 += gx.value[b * d + c]!;
      a1 += Math.abs(gx.value[b * d + c]!);
      e1 += gx.err[b * d + c]!;
    }
    let v2 = 0, a2 = 0, e2 = 0;
    for (let j = 0; j < m; j++) {
      const w = W_enc[c * m + j]!;
      v2 -= w * db_enc.value[j]!;
      a2 += Math.abs(w * db_enc.value[j]!);
      e2 += Math.abs(w) * db_enc.err[j]!;
    }
    db_dec.value[c] = v1 + v2;
    db_dec.err[c] = e1 + (B + 1) * u * a1 + e2 + (m + 2) * u * a2 + u * Math.abs(v1 + v2);
  }
  // the decoder gradient's projection: g[j] −= ⟨g[j], w[j]⟩·w[j]
  for (let j = 0; j < m; j++) {
    let p = 0, a = 0, ep = 0;
    for (let c = 0; c < d; c++) {
      const i = j * d + c, w = W_dec[i]!;
      p += dW_dec.value[i]! * w;
      a += Math.abs(dW_dec.value[i]! * w);
      ep += Math.abs(w) * dW_dec.err[i]!;
    }
    ep += (d + 2) * u * a;
    for (let c = 0; c < d; c++) {
      const i = j * d + c, w = W_dec[i]!, g = dW_dec.value[i]!;
      dW_dec.value[i] = g - p * w;
      dW_dec.err[i] += Math.abs(w) * ep + 3 * u * (Math.abs(g) + Math.abs(p * w));
    }
  }
  return { loss, pre, dW_enc, db_enc, dW_dec, db_dec };
}
