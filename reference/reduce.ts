// Reference of the reduction family (kernels/reduce.wgsl, ops/reduce.ts), in f64.

/** Reduction of a row-major [outer, L, inner] array along `axis` (argmax/argmin: first index on ties). */
export function reduceRef(x: ArrayLike<number>, shape: number[], axis: number, op: 'sum' | 'max' | 'min' | 'argmax' | 'argmin'): number[] {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const L = shape[axis]!;
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const out: number[] = [];
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      let acc = op === 'sum' ? 0 : op === 'max' || op === 'argmax' ? -Infinity : Infinity;
      let arg = 0;
      for (let j = 0; j < L; j++) {
        const v = Number(x[(o * L + j) * inner + i]);
        if (op === 'sum') acc += v;
        else if ((op === 'max' || op === 'argmax') && v > acc) [acc, arg] = [v, j];
        else if ((op === 'min' || op === 'argmin') && v < acc) [acc, arg] = [v, j];
      }
      out.push(op === 'argmax' || op === 'argmin' ? arg : acc);
    }
  return out;
}
