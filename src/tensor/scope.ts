// Scoped freeing, like tf.tidy: tensors created inside `tidy(fn)` are disposed when it returns,
// except those it returns (in an array or object) and those passed to `keep`.
import { Tensor, scopeStack } from './tensor.js';

function collect(value: unknown, out: Set<Tensor>, depth = 0): void {
  if (value instanceof Tensor) out.add(value);
  else if (depth < 4 && Array.isArray(value)) for (const v of value) collect(v, out, depth + 1);
  else if (depth < 4 && value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, depth + 1);
  }
}

export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopeStack.push(scope);
  let result: T | undefined;
  let ok = false;
  try {
    result = fn();
    if (result instanceof Promise) throw new Error('tidy(): fn must be synchronous (await outside, then dispose explicitly)');
    ok = true;
    return result;
  } finally {
    scopeStack.pop();
    const kept = new Set<Tensor>();
    if (ok) collect(result, kept);
    const parent = scopeStack[scopeStack.length - 1];
    for (const t of scope) {
      if (kept.has(t)) parent?.add(t);
      else t.dispose();
    }
  }
}

/** Exempt tensors from every enclosing scope: the caller now owns them. */
export function keep<T extends Tensor | null | undefined>(t: T): T {
  if (t) for (const s of scopeStack) s.delete(t);
  return t;
}

export function disposeAll(...values: unknown[]): void {
  const set = new Set<Tensor>();
  for (const v of values) collect(v, set);
  for (const t of set) t.dispose();
}
