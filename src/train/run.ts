// A training run of the AudioLLM, read top to bottom: resolveRun checks every option and settles
// the run's settings first; trainAudioLLM then trains the tokenizer (BPE on the training text),
// caches the log-mels once, initialises the weights, and takes AdamW steps with warm-up, cosine
// decay and global-norm clipping, writing checkpoints (weights, AdamW state, step; the data order
// is a pure function of seed and step) and at the end the model to weights/ in F16.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type FrontendConfig, windowFeatures } from '../audio/logmel.js';
import { readWav } from '../audio/wav.js';
import { CONCEPT_LABELS, readManifest, type ManifestEntry } from '../corpus/manifest.js';
import { Engine } from '../gpu/engine.js';
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { audioTokenCount, convOutLength } from '../model/audio-encoder.js';
import type { Qwen2AudioConfig } from '../model/config.js';
import { Tokenizer } from '../model/tokenizer.js';
import { backward, param } from '../tensor/autograd.js';
import { AdamW, WeightAverage, clipGradNorm } from '../tensor/optim.js';
import { tidy } from '../tensor/scope.js';
import { type Tensor, tensor } from '../tensor/tensor.js';
import { contiguous, slice } from '../tensor/ops/layout.js';
import { ArdError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { type Averaged, CKPT, type OptGroup, type RunFiles, loadCheckpoint, loadInitWeights, runFiles, saveCheckpoint } from './checkpoint.js';
import {
  LABEL_ORDERS, type EncodedConversation, type LabelOrder, type QA, type QuestionWeights, type TemplateIds, batchClips, checkQuestionWeights, clipQAs, encodeConversation, epochPool, fnvHex, pickQuestions, templateIds, trainTokenizer,
} from './data.js';
import { DEFAULT_DIMS, type ModelDims, type Weights, frontendFor, initWeights, makeConfig, trainableWeights } from './dims.js';
import { exportModel } from './export.js';
import { type AuxPool, type SharedBatch, initAux, packShared, trainLoss, trainLossParts } from './forward.js';
import { levelJitterDb, mixedEntry, planMels, planMix, shiftLevel } from './mix.js';

// ---- options and results ---------------------------------------------------------------

export interface TrainOptions {
  /** Corpus directory (manifest.jsonl + clips). */
  corpus: string;
  /** Where the finished model goes (weights/). */
  out: string;
  steps: number;
  seed?: number;
  /** Continue from the work directory's checkpoint (an error if it belongs to another run). */
  resume?: boolean;
  /** Caches, checkpoint and loss log (default <out>/.ardgpu-cache/train). */
  work?: string;
  dims?: Partial<ModelDims>;
  /** Clips per step (default 8). */
  batch?: number;
  /** Questions asked about each clip per step, one sequence each, sharing the clip's encoder pass and prompt prefix (default 2). */
  questionsPerClip?: number;
  /** Relative draw weights of the question kinds (default: all 1, a uniform draw). */
  questionWeights?: QuestionWeights;
  /**
   * Start from this exported model directory (its weights and tokenizer) instead of a random
   * initialisation: a second training stage. The dims must match.
   */
  initFrom?: string;
  /** Weight of the training-only auxiliary label loss (default 1; 0 turns it off). */
  auxWeight?: number;
  /** Learning-rate multiplier of the audio tower (default 1). */
  encoderLrScale?: number;
  /**
   * Learning-rate multiplier of the auxiliary head (default 1). Its logits start near 0 for every
   * clip; at the shared rate the head takes hundreds of steps to grow, and until then its loss sits
   * at the label base rate and tells the encoder little.
   */
  auxLrScale?: number;
  /** How the auxiliary head pools over time (default 'mean'): see AuxPool. */
  auxPool?: AuxPool;
  /** Times a clip with several labels appears in each epoch (default 1): see epochPool. */
  mixtureRepeat?: number;
  /** Share of batch slots (0–1, default 0) whose single-label clip becomes a fresh mixture: see mix.ts. */
  mixRate?: number;
  /** Share (0–1, default 0) of those fresh mixtures that get a third sound: see MixOptions. */
  mixThird?: number;
  /** Fresh mixtures of sounds only put noise-like sounds 3–8 dB lower, as the corpus does (default false): see MixOptions. */
  mixCorpusLevels?: boolean;
  /**
   * Every batch slot's clip (or mixture) played at a random level: a gain drawn uniformly from [lo, hi] dB
   * (mix.ts shiftLevel), so that loudness alone cannot tell speech from other sounds (default: none).
   */
  levelJitter?: [number, number];
  /** Order of the labels in "What sounds can you hear?" answers (default 'given'): see LabelOrder. */
  labelOrder?: LabelOrder;
  /**
   * Weight-name prefixes kept as the --init model has them (no gradient, no optimizer): e.g. the
   * decoder's last layer, final norm and lm_head, so that a later stage keeps the readout that a
   * steering experiment at an earlier layer goes through. Needs initFrom.
   */
  freeze?: string[];
  /**
   * Export (and validate) an exponential moving average of the weights with this decay instead of
   * the last step's weights (0–1, default 0: off); see WeightAverage.ema.
   */
  ema?: number;
  /**
   * Export (and validate) the uniform mean of the weights after steps averageFrom,
   * averageFrom + averageEvery, … up to the last step (1-based steps; default: off).
   */
  averageFrom?: number;
  /** Steps between the weights that --average-from averages (default 1: every step). */
  averageEvery?: number;
  /** Peak learning rate (default 2e-3), reached after `warmup` steps, then cosine decay to lr·minLrRatio. */
  lr?: number;
  warmup?: number;
  minLrRatio?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  /** Global gradient-norm clip (default 1). */
  clipNorm?: number;
  /** Requested tokenizer vocabulary (default 1024; the trained one may be smaller). */
  vocabSize?: number;
  /** Steps between checkpoints (default 100; one is always written at the end). */
  checkpointEvery?: number;
  /** Steps between validation losses (default 200; 0 = never). */
  valEvery?: number;
  /** At most this many validation clips for the validation loss (default 48). */
  valClips?: number;
  /** Use only the first N training clips (tests). */
  maxTrainClips?: number;
  /** Stop after this step (checkpointed) without exporting, as if interrupted (tests). */
  stopAfter?: number;
  /** Write the model to `out` at the end (default true). */
  export?: boolean;
  engine?: Engine;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface StepRecord {
  step: number;
  /** Mean cross-entropy over the answer tokens. */
  loss: number;
  /** The auxiliary label loss (training only), when on. */
  auxLoss?: number;
  lr: number;
  gradNorm: number;
  /** Answer tokens the loss is over. */
  tokens: number;
  /** Sequence positions in the padded batch. */
  positions: number;
  ms: number;
  valLoss?: number;
}

export interface TrainResult {
  config: Qwen2AudioConfig;
  steps: number;
  records: StepRecord[];
  /** Wall time of this invocation (ms). */
  ms: number;
  /** Training wall time over the whole run, resumed parts included (ms). */
  totalMs: number;
  exported: boolean;
  work: string;
}

interface Clip {
  entry: ManifestEntry;
  mel: Float32Array;
  frames: number;
  validFrames: number;
  nAudio: number;
}

export interface RunSpec {
  version: number;
  seed: number;
  dims: ModelDims;
  batch: number;
  questionsPerClip: number;
  questionWeights: QuestionWeights | null;
  /** The model a second stage starts from: its directory and a hash of its weights file. */
  initFrom: { dir: string; key: string } | null;
  auxWeight: number;
  encoderLrScale: number;
  auxLrScale: number;
  auxPool: AuxPool;
  mixtureRepeat: number;
  mixRate: number;
  mixThird: number;
  mixCorpusLevels: boolean;
  /** Present only when set, so the specs (and resumable checkpoints) of runs without it are unchanged. */
  levelJitter?: [number, number];
  /** Present only when set, like levelJitter. */
  freeze?: string[];
  labelOrder: LabelOrder;
  /** Decay of the exported weight EMA (0: none). */
  ema: number;
  /** The exported weights are the mean of those after steps averageFrom, averageFrom + averageEvery, … (null: none). */
  averageFrom: number | null;
  averageEvery: number;
  /** The auxiliary head's classes (the corpus labels). */
  auxClasses: string[];
  steps: number;
  lr: number;
  warmup: number;
  minLrRatio: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  clipNorm: number;
  vocabSize: number;
  maxTrainClips: number | null;
  corpus: string;
}

const RUN_VERSION = 11;

function specOf(o: TrainOptions, dims: ModelDims, manifestKey: string): RunSpec {
  return {
    version: RUN_VERSION,
    seed: o.seed ?? 0,
    dims,
    batch: o.batch ?? 8,
    questionsPerClip: o.questionsPerClip ?? 2,
    questionWeights: o.questionWeights ?? null,
    initFrom: null,
    auxWeight: o.auxWeight ?? 1,
    encoderLrScale: o.encoderLrScale ?? 1,
    auxLrScale: o.auxLrScale ?? 1,
    auxPool: o.auxPool ?? 'mean',
    mixtureRepeat: o.mixtureRepeat ?? 1,
    mixRate: o.mixRate ?? 0,
    mixThird: o.mixThird ?? 0,
    mixCorpusLevels: o.mixCorpusLevels ?? false,
    ...(o.levelJitter ? { levelJitter: o.levelJitter } : {}),
    ...(o.freeze?.length ? { freeze: o.freeze } : {}),
    labelOrder: o.labelOrder ?? 'given',
    ema: o.ema ?? 0,
    averageFrom: o.averageFrom ?? null,
    averageEvery: o.averageEvery ?? 1,
    auxClasses: [],
    steps: o.steps,
    lr: o.lr ?? 2e-3,
    warmup: o.warmup ?? Math.min(200, Math.max(1, Math.round(o.steps * 0.05))),
    minLrRatio: o.minLrRatio ?? 0.1,
    weightDecay: o.weightDecay ?? 0.01,
    beta1: o.beta1 ?? 0.9,
    beta2: o.beta2 ?? 0.98,
    clipNorm: o.clipNorm ?? 1,
    vocabSize: o.vocabSize ?? 1024,
    maxTrainClips: o.maxTrainClips ?? null,
    corpus: manifestKey,
  };
}

/** JSON with every object's keys sorted (comparing settings written in another key order). */
function sortedJson(x: unknown): string {
  return JSON.stringify(x, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0))) : v,
  );
}

