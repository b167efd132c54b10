// Reverse-mode autograd. Each op that sees an input with requiresGrad records a GradNode on its
// output: the inputs and a closure mapping the output's gradient to theirs. `backward` walks the
// graph in reverse topological order and accumulates into `.grad` of the leaves. Intermediate
// tensors that closures capture stay alive while the enclosing tidy() scope does, so the usual
// pattern is: tidy(() => { const loss = f(); backward(loss); opt.step(); }).
import type { Engine } from '../gpu/engine.js';
import { ArdError } from '../util/errors.js';
// elementwise.ts imports record() from here: an import cycle, safe because neither module calls
// into the other while it is being evaluated (only from functions, which run later) and every
// export of this module is a hoisted function declaration.
import { clone, map, ones, zeros } from './ops/elementwise.js';
import { keep } from './scope.js';
import { Tensor, shapeStr } from './tensor.js';

export interface GradNode {
  op: string;
  inputs: readonly Tensor[];
  /** Gradients for each input (null where the input takes none). Runs with grad recording off. */
  backward: (grad: Tensor) => readonly (Tensor | null | undefined)[];
  /**
   * For a one-input view op whose input gradient is g placed in a region of zeros (slice): adds g
   * into that region of `acc`, the input's whole gradient, in place. backward() uses it instead of
   * `backward`, so k slices of one tensor cost one buffer and k region adds, not k full-size fills.
   */
  addInto?: (acc: Tensor, grad: Tensor) => void;
}

/** Attach a node to `out` if grad recording is on and any input wants a gradient. */
export function record(out: Tensor, op: string, inputs: readonly Tensor[], backward: GradNode['backward'], addInto?: GradNode['addInto']): Tensor {
  if (!out.engine.gradEnabled || !inputs.some((t) => t.requiresGrad)) return out;
  out.requiresGrad = true;
  out.node = addInto ? { op, inputs, backward, addInto } : { op, inputs, backward };
  return out;
}

export function noGrad<T>(engine: Engine, fn: () => T): T {
  return engine.noGradScope(fn);
}

/** Mark a tensor as a trainable leaf. */
export function param(t: Tensor, name?: string): Tensor {
  t.requiresGrad = true;
  t.node = null;
  if (name) t.name = name;
  return t;
}

/** The sum of two gradients of one tensor, in the first one's dtype. */
function sumGrads(a: Tensor, b: Tensor): Tensor {
  return map([a, b], 'a + b', { name: 'grad_accumulate', out: a.dtype });
}

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<number>();
  // iterative DFS: model graphs are deep enough to overflow recursion
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root.id);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [t, i] = top;
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const child = inputs[i]!;
      if (child.requiresGrad && !seen.has(child.id)) {
        seen.add(child.id);
        stack.push([child, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order.reverse();
}

/**
 * Backpropagate from `root` (a scalar unless `grad` is given). Leaf gradients accumulate into
 * `.grad` (kept outside any scope); the graph's nodes are released afterwards.
 */
export function backward(root: Tensor, grad?: Tensor): void {
  const engine = root.engine;
  if (!root.requiresGrad) throw new ArdError(`backward(): ${root} does not require grad (no parameter reached it)`);
  if (!grad && root.size !== 1) throw new ArdError(`backward(): root ${shapeStr(root.shape)} is not a scalar; pass its gradient`);
  engine.noGradScope(() => {
    const order = topoOrder(root);
    const grads = new Map<number, Tensor>();
    // sums made here belong to this pass alone: a leaf can keep one without copying it
    const sums = new Set<Tensor>();
    grads.set(root.id, grad ?? ones(engine, root.shape));
    for (const t of order) {
      const g = grads.get(t.id);
      if (!g) continue;
      if (!t.node) {
        // a leaf: accumulate
        if (t.grad) {
          const sum = sumGrads(t.grad, g);
          t.grad.dispose();
          t.grad = keep(sum);
        } else {
          // else a copy: the same gradient tensor may flow to several leaves (or be the caller's)
          t.grad = keep(sums.has(g) ? g : clone(g));
        }
        continue;
      }
      sums.delete(g); // an op's backward may pass its gradient on unchanged (to several inputs)
      const into = t.node.addInto;
      if (into) {
        const inp = t.node.inputs[0]!;
        if (!inp.requiresGrad) continue;
        // accumulate in place into a buffer this pass owns (a copy of what arrived before, if anything)
        let acc = grads.get(inp.id);
        if (!acc || !sums.has(acc)) {
          acc = acc ? clone(acc) : zeros(engine, inp.shape, g.dtype);
          sums.add(acc);
          grads.set(inp.id, acc);
        }
        into(acc, g);
        continue;
      }
      const gin = t.node.backward(g);
      t.node.inputs.forEach((inp, i) => {
        const gi = gin[i];
        if (!gi || !inp.requiresGrad) return;
        if (gi.shape.length !== inp.shape.length || gi.shape.some((d, k) => d !== inp.shape[k])) {
          throw new ArdError(`autograd bug in ${t.node!.op}: gradient ${shapeStr(gi.shape)} for input ${shapeStr(inp.shape)}`);
        }
        const prev = grads.get(inp.id);
        if (!prev) grads.set(inp.id, gi);
        else {
          const s = sumGrads(prev, gi);
          sums.add(s);
          grads.set(inp.id, s);
        }
      });
    }
    for (const t of order) if (t.node) t.node = null;
  });
}

/** Clear `.grad` of the given parameters (disposing the tensors). */
export function zeroGrad(params: readonly Tensor[]): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}
