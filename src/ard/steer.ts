// Steering: prove a feature is causal by intervening on it during generation.
//
// A Top-K SAE at decoder layer L reads the residual stream x [rows, d] and decodes codes z as
//   x̂(z) = (W_decᵀ·z + b_dec) / s                     (s = the SAE's inputScale)
// To give feature F the value z'_F while keeping everything the SAE does not explain, the
// residual becomes the decoded edited codes plus the reconstruction error of the original:
//   x' = x̂(z') + (x − x̂(z)) = x + (W_decᵀ·(z' − z)) / s = x + (z'_F − z_F)·W_dec[F] / s
// since z' and z differ only at F (b_dec cancels). Hence
//   mode 'set': x' = x + (value − z_F(x))·W_dec[F]/s, z_F(x) = the Top-K code of F (0 when F is
//               not among the k largest pre-activations)
//   mode 'add': x' = x + value·W_dec[F]/s               (z'_F = z_F + value)
// Re-encoding x' gives z_F = value exactly only when F was active, W_enc[:, F]·W_dec[F] = 1
// (tied weights) and F stays in the top k; for a trained SAE it is close, not equal.
// 'add' with value 0 installs no hook at all, so it reproduces the unsteered run bit for bit.
//
// Positions: 'all' edits every row of the prompt pass and of each generated token's pass;
// 'audio' edits only the audio-placeholder rows of the prompt pass (later tokens see the edit
// through the KV cache of the layers above L).
//
// Audio: like ask, a prompt carries one window of the model's audio window (the first, unless
// `window` picks another); steerCommand with windows 'all' sweeps each window of the clip in turn.
// A file is read a window at a time (src/audio/stream.ts), so memory does not grow with its length.
//
// Baselines: a `direction` u in the spec steers along u instead of W_dec[F]/s, each row moved by
// the norm the feature's edit would give it (x' = x + |c|·‖W_dec[F]/s‖·u); steerExperiment uses it
// to steer the best raw neuron and a random direction beside the feature (baselineDirections).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openClip } from '../audio/stream.js';
import type { WavAudio } from '../audio/wav.js';
import type { Engine } from '../gpu/engine.js';
import type { AudioLLM, AudioWindow } from '../model/audiollm.js';
import { buildChatPrompt, clipOf, type ClipWindows } from '../model/chat.js';
import { generate, generateBatch } from '../model/generate.js';
import type { GenerateOptions } from '../model/generate.js';
import type { HookContext, HookHandle } from '../model/hooks.js';
import { audioWindowSamples, loadAudioLLM } from '../model/load.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { loadSae, saeDigest } from '../sae/load.js';
import type { Sae } from '../sae/types.js';
import { cast, map } from '../tensor/ops/elementwise.js';
import { sum } from '../tensor/ops/reduce.js';
import { keep } from '../tensor/scope.js';
import { Tensor, tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import { readJson, writeJsonAtomic } from '../util/fs.js';
import { contentTokens, stem } from './describe.js';
import { readFeatures } from './rank.js';
import type { FeatureEntry } from './rank.js';
import { bestCandidates, neuronCandidates, randomDirections } from './evaluate.js';
import { clipResidualMeans, readRetrieve } from './retrieve.js';
import { clearFresh, fileDigest, fileStamp, isFresh, markFresh, readCaptureManifest, runPaths, stageInputsKey } from './run.js';
import type { CaptureClip, CaptureManifest } from './run.js';

export type SteerMode = 'add' | 'set';
export type SteerPositions = 'all' | 'audio';

export interface SteeringSpec {
  sae: Sae;
  layer: number;
  feature: number;
  value: number;
  /** Default 'add'. */
  mode?: SteerMode;
  /** Default 'all'. */
  positions?: SteerPositions;
  /** The prompt's token ids (needed for positions 'audio': rows holding the audio placeholder). */
  promptIds?: readonly number[];
  /**
   * A baseline: move each row along this unit vector u [d] instead of W_dec[F]/s, by the norm the
   * feature's intervention would have given that row: x' = x + |c|·‖W_dec[F]/s‖·u, where c is the
   * feature's coefficient for the row (value, or value − z_F(x) for 'set'). Rows the feature would
   * leave alone (c = 0) stay as they are.
   */
  direction?: Float32Array;
}

/**
 * z_F(x) [rows, 1] (f32): feature F's Top-K code for each row of x, in the SAE's normalised units
 * (the post-ReLU pre-activation when F is among the row's k largest, else 0). Taken from the SAE's
 * own encode, so membership of the top k is decided exactly as the SAE decides it.
 */
export function featureActivation(sae: Sae, x: Tensor, feature: number): Tensor {
  checkFeature(sae, feature);
  return sae.engine.noGradScope(() => {
    const x32 = x.dtype === 'f32' ? x : cast(x, 'f32');
    const { values, indices } = sae.encode(x32);
    if (x32 !== x) x32.dispose();
    // indices are < 2^24, so comparing them as f32 is exact
    const picked = map([indices, values], 'select(0.0, b, a == P.alpha)', { name: 'steer_pick', alpha: feature, out: 'f32', ct: 'f32' });
    values.dispose();
    indices.dispose();
    const z = sum(picked, 1, true);
    picked.dispose();
    return z;
  });
}

function checkFeature(sae: Sae, feature: number): void {
  if (!Number.isInteger(feature) || feature < 0 || feature >= sae.m) throw new ArdError(`steer: feature ${feature} is outside the SAE's 0–${sae.m - 1}`);
}

function checkSpec(model: AudioLLM, s: SteeringSpec): { mode: SteerMode; positions: SteerPositions } {
  const mode = s.mode ?? 'add';
  const positions = s.positions ?? 'all';
  if (mode !== 'add' && mode !== 'set') throw new ArdError(`steer: mode '${String(mode)}' must be 'add' or 'set'`);
  if (positions !== 'all' && positions !== 'audio') throw new ArdError(`steer: positions '${String(positions)}' must be 'all' or 'audio'`);
  if (!Number.isFinite(s.value)) throw new ArdError(`steer: value ${s.value} is not a finite number`);
  checkFeature(s.sae, s.feature);
  const d = model.config.text_config.hidden_size;
  if (s.sae.d !== d) throw new ArdError(`steer: the SAE has d = ${s.sae.d} but the model's hidden size is ${d}`);
  const nl = model.decoder.layers.length;
  if (!Number.isInteger(s.layer) || s.layer < 0 || s.layer >= nl) throw new ArdError(`steer: layer ${s.layer} out of range (the model has ${nl} decoder layers, 0–${nl - 1})`);
  if (positions === 'audio' && !s.promptIds) throw new ArdError("steer: positions 'audio' needs the prompt's token ids");
  if (s.direction !== undefined && (!(s.direction instanceof Float32Array) || s.direction.length !== d)) throw new ArdError(`steer: a baseline direction must be a Float32Array of the hidden size ${d}`);
  return { mode, positions };
}

/**
 * Registers the steering hook on the model (decoder layer `layer`); remove() takes it off and
 * frees what it holds. Hooks added before it see the unsteered residual, hooks added after it
 * the steered one.
 */
export function addSteeringHook(model: AudioLLM, spec: SteeringSpec): HookHandle {
  const st = steeringFn(model, spec);
  if (!st) return { remove() {} }; // exactly the unsteered model
  const h = model.hooks.add({ layer: spec.layer, fn: st.fn });
  let removed = false;
  return {
    remove() {
      if (removed) return;
      removed = true;
      h.remove();
      st.dispose();
    },
  };
}

/** The steering hook's function and what it holds (null: add 0, the unsteered model). */
function steeringFn(model: AudioLLM, spec: SteeringSpec): { fn: (resid: Tensor, ctx: HookContext) => Tensor | void; dispose(): void } | null {
  const { mode, positions } = checkSpec(model, spec);
  const { sae, feature, value } = spec;
  if (mode === 'add' && value === 0) return null;
  const engine = model.engine;
  // W_dec[F] / s as a [1, d] row, broadcast over the rows of the residual; for a baseline,
  // u·‖W_dec[F]/s‖ (the norm taken on the GPU, in f32)
  const dir = keep(
    engine.noGradScope(() => {
      const row = sae.decoderRow(feature);
      const out = map([row], 'P.alpha * a', { name: 'steer_dir', alpha: 1 / sae.inputScale, out: 'f32' });
      row.dispose();
      if (!spec.direction) return out;
      const sq = map([out], 'a * a', { name: 'steer_sq', out: 'f32' });
      const nsq = sum(sq, 1, true);
      const u = tensor(engine, spec.direction, [1, spec.direction.length]);
      const base = map([u, nsq], 'a * sqrt(b)', { name: 'steer_base_dir', out: 'f32' });
      for (const t of [out, sq, nsq, u]) t.dispose();
      return base;
    }),
  );
  // a baseline moves by |c| along its direction; the feature by c along W_dec[F]/s
  const stepExpr = spec.direction ? 'select(a, a + abs(b) * c, b != 0.0)' : 'select(a, a + b * c, b != 0.0)';
  const constCoef = mode === 'add' && positions === 'all' ? keep(tensor(engine, [value], [1, 1])) : null;
  let audioMask: Float32Array | null = null;
  if (positions === 'audio') audioMask = Float32Array.from(spec.promptIds!, (id) => (id === model.audioTokenIndex ? 1 : 0));

  const fn = (resid: Tensor, ctx: HookContext): Tensor | void => {
    let mask: Tensor | null = null;
    if (audioMask) {
      if (ctx.step !== 0) return;
      const m = audioMask.subarray(ctx.start, ctx.start + ctx.rows);
      if (m.length !== ctx.rows || !m.some((v) => v !== 0)) return;
      mask = tensor(engine, m, [ctx.rows, 1]);
    }
    // coefficient per row: how far to move along the direction (0 = leave the row alone)
    let coef: Tensor;
    if (mode === 'add') coef = mask ? map([mask], 'P.alpha * a', { name: 'steer_coef', alpha: value }) : constCoef!;
    else {
      const z = featureActivation(sae, resid, feature);
      coef = mask
        ? map([z, mask], 'select(0.0, P.alpha - a, b != 0.0)', { name: 'steer_coef', alpha: value })
        : map([z], 'P.alpha - a', { name: 'steer_coef', alpha: value });
      z.dispose();
    }
    // rows with a zero coefficient are copied untouched (bit for bit)
    const out = map([resid, coef, dir], stepExpr, { name: spec.direction ? 'steer_base' : 'steer', out: resid.dtype });
    if (coef !== constCoef) coef.dispose();
    mask?.dispose();
    return out;
  };
  return {
    fn,
    dispose() {
      dir.dispose();
      constCoef?.dispose();
    },
  };
}

// ---- generation --------------------------------------------------------------------------------

/** An audio file path (WAV, FLAC, Ogg, MP3), 16 kHz mono samples or decoded audio. */
export type SteerAudio = string | Float32Array | WavAudio;

/** A clip encoded once and a question, reused by every generation of a sweep. */
interface Prepared {
  ids: number[];
  feats: Tensor;
  tok: Tokenizer;
  /** The window of the clip the prompt carries, how many the clip has, and its length. */
  window: AudioWindow;
  windows: number;
  duration: number;
}

/**
 * Encodes window `window` (default the first) of the clip (unless `feats` are given: they stay the
 * caller's, and no audio is read) and builds the prompt.
 */
async function prepare(model: AudioLLM, clip: ClipWindows, question: string, tokenizer?: Tokenizer, feats?: Tensor, window = 0): Promise<Prepared> {
  const tok = tokenizer ?? model.tokenizer;
  if (!tok) throw new ArdError(`${model.source}: no tokenizer.json (pass a tokenizer)`);
  const windows = model.windows(clip.length);
  const w = windows[window];
  if (!w) {
    if (!windows.length) throw new ArdError(`steer: a clip of ${clip.length} samples is too short to give an audio token`);
    throw new ArdError(`steer: window ${window} does not exist (the clip has ${windows.length})`);
  }
  // the same prompt as chat.ts askDetailed: one <|AUDIO|> block for the window
  const ids = buildChatPrompt(tok, [w.tokens], question, { audioTokenIndex: model.audioTokenIndex });
  return { ids, feats: feats ?? model.encodeAudio(await clip.window(w.from, w.to)), tok, window: w, windows: windows.length, duration: clip.length / model.frontend.samplingRate };
}

export interface SteerGenOptions {
  maxNewTokens?: number;
  /** Sampling (greedy unless temperature > 0) and its seed. */
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  tokenizer?: Tokenizer;
}

function genOpts(o: SteerGenOptions): GenerateOptions {
  return {
    maxNewTokens: o.maxNewTokens ?? 32,
    ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
    ...(o.topP !== undefined ? { topP: o.topP } : {}),
    ...(o.topK !== undefined ? { topK: o.topK } : {}),
    seed: o.seed ?? 0,
  };
}

export interface SteerAnswer {
  answer: string;
  tokens: number[];
}

async function run(model: AudioLLM, p: Prepared, spec: Omit<SteeringSpec, 'promptIds'> | null, o: SteerGenOptions): Promise<SteerAnswer> {
  const h = spec ? addSteeringHook(model, { ...spec, promptIds: p.ids }) : null;
  try {
    const r = await generate(model, { ids: p.ids, audio: p.feats }, genOpts(o));
    return { answer: p.tok.decode(r.tokens, { skipSpecial: true }), tokens: r.tokens };
  } finally {
    h?.remove();
  }
}

/** Sequences the steering experiment decodes together at most (generateBatch's maxBatch); not per device. */
export const STEER_BATCH = 32;

/** One sequence of a batch: a prepared prompt and its steering (null: unsteered). */
interface SteeredSequence {
  p: Prepared;
  spec: Omit<SteeringSpec, 'promptIds'> | null;
}

/**
 * Steered generations decoded together (generateBatch, at most `maxBatch` at once): sequence i gets
 * its own spec's hook through one dispatcher on ctx.sequence; each answer is what run() gives for
 * that sequence alone. Every spec steers the same layer.
 */
async function runSequences(model: AudioLLM, seqs: readonly SteeredSequence[], o: SteerGenOptions, maxBatch = STEER_BATCH): Promise<SteerAnswer[]> {
  if (seqs.length === 0) return [];
  const layers = new Set(seqs.flatMap((s) => (s.spec ? [s.spec.layer] : [])));
  if (layers.size > 1) throw new ArdError(`steer: one batch steers one layer (got ${[...layers].join(', ')})`);
  const fns: ReturnType<typeof steeringFn>[] = [];
  let h: HookHandle | null = null;
  try {
    for (const s of seqs) fns.push(s.spec ? steeringFn(model, { ...s.spec, promptIds: s.p.ids }) : null);
    const [layer] = layers;
    if (layer !== undefined && fns.some((f) => f)) h = model.hooks.add({ layer, fn: (x, ctx) => fns[ctx.sequence ?? 0]?.fn(x, ctx) });
    const rs = await generateBatch(model, seqs.map((s) => ({ ids: s.p.ids, audio: s.p.feats })), { ...genOpts(o), maxBatch });
    return rs.map((r, i) => ({ answer: seqs[i]!.p.tok.decode(r.tokens, { skipSpecial: true }), tokens: r.tokens }));
  } finally {
    h?.remove();
    for (const f of fns) f?.dispose();
  }
}

/** Several steered generations of one prompt decoded together (runSequences). */
function runMany(model: AudioLLM, p: Prepared, specs: readonly Omit<SteeringSpec, 'promptIds'>[], o: SteerGenOptions): Promise<SteerAnswer[]> {
  return runSequences(model, specs.map((spec) => ({ p, spec })), o);
}

export interface SteerGenerateOptions extends SteerGenOptions {
  model: AudioLLM;
  sae: Sae;
  layer: number;
  feature: number;
  value: number;
  mode?: SteerMode;
  positions?: SteerPositions;
  audio: SteerAudio;
  question: string;
}

/** Asks `question` about `audio` with feature F steered to `value` (see the top of this file). */
export async function steerGenerate(o: SteerGenerateOptions): Promise<SteerAnswer & { promptIds: number[] }> {
  checkSpec(o.model, { ...o, promptIds: [] });
  const clip = await clipOf(o.model, o.audio, 'steer');
  let p: Prepared;
  try {
    p = await prepare(o.model, clip, o.question, o.tokenizer);
  } finally {
    clip.close();
  }
  try {
    const r = await run(o.model, p, o, o);
    return { ...r, promptIds: p.ids };
  } finally {
    p.feats.dispose();
  }
}

export interface SteerSweepOptions extends SteerGenOptions {
  model: AudioLLM;
  sae: Sae;
  layer: number;
  feature: number;
  values: readonly number[];
  mode?: SteerMode;
  positions?: SteerPositions;
  audio: SteerAudio;
  question: string;
  /** Which window of a clip longer than the model's audio window (default 0, the first). */
  window?: number;
}

export interface SteerSweep {
  feature: number;
  name?: string;
  layer: number;
  mode: SteerMode;
  positions: SteerPositions;
  question: string;
  /** The answer with no intervention. */
  baseline: string;
  values: { value: number; answer: string }[];
  /** The window of the clip that was steered (seconds), when the clip has more than one. */
  window?: { index: number; start: number; end: number; of: number; clipSeconds: number };
}

function checkValues(values: readonly number[]): void {
  if (!Array.isArray(values) || values.length === 0) throw new ArdError('steer: no values to sweep');
  for (const v of values) if (!Number.isFinite(v)) throw new ArdError(`steer: value ${v} is not a finite number`);
}

/** One clip, one question, the answer at each value (the audio is encoded once). */
export async function steerSweep(o: SteerSweepOptions): Promise<SteerSweep> {
  checkValues(o.values);
  checkSpec(o.model, { ...o, value: 0, mode: o.mode ?? 'add', positions: o.positions ?? 'all', promptIds: [] });
  const clip = await clipOf(o.model, o.audio, 'steer');
  try {
    return await sweepWindow(o, clip, o.window ?? 0);
  } finally {
    clip.close();
  }
}

/** steerSweep over window `window` of an open clip (its windows are read in order). */
async function sweepWindow(o: Omit<SteerSweepOptions, 'audio' | 'window'>, clip: ClipWindows, window: number): Promise<SteerSweep> {
  const mode = o.mode ?? 'add';
  const positions = o.positions ?? 'all';
  const p = await prepare(o.model, clip, o.question, o.tokenizer, undefined, window);
  try {
    const baseline = await run(o.model, p, null, o);
    // the steered values decoded together, one sequence each (add 0 is the baseline itself)
    const steered = o.values.filter((value) => !(mode === 'add' && value === 0));
    const rs = await runMany(o.model, p, steered.map((value) => ({ sae: o.sae, layer: o.layer, feature: o.feature, value, mode, positions })), o);
    const values: SteerSweep['values'] = o.values.map((value) => ({ value, answer: mode === 'add' && value === 0 ? baseline.answer : rs[steered.indexOf(value)]!.answer }));
    const w = p.windows > 1 ? { window: { index: p.window.index, start: p.window.start, end: p.window.end, of: p.windows, clipSeconds: p.duration } } : {};
    return { feature: o.feature, layer: o.layer, mode, positions, question: o.question, baseline: baseline.answer, values, ...w };
  } finally {
    p.feats.dispose();
  }
}

export interface SteerCommandOptions {
  engine: Engine;
  modelDir: string;
  run: string;
  layer: number;
  feature: number;
  values: readonly number[];
  prompt: string;
  wav: string;
  mode?: SteerMode;
  positions?: SteerPositions;
  maxNewTokens?: number;
  dtype?: 'f32' | 'f16';
  /** A clip longer than the model's audio window: sweep its first window (default) or each. */
  windows?: 'first' | 'all';
  /** The SAE (a file or a SAELens / sparsify folder) instead of RUN/sae-L.safetensors. */
  saeFile?: string;
}

/**
 * `ardgpu steer <wav> --run RUN --layer L --feature F --values … --prompt … [--mode add|set]`:
 * loads the model and RUN/sae-L.safetensors, sweeps (each window of the clip with windows 'all'),
 * frees both. Prints nothing.
 */
export async function steerCommand(o: SteerCommandOptions & { windows: 'all' }): Promise<SteerSweep[]>;
export async function steerCommand(o: SteerCommandOptions): Promise<SteerSweep>;
export async function steerCommand(o: SteerCommandOptions): Promise<SteerSweep | SteerSweep[]> {
  const paths = runPaths(o.run, o.layer);
  const saeFile = o.saeFile ?? paths.sae;
  if (!fs.existsSync(saeFile)) throw new ArdError(o.saeFile === undefined ? `${paths.sae}: no SAE for layer ${o.layer} (train one first)` : `${saeFile}: no such SAE file or folder`);
  if (!fs.existsSync(o.wav)) throw new ArdError(`${o.wav}: no such file`);
  checkValues(o.values);
  // the clip is checked (a long one measured) before the model loads, then read a window at a time
  const clip = await openClip(o.wav, audioWindowSamples(o.modelDir));
  let sae: Sae | null = null;
  let model: AudioLLM | null = null;
  try {
    sae = loadSae(o.engine, saeFile);
    model = await loadAudioLLM(o.engine, o.modelDir, o.dtype ? { dtype: o.dtype } : {});
    const name = featureName(paths.features, o.feature);
    const sweeps: SteerSweep[] = [];
    const count = o.windows === 'all' ? Math.max(1, model.windows(clip.length).length) : 1;
    const so = { model, sae, layer: o.layer, feature: o.feature, values: o.values, mode: o.mode ?? 'add', positions: o.positions ?? 'all', question: o.prompt, maxNewTokens: o.maxNewTokens ?? 32 };
    checkSpec(model, { ...so, value: 0, promptIds: [] });
    for (let window = 0; window < count; window++) {
      const sweep = await sweepWindow(so, clip, window);
      sweeps.push(name ? { ...sweep, name } : sweep);
    }
    return o.windows === 'all' ? sweeps : sweeps[0]!;
  } finally {
    clip.close();
    model?.dispose();
    sae?.dispose();
  }
}

function featureName(file: string, id: number): string | undefined {
  if (!fs.existsSync(file)) return undefined;
  try {
    return readFeatures(file).features.find((f) => f.id === id)?.name;
  } catch {
    return undefined; // a broken features file does not stop a sweep
  }
}

// ---- answers -----------------------------------------------------------------------------------

const OPPOSITE: Record<string, string> = { male: 'female', female: 'male', positive: 'negative', negative: 'positive' };
const NEGATIONS = new Set(['not', 'no', 'never', 'neither', 'nor', 'isnt', 'arent', 'wasnt', 'non']);
const SKIP = new Set(['a', 'an', 'the', 'very', 'clearly', 'definitely']);

/** Canonical words of a text (synonyms mapped: "man" → male, "woman" → female), with negation marks. */
function words(text: string): { canon: string; negated: boolean }[] {
  const ws = text.toLowerCase().replace(/[’']/g, '').split(/[^a-z0-9]+/).filter(Boolean);
  const out: { canon: string; negated: boolean }[] = [];
  for (let i = 0; i < ws.length; i++) {
    let j = i - 1;
    while (j >= 0 && SKIP.has(ws[j]!)) j--;
    out.push({ canon: stem(ws[i]!), negated: j >= 0 && NEGATIONS.has(ws[j]!) });
  }
  return out;
}

/**
 * Does an answer assert `target`? Word-level with synonyms ("a man" says male; "female" does not,
 * being another word), not negated ("not male"), and not also asserting the opposite ("male or
 * female" is no answer).
 */
export function answerSays(answer: string, target: string): boolean {
  const w = words(answer);
  const says = (c: string) => w.some((x) => x.canon === c && !x.negated);
  const tw = targetWords(target);
  if (tw.length > 1) return tw.every(says); // "dog barking": each word, unnegated
  const t = tw[0] ?? stem(target.toLowerCase().trim());
  const opp = OPPOSITE[t];
  return says(t) && !(opp !== undefined && says(opp));
}

/** The canonical words of a target answer ("a man" → [male]); articles and the like dropped. */
function targetWords(target: string): string[] {
  return [...new Set(words(target).map((x) => x.canon).filter((c) => !SKIP.has(c)))];
}

/**
 * The words a feature's name must say to be about the source concept: the target's opposite when
 * it has one (male ↔ female), else the content words of the source label that the target lacks
 * ("neutral speech" toward "happy": neutral, speech).
 */
export function sourceWords(target: string, from?: string): string[] {
  const t = stem(target.toLowerCase().trim());
  const opp = OPPOSITE[t];
  if (opp) return [opp];
  if (!from) return [];
  const tw = new Set(targetWords(target));
  return [...new Set(contentTokens(from).map((x) => x.canon))].filter((c) => !tw.has(c));
}

function sameAnswer(a: string, b: string): boolean {
  const n = (s: string) => s.toLowerCase().replace(/\s+/g, ' ').replace(/[\s.!?,;:]+$/, '').trim();
  return n(a) === n(b);
}

// ---- the gender experiment --------------------------------------------------------------------

export interface ExperimentClip {
  file: string;
  gender?: string | null;
}

export interface SteeringExperimentOptions extends SteerGenOptions {
  model: AudioLLM;
  sae: Sae;
  run: string;
  layer: number;
  /** Clips to steer; those whose gender is the target's opposite are used (all, when it has none). */
  corpusClips: readonly ExperimentClip[];
  /** Relative clip paths are resolved against this folder. */
  corpus?: string;
  /** Default: found by name in RUN/features-L.json (see `strategy`). */
  feature?: number;
  /** Mode for an explicitly given feature (default 'add'). */
  mode?: SteerMode;
  positions?: SteerPositions;
  /** Magnitudes to sweep (default 0, 5, 10, 20, 40). */
  values?: readonly number[];
  /**
   * Read `values` in units of the feature's own scale: its largest clip-mean activation
   * (features-L.json scores.maxMean), so one sweep suits features of any magnitude.
   */
  valuesInFeatureUnits?: boolean;
  /**
   * Clips (of another split) on which the named candidates are compared when the features file
   * names several for the target: each is swept over the other gender's clips among these, and
   * the one with the highest flip rate (then control rate, then rank) is steered on `corpusClips`.
   * Why: features named alike do not steer alike (session 8: of three 'male speech'-like
   * features, raising one flipped every clip, one changed nothing, one gave garbage), and choosing
   * on the clips that are scored would inflate the flip rate.
   */
  selectionClips?: readonly ExperimentClip[];
  /** At most this many candidates are compared on `selectionClips` (default 5, in rank order). */
  maxCandidates?: number;
  question?: string;
  controlQuestion?: string;
  target?: string;
  /**
   * The source concept (a label of the corpus, e.g. "female speech"): names it, and (when the
   * target has no opposite) which features' names are about it (sourceWords).
   */
  from?: string;
  /** The split the scored clips come from (recorded in steering.json). */
  split?: string;
  /** Directions steered like the feature, over the same clips and values, for comparison (see baselineDirections). */
  baselines?: readonly BaselineSpec[];
  /** Sequences decoded together at most (default STEER_BATCH); the answers do not depend on it. */
  batch?: number;
  /** Clip results kept from an interrupted run (steerExperiment keeps them in RUN/.steering.partial.json). */
  resume?: { get(key: string): ExperimentClipResult | undefined; put(key: string, r: ExperimentClipResult): void };
  /**
   * Clip sweeps done of all to do: each compared candidate's on the selection clips, then the
   * scored ones, then each baseline's.
   */
  onProgress?: (done: number, total: number) => void;
}

/** A direction in the residual stream steered in place of the feature's (addSteeringHook's `direction`). */
export interface BaselineSpec {
  kind: 'neuron' | 'random';
  /** Unit vector [d]. */
  direction: Float32Array;
  /** One line: what it is and how it was chosen. */
  description: string;
  /** What steering.json records of it (neuron index and sign, AP, seed, ...). */
  details?: Record<string, unknown>;
}

/** A baseline's outcome over the clips and values the feature was steered with. */
export interface BaselineResult {
  kind: 'neuron' | 'random';
  description: string;
  details: Record<string, unknown>;
  flip_rate: number;
  unchanged_rate: number;
  baseline_target_rate: number;
  clips: number;
  values: { value: number; flipRate: number; answers: string[] }[];
  per_clip: ExperimentClipResult[];
}

/** One named candidate as compared on the selection clips. */
export interface SteeringCandidate {
  feature: number;
  name: string;
  mode: SteerMode;
  flip_rate: number;
  unchanged_rate: number;
  clips: number;
}

export interface ExperimentClipResult {
  file: string;
  baseline: string;
  baseline_says_target: boolean;
  answers: { value: number; answer: string; says_target: boolean }[];
  flipped: boolean;
  flip_value: number | null;
  control: { value: number; baseline: string; answer: string; unchanged: boolean };
}

export interface SteeringResult {
  feature: number;
  name: string | null;
  layer: number;
  mode: SteerMode;
  positions: SteerPositions;
  strategy: string;
  feature_source: string;
  values: number[];
  /** What one unit of the requested magnitudes was (1 unless valuesInFeatureUnits). */
  value_unit: number;
  question: string;
  control_question: string;
  target: string;
  flip_rate: number;
  unchanged_rate: number;
  baseline_target_rate: number;
  clips: number;
  definitions: Record<string, string>;
  per_clip: ExperimentClipResult[];
  /** The candidates compared on the selection clips, when there were several (see selectionClips). */
  selection?: { clips: number; candidates: SteeringCandidate[] };
  /** The source label and split the clips came from, when the experiment was set up by label. */
  from?: string;
  split?: string;
  /** The best raw neuron and a random direction, steered with the feature's norm of change (baselineDirections). */
  baselines?: BaselineResult[];
  baseline_scaling?: string;
  sweeps: {
    feature: number;
    name?: string;
    layer: number;
    question: string;
    target: string;
    mode: SteerMode;
    values: { value: number; flipRate: number; answers: string[] }[];
  }[];
}

export interface GenderChoice {
  feature: number;
  name: string;
  mode: SteerMode;
  values: number[];
  strategy: string;
}

/**
 * The features that could be steered toward `target`, from the names in features-L.json, in rank
 * order: every feature named for the target (raised: mode add), or, when none is, every feature
 * named for its opposite (suppressed: mode set to −v).
 */
export function genderCandidates(features: readonly FeatureEntry[], target: string, values: readonly number[], from?: string): GenderChoice[] {
  const tw = targetWords(target);
  const t = tw.length ? tw.join(' ') : stem(target.toLowerCase());
  const src = sourceWords(target, from);
  const named = (want: readonly string[], not: readonly string[]) =>
    features.filter((f) => {
      if (!f.name) return false;
      const ws = words(f.name);
      const has = (x: string) => ws.some((w) => w.canon === x && !w.negated);
      return want.length > 0 && want.every(has) && !(not.length > 0 && not.every(has));
    });
  const up = named(tw.length ? tw : [t], src);
  if (up.length > 0) {
    const vs = values.map((v) => Math.abs(v));
    return up.map((f) => ({ feature: f.id, name: f.name!, mode: 'add', values: vs, strategy: `raise the '${t}'-named feature: mode add, z_F + v for v in [${vs.join(', ')}]` }));
  }
  const down = src.length ? named(src, tw.length ? tw : [t]) : [];
  const vs = values.map((v) => -Math.abs(v) + 0); // + 0: no −0 in the JSON
  return down.map((f) => ({
    feature: f.id,
    name: f.name!,
    mode: 'set',
    values: vs,
    strategy: `no feature is named '${t}': suppress the '${src.join(' ')}'-named feature: mode set, z_F := v for v in [${vs.join(', ')}] (0 = clamped off)`,
  }));
}

/** The first of genderCandidates, or null. */
export function chooseGenderFeature(features: readonly FeatureEntry[], target: string, values: readonly number[]): GenderChoice | null {
  return genderCandidates(features, target, values)[0] ?? null;
}

/**
 * The paper's gender experiment: for each clip of the other gender, ask `question` with the
 * feature swept over `values`; a clip flips when some value makes the answer say `target` (and the
 * unsteered answer did not). Control: `controlQuestion` at the flip value (or the largest value)
 * must get the unsteered answer. Writes RUN/steering.json.
 */
export async function steeringExperiment(o: SteeringExperimentOptions): Promise<SteeringResult> {
  const target = (o.target ?? 'male').toLowerCase().trim();
  const question = o.question ?? 'What is the gender of the speaker?';
  const controlQuestion = o.controlQuestion ?? 'Is anyone speaking?';
  const positions = o.positions ?? 'all';
  const magnitudes = o.values ?? [0, 5, 10, 20, 40];
  checkValues(magnitudes);
  const paths = runPaths(o.run, o.layer);
  const opp = OPPOSITE[stem(target)];
  const otherGender = (cs: readonly ExperimentClip[]) => cs.filter((c) => (opp === undefined || c.gender == null ? true : stem(String(c.gender).toLowerCase()) === opp));
  const clips = otherGender(o.corpusClips);
  if (clips.length === 0) throw new ArdError(`steering: no clips${opp ? ` with gender '${opp}'` : ''} to steer`);

  // read once: the name, the by-name choice and the activation scale all come from it
  const ranked = fs.existsSync(paths.features) ? readFeatures(paths.features).features : null;
  // the requested magnitudes in the feature's own units (valuesInFeatureUnits), or as given
  const scaled = (f: number, vs: readonly number[]): { values: number[]; unit: number; note: string } => {
    if (!o.valuesInFeatureUnits) return { values: [...vs], unit: 1, note: '' };
    const e = ranked?.find((x) => x.id === f);
    if (!e || !(e.scores.maxMean > 0)) throw new ArdError(`${paths.features}: no activation scale for feature ${f} (values in feature units need it ranked; or give raw values, --units raw)`);
    const unit = e.scores.maxMean;
    return { values: vs.map((v) => Number((v * unit).toPrecision(4)) + 0), unit, note: ` (in units of the feature's largest clip-mean activation, ${unit.toPrecision(4)})` };
  };

  let choice: GenderChoice;
  let source: string;
  let selection: SteeringResult['selection'];
  // progress covers the candidates' sweeps on the selection clips, then the scored sweep
  let doneBefore = 0;
  const baselines = o.baselines ?? [];
  let total = clips.length * (1 + baselines.length);
  const progressFrom = (offset: number) => (done: number) => o.onProgress?.(offset + done, total);
  if (o.feature !== undefined) {
    const mode = o.mode ?? 'add';
    choice = { feature: o.feature, name: ranked?.find((f) => f.id === o.feature)?.name ?? '', mode, values: [...magnitudes], strategy: `feature given: mode ${mode} with values [${magnitudes.join(', ')}]` };
    source = 'given by the caller';
  } else {
    if (!ranked) throw new ArdError(`${paths.features}: no features file to find a gender feature in (name the features first, or pass a feature)`);
    const cands = genderCandidates(ranked, target, magnitudes, o.from);
    if (cands.length === 0) {
      const src = sourceWords(target, o.from);
      throw new ArdError(`${paths.features}: no feature is named '${target}'${src.length ? ` or '${src.join(' ')}'` : ''} (pass a feature)`);
    }
    choice = cands[0]!;
    source = `${path.basename(paths.features)}: first ranked feature whose name says so ("${choice.name}")`;
    const sel = otherGender(o.selectionClips ?? []);
    if (cands.length > 1 && sel.length > 0) {
      // compare the first few candidates on the selection clips; steer the best on the scored ones
      const compared: SteeringCandidate[] = [];
      const toCompare = cands.slice(0, o.maxCandidates ?? 5);
      total += toCompare.length * sel.length;
      for (const c of toCompare) {
        const per = await sweepClips(o, sel, { ...c, values: scaled(c.feature, c.values).values }, positions, question, controlQuestion, target, progressFrom(doneBefore));
        doneBefore += sel.length;
        compared.push({ feature: c.feature, name: c.name, mode: c.mode, flip_rate: share(per, (r) => r.flipped), unchanged_rate: share(per, (r) => r.control.unchanged), clips: per.length });
      }
      const best = compared.reduce((a, c) => (c.flip_rate > a.flip_rate || (c.flip_rate === a.flip_rate && c.unchanged_rate > a.unchanged_rate) ? c : a));
      choice = cands.find((c) => c.feature === best.feature)!;
      selection = { clips: sel.length, candidates: compared };
      source = `${path.basename(paths.features)}: of the ${compared.length} first ranked features whose names say so, the one that flipped most of ${sel.length} selection clips ("${choice.name}": ${(best.flip_rate * 100).toFixed(0)} %)`;
    }
  }
  const { feature, mode } = choice;
  const name = choice.name || null;
  const { values, unit, note } = scaled(feature, choice.values);
  const strategy = choice.strategy + note;
  checkSpec(o.model, { sae: o.sae, layer: o.layer, feature, value: 0, mode, positions, promptIds: [] });
  const perClip = await sweepClips(o, clips, { feature, mode, values }, positions, question, controlQuestion, target, progressFrom(doneBefore));
  doneBefore += clips.length;
  const baselineResults: BaselineResult[] = [];
  for (const b of baselines) {
    const per = await sweepClips(o, clips, { feature, mode, values, direction: b.direction }, positions, question, controlQuestion, target, progressFrom(doneBefore));
    doneBefore += clips.length;
    baselineResults.push({
      kind: b.kind,
      description: b.description,
      details: b.details ?? {},
      flip_rate: share(per, (c) => c.flipped),
      unchanged_rate: share(per, (c) => c.control.unchanged),
      baseline_target_rate: share(per, (c) => c.baseline_says_target),
      clips: per.length,
      values: valueRates(values, per),
      per_clip: per,
    });
  }

  const n = perClip.length;
  const rate = (f: (c: ExperimentClipResult) => boolean) => share(perClip, f);
  const result: SteeringResult = {
    feature,
    name,
    layer: o.layer,
    mode,
    positions,
    strategy,
    feature_source: source,
    values,
    value_unit: unit,
    question,
    control_question: controlQuestion,
    target,
    flip_rate: rate((c) => c.flipped),
    unchanged_rate: rate((c) => c.control.unchanged),
    baseline_target_rate: rate((c) => c.baseline_says_target),
    clips: n,
    definitions: {
      says_target: `the answer contains '${target}' or a synonym as a word, not negated, and not also its opposite`,
      flip: 'the unsteered answer does not say the target and the answer at some value does',
      control: 'the control answer at the flip value (or the largest value when no flip) equals the unsteered control answer (case, spacing and final punctuation ignored)',
      flipRate: 'per value: share of clips whose answer at that value says the target',
    },
    per_clip: perClip,
    ...(selection ? { selection } : {}),
    sweeps: [
      {
        feature,
        ...(name ? { name } : {}),
        layer: o.layer,
        question,
        target,
        mode,
        values: valueRates(values, perClip),
      },
    ],
    ...(o.from !== undefined ? { from: o.from } : {}),
    ...(o.split !== undefined ? { split: o.split } : {}),
    ...(baselines.length ? { baselines: baselineResults, baseline_scaling: BASELINE_SCALING } : {}),
  };
  writeJsonAtomic(paths.steering, result);
  return result;
}

const share = <T>(xs: readonly T[], f: (x: T) => boolean) => xs.filter(f).length / xs.length;

/** Per value: the share of clips whose answer says the target, and the answers. */
function valueRates(values: readonly number[], per: readonly ExperimentClipResult[]): { value: number; flipRate: number; answers: string[] }[] {
  return values.map((value, i) => ({
    value,
    flipRate: per.filter((c) => c.answers[i]!.says_target).length / per.length,
    answers: per.map((c) => c.answers[i]!.answer),
  }));
}

export const BASELINE_SCALING =
  "each row moves along the baseline's unit vector u by the norm the feature's intervention gives that row: " +
  "x' = x + |c|·‖W_dec[F]/s‖·u, c = value (add) or value − z_F(x) (set), so ‖x' − x‖ matches the feature's at every value, row and token";

/**
 * For each clip: the unsteered answer to `question`, the answer at each value, whether some value
 * flips it to `target`, and the control question at the flip value (or the largest value).
 *
 * Batched: the sequences of consecutive clips (unsteered, each steered value, the unsteered control)
 * are decoded together, `o.batch` (STEER_BATCH) at once; a clip's steered control, which waits on
 * its sweep, joins the next batch. Each answer is what decoding it alone gives (generateBatch), so
 * the results do not depend on the batch size; batch 1 decodes one sequence at a time, in the
 * order the unbatched loop did. A clip is saved (o.resume) and counted (onDone) when its last
 * answer is in.
 */
async function sweepClips(
  o: SteeringExperimentOptions,
  clips: readonly ExperimentClip[],
  c: { feature: number; mode: SteerMode; values: readonly number[]; direction?: Float32Array },
  positions: SteerPositions,
  question: string,
  controlQuestion: string,
  target: string,
  onDone?: (done: number) => void,
): Promise<ExperimentClipResult[]> {
  const { feature, mode, values } = c;
  const batch = o.batch ?? STEER_BATCH;
  if (!Number.isInteger(batch) || batch < 1) throw new ArdError(`steering: batch ${batch} must be a positive integer`);
  const spec = (value: number) => ({ sae: o.sae, layer: o.layer, feature, value, mode, positions, ...(c.direction ? { direction: c.direction } : {}) });
  // add 0 installs no hook: its answer is the unsteered one
  const isBase = (v: number) => mode === 'add' && v === 0;
  // the control is run at the largest intervention of the sweep
  const largest = values.reduce((a, v) => (Math.abs(v) > Math.abs(a) ? v : a), values[0]!);
  const results: (ExperimentClipResult | undefined)[] = new Array(clips.length);
  let finished = 0;
  // a clip already swept with this direction, feature, mode and values (an interrupted run) is reused
  const dirId = c.direction ? createHash('sha256').update(new Uint8Array(c.direction.buffer, c.direction.byteOffset, c.direction.byteLength)).digest('hex').slice(0, 16) : null;
  const tag = (clip: ExperimentClip) => JSON.stringify([dirId ?? feature, feature, mode, values, positions, question, controlQuestion, target, clip.file]);
  onDone?.(0);
  const todo: number[] = [];
  clips.forEach((clip, i) => {
    const done = o.resume?.get(tag(clip));
    if (!done) return void todo.push(i);
    results[i] = done;
    onDone?.(++finished);
  });

  /** A clip being swept: its prompts (sharing one encoding of the audio) and the answers so far. */
  interface Sweep {
    i: number;
    p: Prepared;
    pc: Prepared;
    base?: SteerAnswer;
    steered: (SteerAnswer | undefined)[];
    controlBase?: SteerAnswer;
    hit?: ExperimentClipResult['answers'][number];
    answers?: ExperimentClipResult['answers'];
    /** Answers still awaited before the next phase (the sweep, then the steered control). */
    pending: number;
  }
  interface Job extends SteeredSequence {
    done(r: SteerAnswer): void;
  }
  const live = new Set<Sweep>();
  // sequences waiting for a batch; a steered control (known once its clip's sweep is in) goes first
  const ready: Job[] = [];

  const finish = (w: Sweep, control: SteerAnswer): void => {
    const clip = clips[w.i]!;
    const base = w.base!;
    const b = w.controlBase!;
    const res: ExperimentClipResult = {
      file: clip.file,
      baseline: base.answer,
      baseline_says_target: answerSays(base.answer, target),
      answers: w.answers!,
      flipped: !!w.hit,
      flip_value: w.hit ? w.hit.value : null,
      control: { value: w.hit ? w.hit.value : largest, baseline: b.answer, answer: control.answer, unchanged: sameAnswer(b.answer, control.answer) },
    };
    live.delete(w);
    w.p.feats.dispose();
    results[w.i] = res;
    o.resume?.put(tag(clip), res);
    onDone?.(++finished);
  };
  // the sweep is in: flip or not, then the control at the flip value (or the largest)
  const swept = (w: Sweep): void => {
    const base = w.base!;
    w.answers = values.map((v, k) => {
      const r = isBase(v) ? base : w.steered[k]!;
      return { value: v, answer: r.answer, says_target: answerSays(r.answer, target) };
    });
    w.hit = answerSays(base.answer, target) ? undefined : w.answers.find((a) => a.says_target);
    const cv = w.hit ? w.hit.value : largest;
    if (isBase(cv)) return finish(w, w.controlBase!);
    w.pending = 1;
    ready.unshift({ p: w.pc, spec: spec(cv), done: (r) => finish(w, r) });
  };
  /** Reads and encodes clip i; its sweep's jobs. */
  const start = async (i: number): Promise<Job[]> => {
    const clip = clips[i]!;
    const file = o.corpus && !path.isAbsolute(clip.file) ? path.join(o.corpus, clip.file) : clip.file;
    const audio = await openClip(file, o.model.windowSamples);
    let p: Prepared;
    let pc: Prepared;
    try {
      p = await prepare(o.model, audio, question, o.tokenizer);
      try {
        pc = await prepare(o.model, audio, controlQuestion, o.tokenizer, p.feats); // same audio features
      } catch (e) {
        p.feats.dispose();
        throw e;
      }
    } finally {
      audio.close();
    }
    const w: Sweep = { i, p, pc, steered: [], pending: 0 };
    live.add(w);
    const jobs: Job[] = [];
    const add = (q: Prepared, sp: Job['spec'], set: (r: SteerAnswer) => void) => {
      w.pending++;
      jobs.push({
        p: q,
        spec: sp,
        done: (r) => {
          set(r);
          if (--w.pending === 0) swept(w);
        },
      });
    };
    add(p, null, (r) => (w.base = r));
    values.forEach((v, k) => {
      if (!isBase(v)) add(p, spec(v), (r) => (w.steered[k] = r));
    });
    add(w.pc, null, (r) => (w.controlBase = r));
    return jobs;
  };

  try {
    let next = 0;
    while (ready.length || next < todo.length) {
      // fill the batch with the next clips' sequences; a clip's may run over into the next batch
      while (ready.length < batch && next < todo.length) ready.push(...(await start(todo[next++]!)));
      const chunk = ready.splice(0, batch);
      const rs = await runSequences(o.model, chunk, o, batch);
      chunk.forEach((j, k) => j.done(rs[k]!));
    }
  } finally {
    for (const w of live) w.p.feats.dispose();
  }
  return results.map((r) => r!);
}

// ---- the experiment by label (`ardgpu steer-experiment`) -----------------------------------------

export interface SteerExperimentOptions extends SteerGenOptions {
  model: AudioLLM;
  sae: Sae;
  /** Where `sae` was read from when it is not RUN/sae-L.safetensors (--sae): its digest keys the result. */
  saeFile?: string;
  run: string;
  layer: number;
  /** The source concept: a label of the captured corpus (case ignored), e.g. "female speech". */
  from: string;
  /** The question asked of each clip, e.g. "What is the gender of the speaker?". */
  prompt: string;
  /** What a flipped answer says (word-level, see answerSays), e.g. "male". */
  expect: string;
  /** Its answer must not change at the flip value (default "Is anyone speaking?"). */
  controlPrompt?: string;
  /** Magnitudes to sweep (default 0, 1, 2, 4, 8, 16 in feature units, else 0, 5, 10, 20, 40). */
  values?: readonly number[];
  /** Values in units of the feature's largest clip-mean activation (default true). */
  valuesInFeatureUnits?: boolean;
  /** Steer this feature (default: the features named for `expect`, compared on the selection clips). */
  feature?: number;
  mode?: SteerMode;
  positions?: SteerPositions;
  /** The split whose source-labelled clips are scored (default 'test'). */
  split?: string;
  /** The split whose source-labelled clips choose among named candidates (default 'val'). */
  selectionSplit?: string;
  /** At most this many selection clips (default 16, the first in capture order). */
  maxSelectionClips?: number;
  /** Selection clips given directly (files as in the capture manifest), instead of selectionSplit. */
  selectionClips?: readonly ExperimentClip[];
  /** At most this many scored clips (default all). */
  maxClips?: number;
  maxCandidates?: number;
  /** Also steer the best raw neuron and a random direction (default true). */
  baselines?: boolean;
  /** Seed of the random direction (default 0). */
  randomSeed?: number;
  /** Sequences decoded together at most (default STEER_BATCH); not part of the stage's inputs, as the answers do not depend on it. */
  batch?: number;
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
}

/** How a label is compared: case and surrounding space ignored. */
const normLabel = (l: string) => l.toLowerCase().trim();

/**
 * The clips of the capture labelled `from` in `split`, in capture order (files resolved against
 * the capture's corpus folder). One-line errors: a label no clip has (listing the corpus's
 * labels), or none in that split (listing where it occurs).
 */
export function clipsLabelled(manifest: Pick<CaptureManifest, 'clips' | 'corpus'>, manifestFile: string, from: string, split: string): CaptureClip[] {
  const want = normLabel(from);
  const all = manifest.clips.filter((c) => c.labels.some((l) => normLabel(l) === want));
  if (all.length === 0) {
    const labels = [...new Set(manifest.clips.flatMap((c) => c.labels))].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()) || (a < b ? -1 : a > b ? 1 : 0));
    const shown = labels.slice(0, 12).map((l) => `'${l}'`).join(', ');
    throw new ArdError(`${manifestFile}: no clip is labelled '${from}' (${labels.length ? `labels: ${shown}${labels.length > 12 ? `, … ${labels.length - 12} more` : ''}` : 'the corpus has no labels'})`);
  }
  const picked = all.filter((c) => c.split === split);
  if (picked.length === 0) {
    const by = new Map<string, number>();
    for (const c of all) by.set(c.split, (by.get(c.split) ?? 0) + 1);
    throw new ArdError(`${manifestFile}: no clip labelled '${from}' in split '${split}' (${[...by].map(([s, n]) => `${s}: ${n}`).join(', ')})`);
  }
  return picked.map((c) => ({ ...c, file: manifest.corpus && !path.isAbsolute(c.file) ? path.join(manifest.corpus, c.file) : c.file }));
}

/**
 * What steerExperiment checks before any model is loaded (the CLI calls it first): the label has
 * clips in the split, and some feature's name fits `expect` (or `from`) unless a feature is given.
 * Throws one-line ArdErrors.
 */
export function checkSteerExperiment(o: { run: string; layer: number; from: string; expect: string; split?: string; feature?: number }): void {
  const paths = runPaths(o.run, o.layer);
  if (!fs.existsSync(paths.manifest)) throw new ArdError(`${paths.manifest}: no capture manifest (run \`ardgpu capture\` first)`);
  clipsLabelled(readCaptureManifest(o.run), paths.manifest, o.from, o.split ?? 'test');
  if (o.feature !== undefined) return;
  if (!fs.existsSync(paths.features)) throw new ArdError(`${paths.features}: no features file to find a feature named '${o.expect}' in (name the features first, or pass --feature)`);
  if (genderCandidates(readFeatures(paths.features).features, o.expect, [1], o.from).length === 0) {
    const src = sourceWords(o.expect, o.from);
    throw new ArdError(`${paths.features}: no feature is named '${o.expect}'${src.length ? ` or '${src.join(' ')}'` : ''} (pass a feature)`);
  }
}

/**
 * The baselines steered beside the feature:
 * - neuron: the residual dimension j and sign σ whose clip-mean activation σ·x̄_j ranks the clips
 *   labelled `from` highest (max average precision, as evaluate chooses its neuron per label), on
 *   the validation split (else every clip outside the scored split, else every clip); steered
 *   along u = −σ·e_j, away from the source concept.
 * - random: a seeded Gaussian direction normalised to unit length (evaluate's randomDirections).
 * Both are then scaled per row to the feature's norm of change (BASELINE_SCALING).
 */
export function baselineDirections(o: {
  clips: readonly Pick<CaptureClip, 'labels' | 'split'>[];
  residMean: Float32Array;
  d: number;
  from: string;
  scoredSplit: string;
  seed: number;
}): BaselineSpec[] {
  const { d } = o;
  const want = normLabel(o.from);
  const isPos = (c: Pick<CaptureClip, 'labels'>) => c.labels.some((l) => normLabel(l) === want);
  const both = (idx: number[]) => idx.some((i) => isPos(o.clips[i]!)) && idx.some((i) => !isPos(o.clips[i]!));
  const every = o.clips.map((_, i) => i);
  const pools: [string, number[]][] = [
    ["the 'val' split", every.filter((i) => o.clips[i]!.split === 'val')],
    [`every split but '${o.scoredSplit}'`, every.filter((i) => o.clips[i]!.split !== o.scoredSplit)],
    ['every clip', every],
  ];
  const pool = pools.find(([, idx]) => both(idx));
  const out: BaselineSpec[] = [];
  if (pool) {
    const [where, idx] = pool;
    const resid = new Float32Array(idx.length * d);
    idx.forEach((c, i) => resid.set(o.residMean.subarray(c * d, (c + 1) * d), i * d));
    const pos = Uint8Array.from(idx, (c) => (isPos(o.clips[c]!) ? 1 : 0));
    const { best, ap } = bestCandidates(neuronCandidates(resid, idx.length, d), [pos], idx.length);
    const j = best[0]! >> 1;
    const sign = best[0]! & 1 ? -1 : 1;
    const u = new Float32Array(d);
    u[j] = -sign;
    out.push({
      kind: 'neuron',
      direction: u,
      description: `neuron ${j}: its clip mean ${sign < 0 ? 'falls' : 'rises'} on '${o.from}' clips (AP ${ap[0]!.toFixed(3)} on ${where}, ${pos.reduce((a, b) => a + b, 0)} of ${idx.length} clips); steered ${sign < 0 ? 'up' : 'down'}, away from it`,
      details: { neuron: j, sign: -sign, ap: Math.round(ap[0]! * 1e6) / 1e6, chosen_on: where, clips: idx.length },
    });
  }
  const R = randomDirections(d, 1, o.seed);
  out.push({ kind: 'random', direction: R, description: `a random unit direction (Gaussian, seed ${o.seed})`, details: { seed: o.seed } });
  return out;
}

/** Clip-mean residual vectors of the layer: retrieve's copy when it matches the capture, else computed. */
async function residualMeans(engine: Engine, run: string, layer: number, nClips: number): Promise<Float32Array> {
  const file = runPaths(run, layer).retrieve;
  if (fs.existsSync(file)) {
    const s = readRetrieve(file);
    if (s.residMean && s.nClips === nClips) return s.residMean;
  }
  return (await clipResidualMeans({ engine, run, layer })).residMean;
}

/**
 * `ardgpu steer-experiment`: the steering experiment on the clips labelled `from` (any label set):
 * the features named for `expect` (or `feature`) are swept over `values`, the flip rate and the
 * control's unchanged rate measured on the `split` clips, beside the best raw neuron and a random
 * direction (baselineDirections) steered with the same norm of change. Writes RUN/steering.json,
 * skipped when its inputs are unchanged (then `skipped` is true).
 */
export async function steerExperiment(o: SteerExperimentOptions): Promise<SteeringResult & { skipped?: boolean }> {
  const paths = runPaths(o.run, o.layer);
  if (!o.from || !o.from.trim()) throw new ArdError('steer-experiment: --from needs a label');
  if (!o.expect || !o.expect.trim()) throw new ArdError('steer-experiment: --expect needs an answer word');
  if (!o.prompt || !o.prompt.trim()) throw new ArdError('steer-experiment: --prompt needs a question');
  const manifest = readCaptureManifest(o.run);
  const split = o.split ?? 'test';
  // by label only: no gender field, so the core's gender filter keeps every clip
  let clips: ExperimentClip[] = clipsLabelled(manifest, paths.manifest, o.from, split).map((c) => ({ file: c.file }));
  if (o.maxClips !== undefined) clips = clips.slice(0, o.maxClips);
  let selectionClips: readonly ExperimentClip[] = o.selectionClips ?? [];
  if (!o.selectionClips && o.feature === undefined) {
    const sel = o.selectionSplit ?? 'val';
    const has = manifest.clips.some((c) => c.split === sel && c.labels.some((l) => normLabel(l) === normLabel(o.from)));
    selectionClips = has ? clipsLabelled(manifest, paths.manifest, o.from, sel).slice(0, o.maxSelectionClips ?? 16).map((c) => ({ file: c.file })) : [];
  }
  const inFeatureUnits = o.valuesInFeatureUnits ?? true;
  const values = o.values ?? (inFeatureUnits ? [0, 1, 2, 4, 8, 16] : [0, 5, 10, 20, 40]);
  checkValues(values);
  const withBaselines = o.baselines ?? true;
  const seed = o.randomSeed ?? 0;
  const stamp = (f: string) => (fs.existsSync(f) ? fileDigest(f) : 'missing');
  const key = stageInputsKey('steer-experiment', {
    model: o.model.source, sae: o.saeFile !== undefined ? saeDigest(o.saeFile) : stamp(paths.sae), features: stamp(paths.features), manifest: stamp(paths.manifest),
    retrieve: withBaselines ? fileStamp(paths.retrieve) : null, from: normLabel(o.from), prompt: o.prompt, expect: o.expect,
    control: o.controlPrompt ?? null, values, inFeatureUnits, feature: o.feature ?? null, mode: o.mode ?? null, positions: o.positions ?? 'all',
    clips: clips.map((c) => [c.file, fileStamp(c.file)]), selection: selectionClips.map((c) => [c.file, fileStamp(c.file)]),
    maxCandidates: o.maxCandidates ?? null, baselines: withBaselines, seed, maxNewTokens: o.maxNewTokens ?? 32,
    sampling: [o.temperature ?? null, o.topP ?? null, o.topK ?? null, o.seed ?? 0],
  });
  if (!o.force && isFresh(paths.steering, key)) return { ...readJson<SteeringResult>(paths.steering), skipped: true };
  clearFresh(paths.steering);
  // each clip's result is kept as it is done, under this key; a rerun after an interruption reuses them
  const partialFile = path.join(o.run, '.steering.partial.json');
  const partial = fs.existsSync(partialFile) ? readJson<{ key?: string; done?: Record<string, ExperimentClipResult> }>(partialFile) : null;
  const done: Record<string, ExperimentClipResult> = partial?.key === key && partial.done && typeof partial.done === 'object' ? partial.done : {};
  const resume = {
    get: (k: string) => (o.force ? undefined : done[k]),
    put: (k: string, r: ExperimentClipResult) => {
      done[k] = r;
      writeJsonAtomic(partialFile, { key, done });
    },
  };
  const baselines = withBaselines
    ? baselineDirections({ clips: manifest.clips, residMean: await residualMeans(o.model.engine, o.run, o.layer, manifest.clips.length), d: manifest.d, from: o.from, scoredSplit: split, seed })
    : [];
  const r = await steeringExperiment({
    ...o,
    corpusClips: clips,
    selectionClips,
    values,
    valuesInFeatureUnits: inFeatureUnits,
    question: o.prompt,
    target: o.expect,
    ...(o.controlPrompt !== undefined ? { controlQuestion: o.controlPrompt } : {}),
    from: o.from,
    split,
    baselines,
    resume,
  });
  markFresh(paths.steering, key);
  fs.rmSync(partialFile, { force: true });
  return r;
}