/** What resolveRun settles before anything is written. */
interface RunPlan {
  spec: RunSpec;
  work: string;
  files: RunFiles;
  trainEntries: ManifestEntry[];
  valEntries: ManifestEntry[];
}

/**
 * Checks every option and settles the run's settings (defaults filled in, the corpus's training
 * clips, the --init model, the auxiliary head's classes) before anything is written. On --resume
 * the checkpoint's run must have had the same settings (the total number of steps may change).
 */
function resolveRun(o: TrainOptions, log: (line: string) => void): RunPlan {
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new ArdError(`train: --steps must be a positive integer (got ${o.steps})`);
  const dims: ModelDims = { ...DEFAULT_DIMS, ...o.dims };
  const work = o.work ?? path.join(o.out, '.ardgpu-cache', 'train');
  // Training reads the probe corpus's own manifest, not a generic ClipSource: its questions and answers
  // come from fields only that corpus has (caption, speaker gender, speech, augmentation, sentence).
  const all = readManifest(o.corpus);
  let trainEntries = all.filter((e) => e.split === 'train');
  if (o.maxTrainClips) trainEntries = trainEntries.slice(0, o.maxTrainClips);
  const valEntries = all.filter((e) => e.split === 'val').slice(0, o.valClips ?? 48);
  if (trainEntries.length === 0) throw new ArdError(`${o.corpus}: no training clips in the manifest`);
  const spec = specOf(o, dims, fnvHex(JSON.stringify(trainEntries.map((e) => [e.file, e.labels, e.caption]))));
  if (spec.questionWeights) checkQuestionWeights(spec.questionWeights);
  if (!(spec.mixRate >= 0 && spec.mixRate <= 1)) throw new ArdError(`train: --mix-rate must be from 0 to 1 (got ${spec.mixRate})`);
  if (!(spec.mixThird >= 0 && spec.mixThird <= 1)) throw new ArdError(`train: --mix-third must be from 0 to 1 (got ${spec.mixThird})`);
  if (spec.levelJitter) {
    const [lo, hi] = spec.levelJitter;
    if (!(lo >= -40 && hi <= 20 && lo <= hi)) throw new ArdError(`train: --level-jitter must be LO,HI dB with -40 ≤ LO ≤ HI ≤ 20 (got ${lo},${hi})`);
  }
  if (!LABEL_ORDERS.includes(spec.labelOrder)) throw new ArdError(`train: --label-order must be ${LABEL_ORDERS.join(' or ')} (got ${String(spec.labelOrder)})`);
  if (!(spec.ema >= 0 && spec.ema < 1)) throw new ArdError(`train: --ema must be from 0 to below 1 (got ${spec.ema})`);
  if (spec.averageFrom !== null && !(Number.isInteger(spec.averageFrom) && spec.averageFrom >= 1 && spec.averageFrom <= spec.steps)) {
    throw new ArdError(`train: --average-from must be a step from 1 to --steps ${spec.steps} (got ${spec.averageFrom})`);
  }
  if (!(Number.isInteger(spec.averageEvery) && spec.averageEvery >= 1)) throw new ArdError(`train: --average-every must be a positive integer (got ${spec.averageEvery})`);
  if (spec.ema > 0 && spec.averageFrom !== null) throw new ArdError('train: --ema and --average-from exclude each other');
  if (spec.freeze && !o.initFrom) throw new ArdError('train: --freeze needs --init (it keeps weights of the model a stage starts from)');
  if (spec.auxPool !== 'mean' && spec.auxPool !== 'frames') throw new ArdError(`train: --aux-pool must be mean or frames (got ${String(spec.auxPool)})`);
  if (o.initFrom) {
    const dir = path.resolve(o.initFrom);
    for (const f of ['model.safetensors', 'tokenizer.json']) {
      if (!fs.existsSync(path.join(dir, f))) throw new ArdError(`${path.join(dir, f)}: not found (--init needs an exported model directory)`);
    }
    spec.initFrom = { dir, key: fnvHex(fs.readFileSync(path.join(dir, 'model.safetensors')).toString('latin1')) };
  }
  if (spec.questionWeights?.speaking === 0 && trainEntries.some((e) => e.labelled === false)) {
    throw new ArdError("train: the corpus has clips marked 'labelled: false', which are asked only \"Is anyone speaking?\": its question weight must be above 0");
  }
  if (spec.auxWeight > 0) {
    const seen = new Set(trainEntries.flatMap((e) => e.labels));
    spec.auxClasses = [...CONCEPT_LABELS.filter((l) => seen.has(l)), ...[...seen].filter((l) => !CONCEPT_LABELS.includes(l)).sort()];
  }
  const files = runFiles(work);
  if (o.resume) {
    if (!fs.existsSync(files.spec) || !fs.existsSync(files.checkpoint)) throw new ArdError(`${work}: nothing to resume (no run.json / ${CKPT}); start without --resume`);
    const prev = JSON.parse(fs.readFileSync(files.spec, 'utf8')) as RunSpec;
    // a run may be resumed with another total (the schedule follows it); the warm-up stays
    if (o.warmup === undefined) spec.warmup = prev.warmup;
    // settings newer than the checkpoint's run take their defaults
    const { steps: _a, ...a } = { ...prev, ema: prev.ema ?? 0, averageFrom: prev.averageFrom ?? null, averageEvery: prev.averageEvery ?? 1 };
    const { steps: _b, ...b } = spec;
    if (sortedJson(a) !== sortedJson(b)) throw new ArdError(`${files.spec}: the checkpoint belongs to a run with other settings (${JSON.stringify(prev)})`);
    if (spec.steps !== prev.steps) log(`note: total steps changed ${prev.steps} → ${spec.steps} (the schedule follows the new total)`);
  }
  return { spec, work, files, trainEntries, valEntries };
}

