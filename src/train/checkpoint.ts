// A training run's files in its work directory: the checkpoint (weights, AdamW state, step and
// the exported weights' running average), and the weights a second stage starts from.
import * as path from 'node:path';
import type { Engine } from '../gpu/engine.js';
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import type { AdamW, WeightAverage } from '../tensor/optim.js';
import type { Tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import type { Weights } from './dims.js';

/** The checkpoint's file name in the work directory. */
export const CKPT = 'checkpoint.safetensors';

/** A run's files in its work directory (beside them: the log-mel caches). */
export interface RunFiles {
  /** run.json: the run's settings (RunSpec). */
  spec: string;
  /** The checkpoint: see saveCheckpoint. */
  checkpoint: string;
  /** loss.jsonl: one StepRecord per step. */
  log: string;
  /** tokenizer.json, made once per run. */
  tokenizer: string;
}

export function runFiles(work: string): RunFiles {
  return { spec: path.join(work, 'run.json'), checkpoint: path.join(work, CKPT), log: path.join(work, 'loss.jsonl'), tokenizer: path.join(work, 'tokenizer.json') };
}

/** AdamW instances, each over a named group of parameters (the groups differ in learning rate). */
export interface OptGroup {
  opt: AdamW;
  names: string[];
  /** Learning-rate multiplier of the group. */
  scale: number;
}

/** The running average of the exported weights (--ema, --average-from) and the names it covers. */
export interface Averaged {
  avg: WeightAverage;
  names: string[];
}

/** Writes the checkpoint: the trainable weights, each AdamW group's moments and step counts, the weight average, the step and the training time so far. */
export async function saveCheckpoint(file: string, step: number, totalMs: number, params: Map<string, Tensor>, groups: readonly OptGroup[], averaged: Averaged | null): Promise<void> {
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of params) tensors[`param.${name}`] = { dtype: 'F32', shape: [...t.shape], data: await t.toFloat32() };
  const avgMeta: Record<string, string> = {};
  if (averaged) {
    const st = await averaged.avg.state();
    averaged.names.forEach((n, i) => (tensors[`average.${n}`] = { dtype: 'F32', shape: [...params.get(n)!.shape], data: st.buffers[i]! }));
    avgMeta.averageUpdates = String(st.updates);
  }
  const steps: Record<string, number> = {};
  for (const g of groups) {
    const st = await g.opt.state();
    g.names.forEach((n, i) => {
      steps[n] = st.steps[i]!;
      for (const buf of ['m', 'v'] as const) {
        const a = st.buffers[buf]![i];
        if (a) tensors[`adam.${buf}.${n}`] = { dtype: 'F32', shape: [a.length], data: a };
      }
    });
  }
  writeSafetensors(file, tensors, { step: String(step), totalMs: String(Math.round(totalMs)), optimizer: JSON.stringify({ kind: 'adamw', steps }), ...avgMeta });
}

/** Restores the checkpoint; `averageAt(step)` makes the weight average the run has at that step, if any. */
export async function loadCheckpoint(
  engine: Engine,
  file: string,
  params: Map<string, Tensor>,
  groups: readonly OptGroup[],
  averageAt: (step: number) => Averaged | null,
): Promise<{ step: number; totalMs: number; averaged: Averaged | null }> {
  const st = openSafetensors(file);
  try {
    const step = Number(st.metadata.step);
    const averaged = averageAt(step);
    if (averaged) {
      const missing = averaged.names.find((n) => !st.tensors.has(`average.${n}`));
      if (missing !== undefined || st.metadata.averageUpdates === undefined) throw new ArdError(`${file}: no weight average in the checkpoint`);
      averaged.avg.loadState({ updates: Number(st.metadata.averageUpdates), buffers: averaged.names.map((n) => st.readFloat32(`average.${n}`)) });
    }
    readInto(engine, st, file, params, (n) => `param.${n}`, ' (a checkpoint of another model?)');
    const meta = JSON.parse(st.metadata.optimizer ?? 'null') as { kind: 'adamw'; steps: Record<string, number> } | null;
    if (!meta || typeof meta.steps !== 'object') throw new ArdError(`${file}: no optimizer state`);
    for (const g of groups) {
      const buffers: Record<string, (Float32Array | null)[]> = {};
      for (const buf of ['m', 'v']) buffers[buf] = g.names.map((n) => (st.tensors.has(`adam.${buf}.${n}`) ? st.readFloat32(`adam.${buf}.${n}`) : null));
      const o = g.opt;
      g.opt.loadState({
        kind: 'adamw',
        steps: g.names.map((n) => meta.steps[n] ?? 0),
        hyper: { lr: o.lr, beta1: o.betas[0], beta2: o.betas[1], eps: o.eps, weightDecay: o.weightDecay },
        buffers,
      });
    }
    return { step, totalMs: Number(st.metadata.totalMs ?? 0), averaged };
  } finally {
    st.close();
  }
}


