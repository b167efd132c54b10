// Shape arithmetic shared by the references: row-major flat arrays, as the ops lay tensors out.

/** Product of the dimensions (1 for a scalar's empty shape). */
export function prod(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A tensor seen as `rows` rows of its last axis, `n` long. */
export function lastAxis(shape: readonly number[]): { rows: number; n: number } {
  const n = shape[shape.length - 1] ?? 1;
  const total = prod(shape);
  return { rows: n === 0 ? 0 : total / n, n };
}

/** Row-major (contiguous) strides of `shape`. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** The multi-index of flat position `i` in `shape`. */
export function unravel(i: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    out[d] = i % shape[d]!;
    i = Math.floor(i / shape[d]!);
  }
  return out;
}

/** The flat position of multi-index `p` under strides `st`. */
export function ravel(p: readonly number[], st: readonly number[]): number {
  return p.reduce((a, v, d) => a + v * st[d]!, 0);
}