/** Learning rate at `step` (0-based): linear warm-up, then cosine decay to lr·minRatio at `total`. */
export function lrAt(step: number, total: number, lr: number, warmup: number, minRatio: number): number {
  if (step < warmup) return (lr * (step + 1)) / warmup;
  const p = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  return lr * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * p)));
}

/**
 * Log-mels of the clips, computed once and cached in `file` (keyed by the clip list and the
 * front end): each clip keeps the frames the encoder reads (see encodeTrainBatch), in f32.
 */
export async function cachedMels(engine: Engine, corpus: string, entries: readonly ManifestEntry[], fe: FrontendConfig, maxPositions: number, file: string): Promise<Clip[]> {
  const key = fnvHex(JSON.stringify([fe, maxPositions, entries.map((e) => e.file)]));
  if (fs.existsSync(file)) {
    const st = openSafetensors(file);
    try {
      if (st.metadata.key === key) {
        const valid = JSON.parse(st.metadata.validFrames!) as number[];
        return entries.map((entry, i) => {
          const mel = st.readFloat32(`mel.${i}`);
          return { entry, mel, frames: mel.length / fe.nMels, validFrames: valid[i]!, nAudio: audioTokenCount(valid[i]!) };
        });
      }
    } finally {
      st.close();
    }
  }
  const clips: Clip[] = [];
  for (const entry of entries) {
    const samples = readWav(path.join(corpus, entry.file)).samples;
    // training sees the first window only (the corpus's clips fit in one)
    const wf = windowFeatures(engine, samples.subarray(0, fe.nSamples), fe);
    const T = convOutLength(wf.validFrames);
    const frames = Math.min(2 * maxPositions, 2 * T + 1);
    const part = tidy(() => contiguous(slice(wf.mel, 1, 0, frames)));
    wf.mel.dispose();
    const mel = await part.toFloat32();
    part.dispose();
    clips.push({ entry, mel, frames, validFrames: wf.validFrames, nAudio: audioTokenCount(wf.validFrames) });
  }
  const tensors: Record<string, TensorToWrite> = {};
  clips.forEach((c, i) => (tensors[`mel.${i}`] = { dtype: 'F32', shape: [fe.nMels, c.frames], data: c.mel }));
  writeSafetensors(file, tensors, { key, validFrames: JSON.stringify(clips.map((c) => c.validFrames)) });
  return clips;
}

