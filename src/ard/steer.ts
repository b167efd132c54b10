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
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readAudio } from '../audio/decode.js';
import type { WavAudio } from '../audio/wav.js';
import type { Engine } from '../gpu/engine.js';
import type { AudioLLM, AudioWindow } from '../model/audiollm.js';
import { buildChatPrompt } from '../model/chat.js';
import { generate } from '../model/generate.js';
import type { GenerateOptions } from '../model/generate.js';
import type { HookContext, HookHandle } from '../model/hooks.js';
import { loadAudioLLM } from '../model/load.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { loadSae } from '../sae/load.js';
import type { Sae } from '../sae/types.js';
import { cast, map } from '../tensor/ops/elementwise.js';
import { sum } from '../tensor/ops/reduce.js';
import { keep } from '../tensor/scope.js';
import { Tensor, tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import { writeJsonAtomic } from '../util/fs.js';
import { stem } from './describe.js';
import { readFeatures } from './rank.js';
import type { FeatureEntry } from './rank.js';
import { runPaths } from './run.js';

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
  return { mode, positions };
}

/**
 * Registers the steering hook on the model (decoder layer `layer`); remove() takes it off and
 * frees what it holds. Hooks added before it see the unsteered residual, hooks added after it
 * the steered one.
 */
export function addSteeringHook(model: AudioLLM, spec: SteeringSpec): HookHandle {
  const { mode, positions } = checkSpec(model, spec);
  const { sae, feature, value } = spec;
  if (mode === 'add' && value === 0) return { remove() {} }; // exactly the unsteered model
  const engine = model.engine;
  // W_dec[F] / s as a [1, d] row, broadcast over the rows of the residual
  const dir = keep(
    engine.noGradScope(() => {
      const row = sae.decoderRow(feature);
      const out = map([row], 'P.alpha * a', { name: 'steer_dir', alpha: 1 / sae.inputScale, out: 'f32' });
      row.dispose();
      return out;
    }),
  );
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
    const out = map([resid, coef, dir], 'select(a, a + b * c, b != 0.0)', { name: 'steer', out: resid.dtype });
    if (coef !== constCoef) coef.dispose();
    mask?.dispose();
    return out;
  };
  const h = model.hooks.add({ layer: spec.layer, fn });
  let removed = false;
  return {
    remove() {
      if (removed) return;
      removed = true;
      h.remove();
      dir.dispose();
      constCoef?.dispose();
    },
  };
}

// ---- generation --------------------------------------------------------------------------------

/** An audio file path (WAV, FLAC, Ogg, MP3), 16 kHz mono samples or decoded audio. */
export type SteerAudio = string | Float32Array | WavAudio;

async function samplesOf(a: SteerAudio): Promise<Float32Array> {
  if (typeof a === 'string') return (await readAudio(a)).samples;
  if (a instanceof Float32Array) return a;
  if (a && a.samples instanceof Float32Array) {
    if (a.sampleRate !== 16000) throw new ArdError(`steer: audio at ${a.sampleRate} Hz (16000 expected)`);
    return a.samples;
  }
  throw new ArdError('steer: audio must be an audio file path, a Float32Array of 16 kHz samples or decoded audio');
}

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
 * caller's) and builds the prompt.
 */
