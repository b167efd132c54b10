// Residual-stream hooks: the one API behind activation capture and steering.
//
//   const h = model.hooks.add({ where: 'decoder', layer: 5, fn: (resid, ctx) => { ... } });
//   ...
//   h.remove();
//
// `fn` runs synchronously during the forward pass, right after layer `layer` (0-based) has written
// its output: `resid` is the residual stream [rows, d] of that layer at the rows being computed
// (every prompt position during prefill, one row per generated token afterwards; for the encoder,
// the audio frames of one window). It may
//   - read it: `keep(resid)` (or a `clone` of it) to hold it past the call — the caller then owns
//     and disposes it; tensors the hook creates and does not return are freed with the step,
//   - replace it: return a tensor of the same shape and dtype (e.g. `add(resid, v)`), which flows
//     into the next layer (and, for the decoder, into the KV cache of every later layer).
// Hooks on one site run in the order they were added, each seeing the previous one's result.
import type { Tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';

export type HookSite = 'decoder' | 'encoder';

export interface HookContext {
  where: HookSite;
  layer: number;
  /** Absolute position of the first row (decoder: sequence position; encoder: frame after the convs). */
  start: number;
  /** Rows in `resid` (positions start … start + rows − 1). */
  rows: number;
  /**
   * Decoder: 0 for a prompt/prefill pass, k ≥ 1 for the pass that consumes the k-th generated token.
   * Encoder: always 0.
   */
  step: number;
  /** Encoder: which audio window of the clip (0-based); decoder: 0. */
  window: number;
  /**
   * Decoder: which sequence of a batched generation (generateBatch: the prompt's index) this row
   * belongs to; 0 outside a batch. Absent for the encoder.
   */
  sequence?: number;
}

export type HookFn = (resid: Tensor, ctx: HookContext) => Tensor | void | undefined;

export interface HookSpec {
  layer: number;
  /** Default 'decoder'. */
  where?: HookSite;
  fn: HookFn;
}

export interface HookHandle {
  remove(): void;
}

interface Entry {
  id: number;
  fn: HookFn;
}

export class Hooks {
  private sites = new Map<string, Entry[]>();
  private nextId = 1;

  /** @param layers how many layers each site has (hooks on other layers are rejected). */
  constructor(private readonly layers: Readonly<Record<HookSite, number>>) {}

  add(spec: HookSpec): HookHandle {
    const where = spec.where ?? 'decoder';
    const n = this.layers[where];
    if (n === undefined) throw new ArdError(`hooks: unknown site '${String(where)}' (use 'decoder' or 'encoder')`);
    if (!Number.isInteger(spec.layer) || spec.layer < 0 || spec.layer >= n) {
      throw new ArdError(`hooks: ${where} layer ${spec.layer} out of range (the model has ${n} ${where} layers, 0–${n - 1})`);
    }
    if (typeof spec.fn !== 'function') throw new ArdError('hooks: fn must be a function');
    const key = `${where}/${spec.layer}`;
    const list = this.sites.get(key) ?? [];
    const id = this.nextId++;
    list.push({ id, fn: spec.fn });
    this.sites.set(key, list);
    let removed = false;
    return {
      remove: () => {
        if (removed) return;
        removed = true;
        const cur = this.sites.get(key);
        if (!cur) return;
        const rest = cur.filter((e) => e.id !== id);
        if (rest.length) this.sites.set(key, rest);
        else this.sites.delete(key);
      },
    };
  }

  /** Whether any hook is registered at this site (lets the forward skip work). */
  has(where: HookSite, layer: number): boolean {
    return this.sites.has(`${where}/${layer}`);
  }

  get size(): number {
    let n = 0;
    for (const l of this.sites.values()) n += l.length;
    return n;
  }

  clear(): void {
    this.sites.clear();
  }

  /** Runs the hooks of one site; returns the (possibly replaced) residual. */
  run(resid: Tensor, ctx: HookContext): Tensor {
    const list = this.sites.get(`${ctx.where}/${ctx.layer}`);
    if (!list) return resid;
    let x = resid;
    for (const e of [...list]) {
      const y = e.fn(x, ctx);
      if (y === undefined || y === null) continue;
      if (y.shape.length !== x.shape.length || y.shape.some((d, i) => d !== x.shape[i]) || y.dtype !== x.dtype) {
        throw new ArdError(
          `hooks: a ${ctx.where} layer ${ctx.layer} hook returned ${y.dtype}[${y.shape.join(', ')}], expected ${x.dtype}[${x.shape.join(', ')}]`,
        );
      }
      x = y;
    }
    return x;
  }
}