function readLog(file: string, upTo: number): StepRecord[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as StepRecord)
    .filter((r) => r.step < upTo);
}

/** Runs (or resumes) a training run; exports the model to `out` at the end. */
export async function trainAudioLLM(o: TrainOptions): Promise<TrainResult> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const { spec, work, files, trainEntries, valEntries } = resolveRun(o, log);
  const dims = spec.dims;
  fs.mkdirSync(work, { recursive: true });
  if (!o.resume) for (const f of [files.checkpoint, files.log]) fs.rmSync(f, { force: true });

  const engine = o.engine ?? (await Engine.create());
  const ownsEngine = !o.engine;
  let weights: Weights | null = null;
  let groups: OptGroup[] = [];
  let averaged: Averaged | null = null;
  /** The weights to validate and export: the running average in place of the trained weights, once there is one. */
  const exportWeights = (): Weights => {
    if (!averaged) return weights!;
    const w = new Map(weights!);
    averaged.names.forEach((n, i) => w.set(n, averaged!.avg.average(i)));
    return w;
  };
  try {
    // the tokenizer, the run's settings and the model's config
    const tok = runTokenizer(o.resume ?? false, spec, trainEntries, files.tokenizer);
    writeFileAtomic(files.spec, JSON.stringify(spec, null, 2) + '\n');
    const config = makeConfig(dims, tok);
    const fe = frontendFor(dims);
    log(`tokenizer: ${tok.vocabSize} tokens; ${trainEntries.length} training clips, ${valEntries.length} validation clips`);

    // the clips' log-mels, computed once per run
    const tm = performance.now();
    const maxPos = config.audio_config.max_source_positions;
    const clips = await cachedMels(engine, o.corpus, trainEntries, fe, maxPos, path.join(work, `mels-train.safetensors`));
    const valClips = valEntries.length ? await cachedMels(engine, o.corpus, valEntries, fe, maxPos, path.join(work, `mels-val.safetensors`)) : [];
    log(`log-mels ready (${((performance.now() - tm) / 1000).toFixed(1)} s)`);
    const data = trainingData(clips, spec, tok);

    // the weights: fresh, or the model a second stage starts from; the auxiliary head; AdamW
    weights = initWeights(engine, config, spec.seed);
    // a resumed run takes its trained weights from the checkpoint, and its frozen ones from --init
    if (spec.initFrom && (!o.resume || spec.freeze)) {
      const grown = loadInitWeights(engine, weights, path.join(spec.initFrom.dir, 'model.safetensors'));
      if (grown > 0) log(`audio encoder grown by ${grown} layer${grown > 1 ? 's' : ''} (identity at the start: residual outputs zeroed)`);
    }
    if (spec.auxClasses.length) initAux(engine, weights, config, spec.auxClasses.length, spec.seed, auxPrior(clips, data.auxIndex));
    const params = trainableWeights(weights);
    if (spec.freeze) {
      const frozen = [...params.keys()].filter((n) => spec.freeze!.some((p) => n.startsWith(p)));
      for (const p of spec.freeze) {
        if (!frozen.some((n) => n.startsWith(p))) throw new ArdError(`train: --freeze '${p}' matches no trainable weight`);
      }
      for (const n of frozen) params.delete(n);
      log(`frozen: ${frozen.length} tensors (${spec.freeze.join(', ')})`);
    }
    for (const [n, t] of params) param(t, n);
    groups = optimizerGroups(params, spec);
    // the exported weights' running average (not the aux head, which is not exported): an EMA
    // runs from the start; a mean starts as the weights after step averageFrom
    const avgNames = [...params.keys()].filter((n) => !n.startsWith('aux.'));
    const newAverage = (): Averaged => ({ avg: new WeightAverage(avgNames.map((n) => params.get(n)!)), names: avgNames });
    const averageAt = (stepsDone: number) => (spec.ema > 0 || (spec.averageFrom !== null && stepsDone >= spec.averageFrom) ? newAverage() : null);

    // where to start: step 0, or the checkpoint; the log keeps exactly the steps the checkpoint has seen
    let start = 0;
    let totalMs = 0;
    if (o.resume) {
      const ck = await loadCheckpoint(engine, files.checkpoint, params, groups, averageAt);
      averaged = ck.averaged;
      start = ck.step;
      totalMs = ck.totalMs;
      log(`resumed at step ${start}`);
    } else {
      averaged = averageAt(0);
    }
    const records = readLog(files.log, start);
    writeFileAtomic(files.log, records.map((r) => JSON.stringify(r) + '\n').join(''));
    const logFd = fs.openSync(files.log, 'a');
    const end = Math.min(spec.steps, o.stopAfter ?? spec.steps);
    const every = o.checkpointEvery ?? 100;
    const valEvery = o.valEvery ?? 200;

    // the steps
    try {
      for (let step = start; step < end; step++) {
        const ts = performance.now();
        const batch = stepBatch(spec, data, tok, step);
        const lr = lrAt(step, spec.steps, spec.lr, spec.warmup, spec.minLrRatio);
        for (const g of groups) g.opt.lr = lr * g.scale;
        const { lm, aux, norm } = tidy(() => {
          const mels = batch.clips.map((clip) => ({ mel: tensor(engine, clip.mel, [dims.nMels, clip.frames]), validFrames: clip.validFrames }));
          const parts = trainLossParts(engine, weights!, config, mels, batch.shared, batch.clipOf, batch.auxTargets ? { targets: batch.auxTargets, mask: batch.auxMask, weight: spec.auxWeight, pool: spec.auxPool } : undefined);
          backward(parts.loss);
          const n = clipGradNorm([...params.values()], spec.clipNorm);
          for (const g of groups) g.opt.step();
          return { lm: parts.lm, aux: parts.aux, norm: n };
        });
        for (const g of groups) g.opt.zeroGrad();
        if (!averaged) averaged = averageAt(step + 1);
        else if (spec.ema > 0) averaged.avg.ema(spec.ema);
        else if ((step + 1 - spec.averageFrom!) % spec.averageEvery === 0) averaged.avg.mean();

        const lossV = await lm.item();
        const auxV = aux ? await aux.item() : undefined;
        const normV = await norm.item();
        for (const t of [lm, aux, norm]) t?.dispose();
        if (!Number.isFinite(lossV)) throw new ArdError(`train: loss became ${lossV} at step ${step}`);
        const sb = batch.shared;
        const rec: StepRecord = { step, loss: lossV, ...(auxV !== undefined ? { auxLoss: auxV } : {}), lr, gradNorm: normV, tokens: sb.targets.length, positions: sb.prefix.B * sb.prefix.L + sb.S * sb.Ls, ms: Math.round(performance.now() - ts) };
        if (valEvery > 0 && valClips.length && ((step + 1) % valEvery === 0 || step + 1 === spec.steps)) {
          rec.valLoss = await validationLoss(engine, exportWeights(), config, tok, valClips, spec.batch, spec.labelOrder);
        }
        records.push(rec);
        fs.writeSync(logFd, JSON.stringify(rec) + '\n');
        totalMs += performance.now() - ts;
        if ((step + 1) % 10 === 0 || step === start || step + 1 === end) {
          log(`step ${step + 1}/${spec.steps} loss ${lossV.toFixed(4)}${auxV !== undefined ? ` aux ${auxV.toFixed(4)}` : ''}${rec.valLoss !== undefined ? ` val ${rec.valLoss.toFixed(4)}` : ''} lr ${lr.toExponential(2)} |g| ${normV.toFixed(3)} ${(rec.ms / 1000).toFixed(2)} s/step`);
        }
        if ((step + 1) % every === 0 || step + 1 === end) {
          await saveCheckpoint(files.checkpoint, step + 1, totalMs, params, groups, averaged);
        }
      }
    } finally {
      fs.closeSync(logFd);
    }

    // the model, once every step is done
    const done = end >= spec.steps;
    let exported = false;
    if (done && o.export !== false) {
      await exportModel(o.out, exportWeights(), config, fe, { spec, records, totalMs, tokenizerJson: fs.readFileSync(files.tokenizer, 'utf8') });
      exported = true;
      log(`model written to ${o.out}`);
    }
    return { config, steps: end, records, ms: performance.now() - t0, totalMs, exported, work };
  } finally {
    for (const g of groups) g.opt.dispose();
    averaged?.avg.dispose();
    if (weights) for (const t of weights.values()) t.dispose();
    if (ownsEngine) engine.destroy();
  }
}