/**
 * Copies tensors of an open safetensors file into `targets` (name → tensor), reading each from
 * key keyOf(name): every one must be there with the tensor's size. `hint` ends both errors.
 */
export function readInto(engine: Engine, st: ReturnType<typeof openSafetensors>, file: string, targets: Iterable<[string, Tensor]>, keyOf: (name: string) => string, hint: string): void {
  for (const [name, t] of targets) {
    const key = keyOf(name);
    if (!st.tensors.has(key)) throw new ArdError(`${file}: no tensor ${key}${hint}`);
    const data = st.readFloat32(key);
    if (data.length !== t.size) throw new ArdError(`${file}: ${key} has ${data.length} values, the model needs ${t.size}${hint}`);
    engine.write(t.buffer, t.offset * 4, data);
  }
}

/**
 * Overwrites `w` (the model's tensors; training-only ones are left alone) with an exported model's.
 * An audio encoder deeper than the exported one (--dims '{"encLayers":…}') grows: its extra layers
 * come after the exported ones, freshly initialised but with both residual outputs (attention
 * out_proj, fc2) zeroed, so each starts as the identity and the grown model computes exactly what
 * the exported one did. Returns how many encoder layers were added.
 */
export function loadInitWeights(engine: Engine, w: Weights, file: string): number {
  const st = openSafetensors(file);
  try {
    const count = (has: (i: number) => boolean) => {
      let n = 0;
      while (has(n)) n++;
      return n;
    };
    const have = count((i) => st.tensors.has(`audio_tower.layers.${i}.fc1.weight`));
    const want = count((i) => w.has(`audio_tower.layers.${i}.fc1.weight`));
    const decFile = count((i) => st.tensors.has(`language_model.model.layers.${i}.mlp.up_proj.weight`));
    const decWant = count((i) => w.has(`language_model.model.layers.${i}.mlp.up_proj.weight`));
    // layers the model lacks would be dropped silently: a shallower model is not a continuation
    if (have > want || decFile > decWant) {
      throw new ArdError(`${file}: ${have > want ? `${have} audio encoder layers` : `${decFile} decoder layers`}, more than the model being trained has (${have > want ? want : decWant}) (a model of other dims?)`);
    }
    const layerOf = (name: string) => Number(/^audio_tower\.layers\.(\d+)\./.exec(name)?.[1] ?? -1);
    // with no encoder layer in the file at all this is not a shallower model of ours: nothing grows
    const grows = (name: string) => have > 0 && layerOf(name) >= have;
    readInto(engine, st, file, [...w].filter(([name]) => !name.startsWith('aux.') && !grows(name)), (n) => n, ' (a model of other dims?)');
    const added = new Set<number>();
    for (const [name, t] of w) {
      if (!grows(name)) continue;
      added.add(layerOf(name));
      if (/\.(self_attn\.out_proj|fc2)\.(weight|bias)$/.test(name)) engine.write(t.buffer, t.offset * 4, new Float32Array(t.size));
    }
    return added.size;
  } finally {
    st.close();
  }
}
