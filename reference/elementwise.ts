// f64 references of the elementwise family's functions (kernels/elementwise.wgsl, ops/elementwise.ts)
// that JavaScript's Math lacks. The matmul family's fused activations use them too.

/** The error function: Taylor series for |x| < 3, erfc's continued fraction (Lentz) beyond; ~1e-15. */
export function erf(x: number): number {
  const t = Math.abs(x);
  if (t < 3) {
    let sum = x;
    let term = x;
    for (let n = 1; n < 100; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = t;
  let c = t;
  let d = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    d = 1 / (t + an * d);
    c = t + an / c;
    f *= c * d;
  }
  const erfc = Math.exp(-t * t) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

export function sigmoidRef(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** Exact (erf) GELU, as torch's default. */
export function geluRef(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

export function siluRef(x: number): number {
  return x * sigmoidRef(x);
}