/**
 * The run's tokenizer, written to `file`: on --resume the one written before; a second stage keeps
 * the first stage's (the embeddings are indexed by it); else BPE trained on the training clips' text.
 */
function runTokenizer(resume: boolean, spec: RunSpec, trainEntries: readonly ManifestEntry[], file: string): Tokenizer {
  if (resume && fs.existsSync(file)) return Tokenizer.load(file);
  if (spec.initFrom) {
    writeFileAtomic(file, fs.readFileSync(path.join(spec.initFrom.dir, 'tokenizer.json'), 'utf8'));
    return Tokenizer.load(file);
  }
  const tj = trainTokenizer(trainEntries, spec.vocabSize);
  writeFileAtomic(file, JSON.stringify(tj));
  return Tokenizer.fromJSON(tj, file);
}

/** What the steps draw their batches from. */
interface TrainData {
  clips: Clip[];
  /** Each clip's questions and answers. */
  qas: QA[][];
  /** Clip indices an epoch's order is drawn from (see epochPool). */
  pool: number[];
  labelsOf: string[][];
  tid: TemplateIds;
  /** The auxiliary head's class index of each label. */
  auxIndex: Map<string, number>;
}

function trainingData(clips: Clip[], spec: RunSpec, tok: Tokenizer): TrainData {
  return {
    clips,
    qas: clips.map((c) => clipQAs(c.entry, spec.labelOrder)),
    pool: epochPool(clips.map((c) => c.entry.labels.length), spec.mixtureRepeat),
    labelsOf: clips.map((c) => c.entry.labels),
    tid: templateIds(tok),
    auxIndex: new Map(spec.auxClasses.map((l, i) => [l, i])),
  };
}