function prepare(model: AudioLLM, samples: Float32Array, question: string, tokenizer?: Tokenizer, feats?: Tensor, window = 0): Prepared {
  const tok = tokenizer ?? model.tokenizer;
  if (!tok) throw new ArdError(`${model.source}: no tokenizer.json (pass a tokenizer)`);
  const windows = model.windows(samples.length);
  const w = windows[window];
  if (!w) {
    if (!windows.length) throw new ArdError(`steer: a clip of ${samples.length} samples is too short to give an audio token`);
    throw new ArdError(`steer: window ${window} does not exist (the clip has ${windows.length})`);
  }
  const part = samples.subarray(w.from, w.to);
  // the same prompt as chat.ts askDetailed: one <|AUDIO|> block for the window
  const ids = buildChatPrompt(tok, [w.tokens], question, { audioTokenIndex: model.audioTokenIndex });
  return { ids, feats: feats ?? model.encodeAudio(part), tok, window: w, windows: windows.length, duration: samples.length / model.frontend.samplingRate };
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
  const p = prepare(o.model, await samplesOf(o.audio), o.question, o.tokenizer);
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
  const mode = o.mode ?? 'add';
  const positions = o.positions ?? 'all';
  checkSpec(o.model, { ...o, value: 0, mode, positions, promptIds: [] });
  const p = prepare(o.model, await samplesOf(o.audio), o.question, o.tokenizer, undefined, o.window ?? 0);
  try {
    const baseline = await run(o.model, p, null, o);
    const values: SteerSweep['values'] = [];
    for (const value of o.values) {
      const r = mode === 'add' && value === 0 ? baseline : await run(o.model, p, { sae: o.sae, layer: o.layer, feature: o.feature, value, mode, positions }, o);
      values.push({ value, answer: r.answer });
    }
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
  const samples = (await readAudio(o.wav)).samples;
  const sae = loadSae(o.engine, saeFile);
  let model: AudioLLM | null = null;
  try {
    model = await loadAudioLLM(o.engine, o.modelDir, o.dtype ? { dtype: o.dtype } : {});
    const name = featureName(paths.features, o.feature);
    const sweeps: SteerSweep[] = [];
    const count = o.windows === 'all' ? Math.max(1, model.windows(samples.length).length) : 1;
    for (let window = 0; window < count; window++) {
      const sweep = await steerSweep({
        model,
        sae,
        layer: o.layer,
        feature: o.feature,
        values: o.values,
        mode: o.mode ?? 'add',
        positions: o.positions ?? 'all',
        audio: samples,
        question: o.prompt,
        maxNewTokens: o.maxNewTokens ?? 32,
        window,
      });
      sweeps.push(name ? { ...sweep, name } : sweep);
    }
    return o.windows === 'all' ? sweeps : sweeps[0]!;
  } finally {
    model?.dispose();
    sae.dispose();
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
  const t = stem(target.toLowerCase().trim());
  const opp = OPPOSITE[t];
  const w = words(answer);
  const says = (c: string) => w.some((x) => x.canon === c && !x.negated);
  return says(t) && !(opp !== undefined && says(opp));
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
  /** Clip sweeps done of all to do: each compared candidate's on the selection clips, then the scored ones. */
  onProgress?: (done: number, total: number) => void;
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
export function genderCandidates(features: readonly FeatureEntry[], target: string, values: readonly number[]): GenderChoice[] {
  const t = stem(target.toLowerCase());
  const opp = OPPOSITE[t];
  const named = (c: string) =>
    features.filter((f) => {
      if (!f.name) return false;
      const ws = words(f.name);
      const has = (x: string) => ws.some((w) => w.canon === x && !w.negated);
      return has(c) && !(c === t ? opp !== undefined && has(opp) : has(t));
    });
  const up = named(t);
  if (up.length > 0) {
    const vs = values.map((v) => Math.abs(v));
    return up.map((f) => ({ feature: f.id, name: f.name!, mode: 'add', values: vs, strategy: `raise the '${t}'-named feature: mode add, z_F + v for v in [${vs.join(', ')}]` }));
  }
  const down = opp ? named(opp) : [];
  const vs = values.map((v) => -Math.abs(v) + 0); // + 0: no −0 in the JSON
  return down.map((f) => ({
    feature: f.id,
    name: f.name!,
    mode: 'set',
    values: vs,
    strategy: `no feature is named '${t}': suppress the '${opp}'-named feature: mode set, z_F := v for v in [${vs.join(', ')}] (0 = clamped off)`,
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
    if (!e || !(e.scores.maxMean > 0)) throw new ArdError(`${paths.features}: no activation scale for feature ${f} (values in feature units need it ranked)`);
    const unit = e.scores.maxMean;
    return { values: vs.map((v) => Number((v * unit).toPrecision(4)) + 0), unit, note: ` (in units of the feature's largest clip-mean activation, ${unit.toPrecision(4)})` };
  };

  let choice: GenderChoice;
  let source: string;
  let selection: SteeringResult['selection'];
  // progress covers the candidates' sweeps on the selection clips, then the scored sweep
  let doneBefore = 0;
  let total = clips.length;
  const progressFrom = (offset: number) => (done: number) => o.onProgress?.(offset + done, total);
  if (o.feature !== undefined) {
    const mode = o.mode ?? 'add';
    choice = { feature: o.feature, name: ranked?.find((f) => f.id === o.feature)?.name ?? '', mode, values: [...magnitudes], strategy: `feature given: mode ${mode} with values [${magnitudes.join(', ')}]` };
    source = 'given by the caller';
  } else {
    if (!ranked) throw new ArdError(`${paths.features}: no features file to find a gender feature in (name the features first, or pass a feature)`);
    const cands = genderCandidates(ranked, target, magnitudes);
    if (cands.length === 0) throw new ArdError(`${paths.features}: no feature is named '${target}' or its opposite (pass a feature)`);
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
        values: values.map((value, i) => ({
          value,
          flipRate: perClip.filter((c) => c.answers[i]!.says_target).length / n,
          answers: perClip.map((c) => c.answers[i]!.answer),
        })),
      },
    ],
  };
  writeJsonAtomic(paths.steering, result);
  return result;
}

const share = <T>(xs: readonly T[], f: (x: T) => boolean) => xs.filter(f).length / xs.length;

/**
 * For each clip: the unsteered answer to `question`, the answer at each value, whether some value
 * flips it to `target`, and the control question at the flip value (or the largest value).
 */
async function sweepClips(
  o: SteeringExperimentOptions,
  clips: readonly ExperimentClip[],
  c: { feature: number; mode: SteerMode; values: readonly number[] },
  positions: SteerPositions,
  question: string,
  controlQuestion: string,
  target: string,
  onDone?: (done: number) => void,
): Promise<ExperimentClipResult[]> {
  const { feature, mode, values } = c;
  const spec = (value: number) => ({ sae: o.sae, layer: o.layer, feature, value, mode, positions });
  // the control is run at the largest intervention of the sweep
  const largest = values.reduce((a, v) => (Math.abs(v) > Math.abs(a) ? v : a), values[0]!);
  const perClip: ExperimentClipResult[] = [];
  onDone?.(0);
  for (const clip of clips) {
    const file = o.corpus && !path.isAbsolute(clip.file) ? path.join(o.corpus, clip.file) : clip.file;
    const samples = (await readAudio(file)).samples;
    const p = prepare(o.model, samples, question, o.tokenizer);
    let base: SteerAnswer;
    const answers: ExperimentClipResult['answers'] = [];
    let control: ExperimentClipResult['control'];
    let hit: ExperimentClipResult['answers'][number] | undefined;
    try {
      base = await run(o.model, p, null, o);
      for (const v of values) {
        const r = mode === 'add' && v === 0 ? base : await run(o.model, p, spec(v), o);
        answers.push({ value: v, answer: r.answer, says_target: answerSays(r.answer, target) });
      }
      hit = answerSays(base.answer, target) ? undefined : answers.find((a) => a.says_target);
      const cv = hit ? hit.value : largest;
      const pc = prepare(o.model, samples, controlQuestion, o.tokenizer, p.feats); // same audio features
      const b = await run(o.model, pc, null, o);
      const s = mode === 'add' && cv === 0 ? b : await run(o.model, pc, spec(cv), o);
      control = { value: cv, baseline: b.answer, answer: s.answer, unchanged: sameAnswer(b.answer, s.answer) };
    } finally {
      p.feats.dispose();
    }
    const baseSays = answerSays(base.answer, target);
    perClip.push({ file: clip.file, baseline: base.answer, baseline_says_target: baseSays, answers, flipped: !!hit, flip_value: hit ? hit.value : null, control });
    onDone?.(perClip.length);
  }
  return perClip;
}