/** Each auxiliary class's share of the training clips, kept inside [1/2n, 1 − 1/2n] (its bias starts at the log-odds). */
function auxPrior(all: readonly Clip[], auxIndex: ReadonlyMap<string, number>): Float32Array {
  const clips = all.filter((c) => c.entry.labelled !== false); // unlabelled clips are masked out of the aux loss
  const n = clips.length;
  const share = new Float32Array(auxIndex.size);
  for (const c of clips) for (const l of c.entry.labels) share[auxIndex.get(l)!]! += 1 / n;
  return share.map((p) => Math.min(1 - 0.5 / n, Math.max(0.5 / n, p)));
}

/** AdamW groups: the audio tower and the aux head may learn at their own rates; the projector and decoder at lr. */
function optimizerGroups(params: Map<string, Tensor>, spec: RunSpec): OptGroup[] {
  const groupOf = (n: string) => (n.startsWith('audio_tower.') ? 0 : n.startsWith('aux.') ? 2 : 1);
  const scaleOf = [spec.encoderLrScale, 1, spec.auxLrScale];
  return [0, 1, 2]
    .map((gi) => ({ names: [...params.keys()].filter((n) => groupOf(n) === gi), scale: scaleOf[gi]! }))
    .filter((g) => g.names.length)
    .map((g) => ({ ...g, opt: new AdamW({ params: g.names.map((n) => params.get(n)!), lr: spec.lr * g.scale, betas: [spec.beta1, spec.beta2], eps: 1e-8, weightDecay: spec.weightDecay }) }));
}

/** One step's batch. */
interface StepBatch {
  /** The clip in each batch slot: a training clip, or a fresh mixture in its place. */
  clips: Clip[];
  /** The questions about every slot's clip, sharing its prompt prefix. */
  shared: SharedBatch;
  /** The slot of each question. */
  clipOf: number[];
  /** Multi-hot label targets [slots, classes] of the auxiliary head (none when it is off). */
  auxTargets?: Float32Array;
  /** Per slot 1, or 0 for a clip whose labels are not known (manifest `labelled: false`): no aux loss. */
  auxMask?: Float32Array;
}

/** The batch of `step`: a pure function of the seed and the step, so a resumed run draws the same. */
function stepBatch(spec: RunSpec, data: TrainData, tok: Tokenizer, step: number): StepBatch {
  const pick = batchClips(spec.seed, step, spec.batch, data.pool.length).map((i) => data.pool[i]!);
  // each slot's clip, or a fresh mixture in its place (mix.ts)
  const slots = pick.map((c, i) => {
    const m = planMix(spec.seed, step, i, c, data.labelsOf, spec.mixRate, { third: spec.mixThird, corpusLevels: spec.mixCorpusLevels });
    let slot: { clip: Clip; qas: QA[] };
    if (!m) slot = { clip: data.clips[c]!, qas: data.qas[c]! };
    else {
      const entry = mixedEntry([m.fg, m.bg, ...(m.third ? [m.third.clip] : [])].map((j) => data.clips[j]!.entry), m.captionSeed);
      const { mel, frames, validFrames } = planMels(m, data.clips, spec.dims.nMels);
      slot = { clip: { entry, mel, frames, validFrames, nAudio: audioTokenCount(validFrames) }, qas: clipQAs(entry, spec.labelOrder) };
    }
    if (spec.levelJitter) slot = { ...slot, clip: { ...slot.clip, ...shiftLevel(slot.clip, levelJitterDb(spec.seed, step, i, spec.levelJitter)) } };
    return slot;
  });
  const convs: EncodedConversation[] = [];
  const clipOf: number[] = [];
  pick.forEach((c, i) => {
    for (const qa of pickQuestions(spec.seed, step, c, slots[i]!.qas, spec.questionsPerClip, spec.questionWeights)) {
      convs.push(encodeConversation(tok, slots[i]!.clip.nAudio, [qa]));
      clipOf.push(i);
    }
  });
  const shared = packShared(convs, clipOf, data.tid.endOfText, data.tid.audio);
  const nAux = spec.auxClasses.length;
  let auxTargets: Float32Array | undefined;
  let auxMask: Float32Array | undefined;
  if (nAux) {
    auxTargets = new Float32Array(pick.length * nAux);
    slots.forEach((sl, i) => {
      for (const l of sl.clip.entry.labels) auxTargets![i * nAux + data.auxIndex.get(l)!] = 1;
    });
    if (slots.some((sl) => sl.clip.entry.labelled === false)) auxMask = Float32Array.from(slots, (sl) => (sl.clip.entry.labelled === false ? 0 : 1));
  }
  return { clips: slots.map((s) => s.clip), shared, clipOf, auxTargets, auxMask };
}

/** Mean answer-token loss over every question of `clips` (single-turn, as trained), no gradients. */
export async function validationLoss(engine: Engine, w: Weights, config: Qwen2AudioConfig, tok: Tokenizer, clips: readonly Clip[], clipsPerBatch: number, labelOrder: LabelOrder = 'given'): Promise<number> {
  const tid = templateIds(tok);
  let sum = 0;
  let count = 0;
  for (let i = 0; i < clips.length; i += clipsPerBatch) {
    const part = clips.slice(i, i + clipsPerBatch);
    const convs: EncodedConversation[] = [];
    const clipOf: number[] = [];
    part.forEach((c, j) => {
      for (const qa of clipQAs(c.entry, labelOrder)) {
        convs.push(encodeConversation(tok, c.nAudio, [qa]));
        clipOf.push(j);
      }
    });
    const batch = packShared(convs, clipOf, tid.endOfText, tid.audio);
    const l = engine.noGradScope(() =>
      tidy(() => {
        const mels = part.map((c) => ({ mel: tensor(engine, c.mel, [config.audio_config.num_mel_bins, c.frames]), validFrames: c.validFrames }));
        return trainLoss(engine, w, config, mels, batch, clipOf);
      }),
    );
    sum += (await l.item()) * batch.targets.length;
    count += batch.targets.length;
    l.dispose();
  }
  return sum / count;
}

