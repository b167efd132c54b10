// Every subcommand: its flags and a thin call into the library.
import type { CAC } from 'cac';
import { Engine } from '../gpu/engine.js';
import { describeVariants, flashTile } from '../gpu/profile.js';
import { formatBench, modelTasks, runBench, SAE_TASKS } from '../../bench/run.js';
import { UsageError } from '../util/errors.js';
import { makeCorpus } from '../corpus/index.js';
import type { CorpusOptions } from '../corpus/clips.js';
import { VARIETY_VERSIONS, type VarietyVersion } from '../corpus/plan.js';
import { Progress } from './progress.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../gpu/registry.js';
import { audioWindowSamples, loadAudioLLM, resolveWeightDtype } from '../model/load.js';
import { openClip } from '../audio/stream.js';
import type { AudioLLM } from '../model/audiollm.js';
import { askBatch, askDetailed, askWindows, chatPromptText } from '../model/chat.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { loadQwen2AudioConfig } from '../model/config.js';
import { planModel } from '../model/plan.js';
import * as os from 'node:os';
import { capture, DEFAULT_CAPTURE_PROMPT, shardFromFlags } from '../ard/capture.js';
import { mergeCapture } from '../ard/merge-capture.js';
import { computeTimelines, retrieve } from '../ard/retrieve.js';
import { readCaptureManifest, runPaths } from '../ard/run.js';
import { rank, readFeatures } from '../ard/rank.js';
import { describeFeatures } from '../ard/describe.js';
import { evaluate } from '../ard/evaluate.js';
import { writeReportAsync } from '../ard/report.js';
import { loadSae, saeDigest } from '../sae/load.js';
import { SAE_ARCHS } from '../sae/model.js';
import type { SaeArch } from '../sae/model.js';
import type { Reconstructor } from '../ard/splice.js';
import { spliceStage } from '../ard/splice.js';
import type { Sae } from '../sae/types.js';
import { explainClip, modelDescriber } from '../ard/stages.js';
import { checkSteerExperiment, steerCommand, steerExperiment } from '../ard/steer.js';
import { trainSaeStage } from '../ard/train-sae.js';
import { DEMO_STAGES, runDemo } from '../ard/demo.js';
import { evalModel } from '../train/eval-model.js';
import { fmtTime } from './progress.js';
import { ArdError } from '../util/errors.js';
import { exportSae, SAE_EXPORT_FORMATS, SaeExportFormat } from '../ard/export-sae.js';
import { isLoopback, startServer } from '../serve/server.js';

export interface GlobalFlags {
  json?: boolean;
  quiet?: boolean;
  debug?: boolean;
  backend?: string;
  adapter?: string;
  unsafeApis?: boolean;
}

/** Print a result: JSON on stdout with --json, else the human text. */
export function emit(flags: GlobalFlags, json: unknown, text: () => string): void {
  if (flags.json) process.stdout.write(JSON.stringify(json, null, 2) + '\n');
  else process.stdout.write(text() + '\n');
}

export async function openEngine(flags: GlobalFlags & { timing?: boolean }): Promise<Engine> {
  return Engine.create({ backend: flags.backend, adapter: flags.adapter, timing: flags.timing, unsafeApis: flags.unsafeApis || undefined });
}

export function intFlag(name: string, v: unknown, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name}: expected an integer ≥ ${min}, got '${v}'`);
  return n;
}

export function listFlag(name: string, v: unknown): number[] | undefined {
  if (v === undefined) return undefined;
  const parts = String(v).split(',').filter(Boolean).map(Number);
  if (!parts.length || parts.some((x) => !Number.isFinite(x))) throw new UsageError(`--${name}: expected comma-separated numbers, got '${v}'`);
  return parts;
}

export function defaultModelDir(): string {
  return path.join(packageRoot(), 'weights');
}

/** --dtype / --model-dtype: auto (follow config.json's torch_dtype), f32 or f16. */
export function dtypeFlag(name: string, v: unknown): 'auto' | 'f32' | 'f16' {
  if (v === undefined) return 'auto';
  if (v !== 'auto' && v !== 'f32' && v !== 'f16') throw new UsageError(`--${name}: expected auto, f32 or f16, got '${v}'`);
  return v;
}

/** --kv-dtype: f32 or f16; auto (or absent) lets the loader choose (see defaultKvDtype). */
export function kvDtypeFlag(v: unknown): 'f32' | 'f16' | undefined {
  if (v === undefined || v === 'auto') return undefined;
  if (v !== 'f32' && v !== 'f16') throw new UsageError(`--kv-dtype: expected auto, f32 or f16, got '${v}'`);
  return v;
}

export interface ModelFlags {
  dtype?: 'auto' | 'f32' | 'f16';
  kvDtype?: 'f32' | 'f16';
  /** No notes on stderr (--quiet). */
  silent?: boolean;
}

/**
 * The weight dtype a command will load `dir` with (for commands that hand a folder to the library):
 * its note, if any, goes to stderr unless silent.
 */
export function modelDtype(engine: Engine, dir: string | undefined, o: ModelFlags = {}): 'f32' | 'f16' {
  const d = dir ?? defaultModelDir();
  const file = path.join(d, 'config.json');
  if (!fs.existsSync(file)) throw new ArdError(`${d}: no model here (config.json missing)`);
  const r = resolveWeightDtype(JSON.parse(fs.readFileSync(file, 'utf8')), o.dtype ?? 'auto', engine.f16, file);
  if (r.note && !o.silent) process.stderr.write(r.note + '\n');
  return r.dtype;
}

/** The model flags of a command: --dtype (or capture's --model-dtype), --kv-dtype, --quiet. */
function modelFlags(flags: { dtype?: unknown; modelDtype?: unknown; kvDtype?: unknown; quiet?: boolean }, name: 'dtype' | 'model-dtype' = 'dtype'): ModelFlags {
  return { dtype: dtypeFlag(name, name === 'dtype' ? flags.dtype : flags.modelDtype), kvDtype: kvDtypeFlag(flags.kvDtype), silent: flags.quiet };
}

export async function openModel(engine: Engine, dir: string | undefined, quiet?: boolean, o: ModelFlags = {}): Promise<AudioLLM> {
  const d = dir ?? defaultModelDir();
  if (!fs.existsSync(path.join(d, 'config.json'))) throw new ArdError(`${d}: no model here (config.json missing)`);
  let bar: Progress | null = null;
  const model = await loadAudioLLM(engine, d, {
    // config.json's torch_dtype by default: f16 weights for the embedded model on f16 adapters, as always
    dtype: o.dtype ?? 'auto',
    ...(o.kvDtype ? { kvDtype: o.kvDtype } : {}),
    onNote: (line) => void (o.silent || process.stderr.write(line + '\n')),
    onProgress: (done, total) => {
      bar ??= new Progress('load model', total, { quiet, unit: 'tensors' });
      bar.update(done);
    },
  });
  return model;
}

/** --windows: which windows of a clip longer than the model's audio window are used. */
function windowsFlag(v: unknown): 'first' | 'all' {
  if (v !== 'first' && v !== 'all') throw new UsageError(`--windows: expected first or all, got '${v}'`);
  return v;
}

/** A window's time range, e.g. "4.0–8.0 s". */
function timeRange(w: { start: number; end: number }): string {
  return `${w.start.toFixed(1)}–${w.end.toFixed(1)} s`;
}

/** A word for a POSIX shell: as is when plain, else in single quotes. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function needRun(run: unknown): string {
  if (!run || typeof run !== 'string') throw new UsageError('--run <dir> is required');
  return run;
}

function layerOf(flags: { layer?: unknown }, run?: string): number {
  if (flags.layer !== undefined) return intFlag('layer', flags.layer, 0)!;
  if (run && fs.existsSync(path.join(run, 'capture', 'manifest.json'))) {
    const layers = readCaptureManifest(run).layers;
    if (layers.length === 1) return layers[0]!;
    throw new UsageError(`--layer is required (the run captured layers ${layers.join(', ')})`);
  }
  throw new UsageError('--layer is required');
}

/** --sae PATH (an ardgpu file, or a SAELens or sparsify folder), else RUN/sae-L.safetensors. */
function openSae(engine: Engine, run: string, layer: number, sae?: string): Sae {
  if (sae !== undefined) {
    if (typeof sae !== 'string' || !sae) throw new UsageError('--sae: expected a file or folder');
    return loadSae(engine, sae);
  }
  const file = runPaths(run, layer).sae;
  if (!fs.existsSync(file)) throw new ArdError(`${file}: no SAE for layer ${layer} (run \`ardgpu train-sae --run ${run} --layer ${layer}\` first)`);
  return loadSae(engine, file);
}

const SAE_FLAG_HELP = 'SAE file, or a SAELens or sparsify folder (default: RUN/sae-L.safetensors)';

function bar(label: string, flags: GlobalFlags, unit = 'it') {
  let b: Progress | null = null;
  return {
    update: (done: number, total: number) => {
      b ??= new Progress(label, total, { quiet: flags.quiet, unit });
      b.update(done);
    },
    finish: () => (b as Progress | null)?.finish(),
  };
}

function withGlobals<T extends { option: (...a: any[]) => T }>(cmd: T): T {
  return cmd
    .option('--json', 'Machine-readable result on stdout (nothing else there)')
    .option('--quiet', 'No progress output')
    .option('--debug', 'Show stack traces on errors')
    .option('--backend <name>', 'Dawn backend: vulkan, metal, d3d12 (env ARDGPU_BACKEND)')
    .option('--adapter <name>', 'Pick an adapter by name substring (env ARDGPU_ADAPTER)')
    .option('--unsafe-apis', "Dawn's allow_unsafe_apis, for subgroup matrices (env ARDGPU_UNSAFE_APIS=1)");
}

/** Split weights grouped over layers: "layers.*.mlp.gate|up.weight ×32 (2 blocks each)". */
/** The flags that say how to read a user's corpus (label file columns, fold and hash splits). */
function withCorpusFlags<T extends { option: (...a: any[]) => T }>(cmd: T): T {
  return cmd
    .option('--labels <file>', 'Label file (CSV, TSV or JSONL: file and labels columns; split, fold, caption, speaker, gender, speech optional); paths relative to --corpus (default: its folder)')
    .option('--file-column <name>', 'Label file: the audio file column (default: file, filename, fname or path)')
    .option('--labels-column <name>', "Label file: the labels column, labels separated by ',' or ';' (default: labels or label)")
    .option('--split-column <name>', 'Label file: the split column (default: split)')
    .option('--fold-column <name>', 'Label file: the fold column (default: fold)')
    .option('--caption-column <name>', 'Label file: the caption column (default: caption)')
    .option('--speaker-column <name>', 'Label file: the speaker column (default: speaker)')
    .option('--gender-column <name>', "Label file: the speaker's gender column, female/male (default: gender or sex; else read from labels such as 'female speech')")
    .option('--speech-column <name>', 'Label file: whether a clip holds speech, yes/no (default: speech; else read from the labels when the corpus labels speech)')
    .option('--val-fold <fold>', "Split by fold: this fold's clips are 'val' (default with folds: the second-to-last fold)")
    .option('--test-fold <fold>', "Split by fold: this fold's clips are 'test' (default with folds: the last fold)")
    .option('--split-seed <n>', 'Seed of the file-name hash split (70/15/15) used when the corpus gives neither splits nor folds', { default: 0 });
}

type CorpusFlags = {
  corpus?: string; labels?: string; fileColumn?: string; labelsColumn?: string; splitColumn?: string; foldColumn?: string; captionColumn?: string;
  speakerColumn?: string; genderColumn?: string; speechColumn?: string; valFold?: string | number; testFold?: string | number; splitSeed: string | number;
};

/** The corpus folder (default: the label file's folder) and how to read it, from withCorpusFlags' flags. */
function corpusOf(flags: CorpusFlags): { corpus: string; corpusOptions: CorpusOptions } {
  const corpus = flags.corpus ?? (flags.labels !== undefined ? path.dirname(String(flags.labels)) : undefined);
  if (!corpus) throw new UsageError('--corpus <dir> is required');
  const str = (v: unknown) => (v === undefined ? undefined : String(v));
  return {
    corpus,
    corpusOptions: {
      labels: str(flags.labels), fileColumn: str(flags.fileColumn), labelsColumn: str(flags.labelsColumn), splitColumn: str(flags.splitColumn),
      foldColumn: str(flags.foldColumn), captionColumn: str(flags.captionColumn), speakerColumn: str(flags.speakerColumn),
      genderColumn: str(flags.genderColumn), speechColumn: str(flags.speechColumn),
      valFold: str(flags.valFold), testFold: str(flags.testFold), splitSeed: intFlag('split-seed', flags.splitSeed, 0),
    },
  };
}

function splitSummary(split: readonly { name: string; blocks: number }[]): string {
  const groups = new Map<string, { n: number; blocks: Set<number> }>();
  for (const w of split) {
    const key = w.name.replace(/\.layers\.\d+\./, '.layers.*.');
    const g = groups.get(key) ?? { n: 0, blocks: new Set<number>() };
    g.n++;
    g.blocks.add(w.blocks);
    groups.set(key, g);
  }
  return [...groups].map(([k, g]) => `${k}${g.n > 1 ? ` ×${g.n}` : ''} (${[...g.blocks].join('/')} blocks${g.n > 1 ? ' each' : ''})`).join(', ');
}

export function registerCommands(cli: CAC): void {
  withGlobals(cli.command('info', 'Show the WebGPU adapter: name, backend, features, limits, f16')).action(async (flags: GlobalFlags) => {
    const engine = await openEngine(flags);
    const a = engine.adapter;
    const p = engine.profile;
    const variants = describeVariants(p);
    emit(flags, { ...a, profile: { ...p, variants } }, () =>
      [
        `adapter   ${a.name}`,
        `vendor    ${a.vendor} (${a.architecture})${a.isSoftware ? ' — software rasteriser on the CPU' : ''}`,
        `backend   ${a.backend}`,
        `f16       ${a.f16 ? 'yes (shader-f16)' : 'no'}`,
        `features  ${a.features.join(', ')}`,
        'limits',
        ...Object.entries(a.limits).map(([k, v]) => `  ${k.padEnd(36)} ${v}`),
        `profile   ${p.kind}${p.source === 'adapter' ? ' (detected)' : ` (${p.source}; the adapter is ${p.detected})`}`,
        `subgroups ${p.subgroups ? `${p.subgroupMinSize}–${p.subgroupMaxSize} lanes` : 'no'}`,
        `subgroup matrices ${p.subgroupMatrixConfigs.length ? `${p.subgroupMatrixConfigs.length} configurations` : 'none'}`,
        'kernels',
        ...Object.entries(variants).map(([k, v]) => `  ${k.padEnd(15)} ${v}`),
      ].join('\n'),
    );
    engine.destroy();
  });

  withGlobals(cli.command('bench', 'Kernel microbenchmarks next to the measured FMA peak and copy bandwidth'))
    .option('--only <name>', 'Run only benchmarks whose name contains this')
    .option('--seconds <s>', 'Timing budget per benchmark', { default: 1 })
    .option('--model <dir>', 'Model for the encoder/decoder benchmarks (default: weights/)')
    .action(async (flags: GlobalFlags & { only?: string; seconds?: number; model?: string }) => {
      const engine = await openEngine(flags);
      const { entries, json } = await runBench(engine, {
        only: flags.only,
        seconds: Number(flags.seconds),
        extra: [...SAE_TASKS, ...modelTasks(flags.model ?? defaultModelDir())],
        onProgress: (n) => {
          if (!flags.quiet) process.stderr.write(`bench: ${n}\n`);
        },
      });
      emit(flags, { adapter: engine.adapter?.name, ...json }, () => formatBench(entries, engine.adapter?.name ?? '?'));
      engine.destroy();
    });

  withGlobals(cli.command('make-corpus', 'Generate the labelled synthetic probe corpus (16 kHz WAVs + manifest.jsonl)'))
    .option('--out <dir>', 'Output folder', { default: 'corpus' })
    .option('--seed <s>', 'Seed (integer or string)', { default: 0 })
    .option('--size <n>', 'Number of clips', { default: 1200 })
    .option('--variety [version]', 'The varied corpus for training a model that generalises: more voices and accents, pitch and vocal-tract warps (cross-gender included), single words, short sounds, band limits, clipping; version 2 adds music, chimes and buzzing melodies and renders half the women from warped male voices; version 3 is version 2 with more single words; version 4 is version 3 with recorded instruments and desktop sounds (needs fluidsynth, timgm6mb-soundfont and deepin-sound-theme); version 5 is version 4 with voice qualities (creak, jitter, breath, voicing, tilt) drawn alike for both genders; version 6 is version 5 with formant envelopes reshaped; version 7 is version 6 with a share of voices warped towards the other gender, pitch kept (default version: 1)')
    .action(async (flags: GlobalFlags & { out: string; seed: string | number; size: number; variety?: boolean | string | number }) => {
      const size = intFlag('size', flags.size, 1)!;
      const v = flags.variety;
      if (v !== undefined && v !== true && v !== false && !VARIETY_VERSIONS.map(String).includes(String(v))) throw new UsageError(`--variety: '${v}' is not a version (${VARIETY_VERSIONS.join(', ')})`);
      const variety = v === undefined || v === false ? false : v === true ? 1 : (Number(v) as VarietyVersion);
      let bar: Progress | null = null;
      const r = await makeCorpus({
        out: flags.out,
        seed: flags.seed,
        size,
        variety,
        onProgress: (p) => {
          bar ??= new Progress('make-corpus', p.total, { quiet: flags.quiet, unit: 'clips' });
          bar.update(p.done);
        },
      });
      (bar as Progress | null)?.finish();
      emit(flags, { out: r.out, clips: r.entries.length, rendered: r.rendered, skipped: r.skipped, seconds: r.seconds, info: r.info }, () =>
        `corpus: ${r.entries.length} clips in ${r.out} (${r.rendered} rendered, ${r.skipped} already there) in ${r.seconds.toFixed(1)} s\nmanifest: ${r.out}/manifest.jsonl`,
      );
    });

  withGlobals(cli.command('ask <...wavs>', 'Ask the AudioLLM a question about an audio file (WAV, FLAC, Ogg Vorbis, Ogg Opus, MP3); several files are answered as one batch'))
    .option('--prompt <text>', 'The question', { default: 'Describe the sound.' })
    .option('--model <dir>', 'Model folder (default: the embedded weights/)')
    .option('--dtype <d>', "Model weights: auto (config.json's torch_dtype: float16/bfloat16 → f16 where the adapter has shader-f16), f32 or f16", { default: 'auto' })
    .option('--kv-dtype <d>', 'KV cache: auto (the weight dtype; f32 for ardgpu-trained checkpoints), f32 or f16', { default: 'auto' })
    .option('--max-tokens <n>', 'Maximum new tokens', { default: 64 })
    .option('--seed <s>', 'Sample with this seed (default: greedy)')
    .option('--temperature <t>', 'Sampling temperature (with --seed)', { default: 0.7 })
    .option('--top-p <p>', 'Nucleus sampling (with --seed)', { default: 0.9 })
    .option('--windows <w>', "A clip longer than the model's audio window: first (answer its first window) or all (each window, with its time range)", { default: 'first' })
    .option('--batch <n>', 'Several files: sequences decoded together at most', { default: 32 })
    .action(async (wavs: string[], flags: GlobalFlags & { prompt: string; model?: string; maxTokens: number; seed?: string; temperature: number; topP: number; windows: string; batch: number }) => {
      const windows = windowsFlag(flags.windows);
      if (wavs.length > 1 && windows === 'all') throw new UsageError('--windows all takes one file');
      const maxBatch = intFlag('batch', flags.batch, 1)!;
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, true, modelFlags(flags));
      const sampled = flags.seed !== undefined;
      const askOpts = {
        maxNewTokens: intFlag('max-tokens', flags.maxTokens, 1),
        ...(sampled ? { seed: intFlag('seed', flags.seed, 0), temperature: Number(flags.temperature), topP: Number(flags.topP) } : {}),
        onText: flags.json ? undefined : (piece: string) => void process.stdout.write(piece),
      };
      const wav = wavs[0]!;
      if (wavs.length > 1) {
        // one batch: each answer is what asking about that file alone gives (greedy, or the same seed)
        const t0 = Date.now();
        const rs = await askBatch(model, wavs.map((f) => ({ audio: f, question: String(flags.prompt) })), { ...askOpts, onText: undefined, maxBatch });
        const ms = Date.now() - t0;
        emit(flags, rs.map((r, i) => ({ file: wavs[i], answer: r.text, tokens: r.tokens.length, stopReason: r.stopReason, duration: r.clips[0]!.duration, windows: r.clips[0]!.windows })).map((x) => ({ ...x, batchMs: ms })), () =>
          rs.map((r, i) => `${wavs[i]}: ${r.text}`).join('\n'),
        );
        model.dispose();
        engine.destroy();
        return;
      }
      if (windows === 'all') {
        const answers = await askWindows(model, wav, String(flags.prompt), {
          ...askOpts,
          onWindow: (w) => void (flags.json || process.stdout.write(`${w.index > 0 ? '\n' : ''}[${timeRange(w)}] `)),
        });
        if (flags.json) emit(flags, answers.map((r) => ({ start: r.window.start, end: r.window.end, answer: r.text, tokens: r.tokens.length, stopReason: r.stopReason })), () => '');
        else process.stdout.write('\n');
      } else {
        const t0 = Date.now();
        const r = await askDetailed(model, wav, String(flags.prompt), askOpts);
        const ms = Date.now() - t0;
        const clip = r.clips[0]!;
        const window = { start: clip.window.start, end: clip.window.end };
        if (flags.json) emit(flags, { answer: r.text, tokens: r.tokens.length, ms, stopReason: r.stopReason, duration: clip.duration, windows: clip.windows, window, dtype: model.dtype, kvDtype: model.kvDtype }, () => '');
        else process.stdout.write('\n');
        if (clip.windows > 1) {
          process.stderr.write(`note: ${path.basename(wav)} is ${clip.duration.toFixed(1)} s; answered its first ${(window.end - window.start).toFixed(1)} s window (--windows all answers each)\n`);
        }
      }
      model.dispose();
      engine.destroy();
    });

  withCorpusFlags(withGlobals(cli.command('capture', 'Capture residual-stream activations of chosen decoder layers over a corpus')))
    .option('--corpus <dir>', 'Corpus folder: manifest.jsonl, ESC-50, FSD50K, UrbanSound8K, a folder per class, or any folder of WAVs')
    .option('--out <dir>', 'Run folder (alias of --run)')
    .option('--run <dir>', 'Run folder')
    .option('--layers <list>', 'Decoder layers, e.g. 1,3', { default: '1' })
    .option('--model <dir>', 'Model folder (default: weights/)')
    .option('--model-dtype <d>', "Model weights (--dtype is the shards'): auto (config.json's torch_dtype: float16/bfloat16 → f16 where the adapter has shader-f16), f32 or f16", { default: 'auto' })
    .option('--kv-dtype <d>', 'KV cache: auto (the weight dtype; f32 for ardgpu-trained checkpoints), f32 or f16', { default: 'auto' })
    .option('--prompt <text>', 'Fixed prompt', { default: DEFAULT_CAPTURE_PROMPT })
    .option('--all-positions', 'Store every prompt position, not only the audio tokens')
    .option('--dtype <t>', 'Shard dtype: f16 or f32', { default: 'f16' })
    .option('--limit <n>', 'At most this many clips')
    .option('--shard <i/n>', 'Capture only part I of N (I from 0) into RUN/capture/parts/I-of-N; then merge-capture')
    .option('--shards <n>', 'Like --shard, the part index from JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID')
    .option('--force', 'Recompute even if inputs are unchanged')
    .action(async (flags: GlobalFlags & CorpusFlags & { out?: string; run?: string; layers: string; model?: string; prompt: string; allPositions?: boolean; dtype: string; limit?: string; shard?: string | number; shards?: string | number; force?: boolean }) => {
      const { corpus, corpusOptions } = corpusOf(flags);
      const str = (v: unknown) => (v === undefined ? undefined : String(v));
      const run = needRun(flags.run ?? flags.out);
      if (flags.dtype !== 'f16' && flags.dtype !== 'f32') throw new UsageError(`--dtype: expected f16 or f32, got '${flags.dtype}'`);
      const shard = shardFromFlags(str(flags.shard), flags.shards);
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, flags.quiet, modelFlags(flags, 'model-dtype'));
      const b = bar(shard ? `capture ${shard.index}/${shard.count}` : 'capture', flags, 'clips');
      const r = await capture({
        model, corpus, corpusOptions, run, layers: listFlag('layers', flags.layers)!, prompt: flags.prompt,
        positions: flags.allPositions ? 'all' : 'audio', dtype: flags.dtype, limit: intFlag('limit', flags.limit, 1), force: flags.force, shard,
        onProgress: b.update,
        onBadClip: (file, error) => void (flags.quiet || process.stderr.write(`\nskipped ${error}\n`)),
        onSkippedRow: (line) => void (flags.quiet || process.stderr.write(`left out ${line}\n`)),
      });
      b.finish();
      const notes = [r.bad.length ? `${r.bad.length} bad clips skipped` : '', r.skippedRows.length ? `${r.skippedRows.length} metadata rows left out` : ''].filter(Boolean);
      const partNote = r.part ? ` (part ${r.part.index} of ${r.part.count}: clips ${r.part.clipStart}–${r.part.clipEnd - 1} of ${r.part.totalClips}; when every part is done: ardgpu merge-capture --run ${run})` : '';
      emit(flags, r, () => `${r.skipped ? `capture: unchanged, kept ${r.manifest}` : `capture: ${r.clips} clips, ${r.rows} rows in ${r.seconds.toFixed(1)} s → ${r.manifest}`}${notes.length ? ` (${notes.join(', ')})` : ''}${partNote}; splits ${r.split.description}`);
      model.dispose();
      engine.destroy();
    });

  withGlobals(cli.command('merge-capture', 'Join the parts of a sharded capture (capture --shard/--shards) into RUN/capture/manifest.json'))
    .option('--run <dir>', 'Run folder')
    .option('--shards <n>', 'Which N to merge when parts of several N are present')
    .action(async (flags: GlobalFlags & { run?: string; shards?: string | number }) => {
      const run = needRun(flags.run);
      const r = mergeCapture({ run, shards: intFlag('shards', flags.shards, 1) });
      emit(flags, r, () => `merge-capture: ${r.parts} parts, ${r.clips} clips, ${r.rows} rows${r.skipped ? ' (unchanged)' : ''} → ${r.manifest}${r.bad.length ? ` (${r.bad.length} bad clips skipped)` : ''}`);
    });

  withGlobals(cli.command('retrieve', 'Per feature × clip: mean activation, coverage, H^k/L^k; rank features by monosemanticity'))
    .option('--run <dir>', 'Run folder')
    .option('--layer <n>', 'Decoder layer')
    .option('--p <n>', 'Clips in H^k and L^k', { default: 10 })
    .option('--keep <n>', 'Keep the top C features', { default: 50 })
    .option('--sae <path>', SAE_FLAG_HELP)
    .option('--force', 'Recompute even if inputs are unchanged')
    .action(async (flags: GlobalFlags & { run?: string; layer?: string; p: number; keep: number; sae?: string; force?: boolean }) => {
      const run = needRun(flags.run);
      const layer = layerOf(flags, run);
      const engine = await openEngine(flags);
      const sae = openSae(engine, run, layer, flags.sae);
      const b = bar('retrieve', flags, 'rows');
      const r = await retrieve({ engine, run, layer, sae, p: intFlag('p', flags.p, 1), force: flags.force, onProgress: b.update, ...(flags.sae === undefined ? {} : { saeHash: saeDigest(flags.sae) }) });
      b.finish();
      const f = rank({ run, layer, C: intFlag('keep', flags.keep, 1), saeFile: flags.sae });
      await computeTimelines({ engine, run, layer, sae });
      emit(flags, { retrieve: r, kept: f.features.length, features: runPaths(run, layer).features }, () =>
        `retrieve: ${r.nClips} clips × ${r.m} features${r.skipped ? ' (unchanged)' : ` in ${r.seconds.toFixed(1)} s`}; kept ${f.features.length} features → ${runPaths(run, layer).features}`,
      );
      engine.destroy();
    });

  withGlobals(cli.command('describe', 'Caption each kept feature\'s top clips with the AudioLLM and name the concept'))
    .option('--run <dir>', 'Run folder')
    .option('--layer <n>', 'Decoder layer')
    .option('--model <dir>', 'Model folder (default: weights/)')
    .option('--dtype <d>', "Model weights: auto (config.json's torch_dtype: float16/bfloat16 → f16 where the adapter has shader-f16), f32 or f16", { default: 'auto' })
    .option('--kv-dtype <d>', 'KV cache: auto (the weight dtype; f32 for ardgpu-trained checkpoints), f32 or f16', { default: 'auto' })
    .option('--clips <n>', 'Captions per feature', { default: 5 })
    .option('--force', 'Re-describe features that already have a name')
    .action(async (flags: GlobalFlags & { run?: string; layer?: string; model?: string; clips: number; force?: boolean }) => {
      const run = needRun(flags.run);
      const layer = layerOf(flags, run);
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, flags.quiet, modelFlags(flags));
      const b = bar('describe', flags, 'features');
      const doc = await describeFeatures({ run, layer, describer: modelDescriber(model), clipsPerFeature: intFlag('clips', flags.clips, 1), force: flags.force, onProgress: b.update });
      b.finish();
      emit(flags, doc.features.map((f) => ({ id: f.id, name: f.name })), () => doc.features.map((f) => `#${f.id}\t${f.name ?? '?'}`).join('\n'));
      model.dispose();
      engine.destroy();
    });

  withGlobals(cli.command('splice', "Spliced-in loss: the model's answer loss with the layer's residual replaced by the SAE's reconstruction → RUN/splice-L.json"))
    .option('--run <dir>', 'Run folder')
    .option('--layer <n>', 'Decoder layer')
    .option('--model <dir>', 'Model folder (default: weights/)')
    .option('--clips <n>', 'Clips scored, spread evenly over the capture', { default: 32 })
    .option('--max-tokens <n>', 'Longest greedy answer (clips without a caption)', { default: 32 })
    .option('--sae <path>', SAE_FLAG_HELP)
    .option('--force', 'Recompute even if inputs are unchanged')
    .action(async (flags: GlobalFlags & { run?: string; layer?: string; model?: string; clips: number; maxTokens: number; sae?: string; force?: boolean }) => {
      const run = needRun(flags.run);
      const layer = layerOf(flags, run);
      const engine = await openEngine(flags);
      const sae = openSae(engine, run, layer, flags.sae);
      if (typeof (sae as Partial<Reconstructor>).reconstruct !== 'function') throw new ArdError(`${flags.sae ?? runPaths(run, layer).sae}: this SAE cannot reconstruct its input`);
      const model = await openModel(engine, flags.model, flags.quiet);
      const saeFile = flags.sae ?? runPaths(run, layer).sae;
      const b = bar('splice', flags, 'clips');
      const r = await spliceStage({
        model, sae: sae as unknown as Reconstructor, run, layer, saeId: { digest: saeDigest(saeFile), name: saeFile },
        clips: intFlag('clips', flags.clips, 1), maxNewTokens: intFlag('max-tokens', flags.maxTokens, 1), force: flags.force, onProgress: b.update,
      });
      b.finish();
      emit(flags, r, () =>
        `splice: ${r.skipped ? 'unchanged; ' : ''}loss recovered ${r.recovered === null ? 'n/a' : r.recovered.toFixed(4)} (CE clean ${r.ceClean.toFixed(4)}, SAE ${r.ceSae.toFixed(4)}, zero ${r.ceZero.toFixed(4)}), KL ${r.klSae.toExponential(3)} over ${r.tokens} answer tokens of ${r.clips} clips → ${r.file}`,
      );
      sae.dispose();
      model.dispose();
      engine.destroy();
    });

  withGlobals(cli.command('evaluate', 'Precision, recall, F1, mAP of features vs labels, with neuron and random baselines'))
    .option('--run <dir>', 'Run folder')
    .option('--layer <n>', 'Decoder layer')
    .option('--seed <s>', 'Seed for the random-direction baseline', { default: 0 })
    .action(async (flags: GlobalFlags & { run?: string; layer?: string; seed: number }) => {
      const run = needRun(flags.run);
      const layer = layerOf(flags, run);
      const r = evaluate({ run, layer, seed: intFlag('seed', flags.seed, 0) });
      emit(flags, r, () =>
        ['| method | precision | recall | F1 | mAP |', '| --- | ---: | ---: | ---: | ---: |',
          ...(['sae', 'neurons', 'random'] as const).map((k) => `| ${k} | ${r[k].precision.toFixed(3)} | ${r[k].recall.toFixed(3)} | ${r[k].f1.toFixed(3)} | ${r[k].map.toFixed(3)} |`),
          `name accuracy: ${r.name_accuracy === null || r.name_accuracy === undefined ? 'n/a (no named features)' : r.name_accuracy.toFixed(3)}`,
          ...(r.ablations
            ? ['', '| ablation | mono | P | R | F1 | mAP |', '| --- | ---: | ---: | ---: | ---: | ---: |',
                ...Object.entries(r.ablations.rows).map(([k, a]) => `| ${k} | ${a.mono.toFixed(3)} | ${a.precision.toFixed(3)} | ${a.recall.toFixed(3)} | ${a.f1.toFixed(3)} | ${a.map.toFixed(3)} |`)]
            : [])].join('\n'),
      );
    });

  withGlobals(cli.command('report', 'Write RUN/report.html: one self-contained page with every result'))
    .option('--run <dir>', 'Run folder')
    .action(async (flags: GlobalFlags & { run?: string }) => {
      const run = needRun(flags.run);
      const r = await writeReportAsync(run);
      emit(flags, r, () => `report: ${r.file} (${(r.bytes / 1e6).toFixed(1)} MB)`);
    });

  withGlobals(cli.command('explain <wav>', 'Which named features fire when in a clip: a terminal timeline, or JSON'))
    .option('--run <dir>', 'Run folder')
    .option('--layer <n>', 'Decoder layer')
    .option('--model <dir>', 'Model folder (default: weights/)')
    .option('--dtype <d>', "Model weights: auto (config.json's torch_dtype: float16/bfloat16 → f16 where the adapter has shader-f16), f32 or f16", { default: 'auto' })
    .option('--kv-dtype <d>', 'KV cache: auto (the weight dtype; f32 for ardgpu-trained checkpoints), f32 or f16', { default: 'auto' })
    .option('--threshold <x>', 'Fire above this fraction of a feature\'s typical activation', { default: 0 })
    .option('--sae <path>', SAE_FLAG_HELP)
    .action(async (wav: string, flags: GlobalFlags & { run?: string; layer?: string; model?: string; threshold: number; sae?: string }) => {
      const run = needRun(flags.run);
      const layer = layerOf(flags, run);
      const features = readFeatures(runPaths(run, layer).features).features.filter((f) => f.name);
      // the clip is checked (and a long one measured) before the model loads, then read a window at a time
      const clip = await openClip(wav, audioWindowSamples(flags.model ?? defaultModelDir()));
      try {
        const engine = await openEngine(flags);
        const model = await openModel(engine, flags.model, true, modelFlags(flags));
        const sae = openSae(engine, run, layer, flags.sae);
        // a long clip's rows continue in time across windows
        const o = { model, sae, clip, layer, prompt: readCaptureManifest(run).prompt, features, threshold: Number(flags.threshold) };
        if (flags.json) {
          const r = await explainClip(o);
          emit(flags, { file: wav, duration: r.duration, features: r.features }, () => r.timeline);
        } else {
          // the timeline needs no segments: nothing kept grows with the clip
          const r = await explainClip({ ...o, timelineOnly: true });
          emit(flags, r, () => r.timeline);
        }
        model.dispose();
        engine.destroy();
      } finally {
        clip.close();
      }
    });

  withGlobals(cli.command('steer <wav>', 'Generate with one SAE feature set or offset to each value (reconstruction error kept)'))
    .option('--run <dir>', 'Run folder')
    .option('--layer <n>', 'Decoder layer')
    .option('--feature <id>', 'Feature id')
    .option('--values <list>', 'Values to sweep', { default: '0,5,10,20' })
    .option('--prompt <text>', 'The question', { default: 'What is the gender of the speaker?' })
    .option('--mode <m>', 'add: z_F + value (0 = unsteered, exactly); set: z_F = value', { default: 'add' })
    .option('--positions <p>', 'all: prompt and generated tokens; audio: audio tokens only', { default: 'all' })
    .option('--model <dir>', 'Model folder (default: weights/)')
    .option('--dtype <d>', "Model weights: auto (config.json's torch_dtype: float16/bfloat16 → f16 where the adapter has shader-f16), f32 or f16", { default: 'auto' })
    .option('--max-tokens <n>', 'Maximum new tokens', { default: 32 })
    .option('--windows <w>', "A clip longer than the model's audio window: first (sweep its first window) or all (each window)", { default: 'first' })
    .option('--sae <path>', SAE_FLAG_HELP)
    .action(async (wav: string, flags: GlobalFlags & { run?: string; layer?: string; feature?: string; values: string; prompt: string; mode: string; positions: string; model?: string; maxTokens: number; windows: string; sae?: string }) => {
      const run = needRun(flags.run);
      const layer = layerOf(flags, run);
      if (flags.feature === undefined) throw new UsageError('--feature <id> is required');
      if (flags.mode !== 'add' && flags.mode !== 'set') throw new UsageError(`--mode: expected add or set, got '${flags.mode}'`);
      if (flags.positions !== 'all' && flags.positions !== 'audio') throw new UsageError(`--positions: expected all or audio, got '${flags.positions}'`);
      const windows = windowsFlag(flags.windows);
      const engine = await openEngine(flags);
      const o = {
        engine, modelDir: flags.model ?? defaultModelDir(), run, layer, feature: intFlag('feature', flags.feature, 0)!,
        values: listFlag('values', flags.values)!, prompt: String(flags.prompt), wav, mode: flags.mode, positions: flags.positions,
        maxNewTokens: intFlag('max-tokens', flags.maxTokens, 1),
        dtype: modelDtype(engine, flags.model, { dtype: dtypeFlag('dtype', (flags as { dtype?: unknown }).dtype), silent: flags.quiet }),
        ...(flags.sae === undefined ? {} : { saeFile: String(flags.sae) }),
      } as const;
      const shown = windows === 'all' ? await steerCommand({ ...o, windows: 'all' }) : [await steerCommand(o)];
      const lines = (r: (typeof shown)[number]) => [`  unsteered: ${r.baseline}`, ...r.values.map((v) => `  ${String(v.value).padStart(6)}: ${v.answer}`)];
      const r0 = shown[0]!;
      const head = `feature #${r0.feature}${r0.name ? ` (${r0.name})` : ''} at layer ${r0.layer}, ${r0.mode} — ${r0.question}`;
      emit(flags, windows === 'all' ? shown : r0, () =>
        [head, ...shown.flatMap((r) => (windows === 'all' && r.window ? [`[${timeRange(r.window)}]`, ...lines(r)] : lines(r)))].join('\n'),
      );
      if (windows === 'first' && r0.window) {
        process.stderr.write(`note: ${path.basename(wav)} is ${r0.window.clipSeconds.toFixed(1)} s; steered its first ${(r0.window.end - r0.window.start).toFixed(1)} s window (--windows all steers each)\n`);
      }
      engine.destroy();
    });

  withGlobals(cli.command('steer-experiment', 'Steer the clips labelled --from toward --expect: flip and control rates, against a raw neuron and a random direction → RUN/steering.json'))
    .option('--run <dir>', 'Run folder')
    .option('--layer <n>', 'Decoder layer')
    .option('--from <label>', 'Source concept: a label of the captured corpus (e.g. "female speech")')
    .option('--prompt <text>', 'The question (e.g. "What is the gender of the speaker?")')
    .option('--expect <word>', 'What a flipped answer says (e.g. male)')
    .option('--control-prompt <text>', 'A question whose answer must not change', { default: 'Is anyone speaking?' })
    .option('--values <list>', 'Magnitudes to sweep (in feature units unless --units raw)', { default: '0,1,2,4,8,16' })
    .option('--units <u>', "feature: values × the feature's largest clip-mean activation; raw: as given", { default: 'feature' })
    .option('--feature <id>', 'Steer this feature (default: those named for --expect, compared on the selection split)')
    .option('--mode <m>', 'With --feature: add (z_F + value) or set (z_F = value)', { default: 'add' })
    .option('--split <s>', 'Split whose --from clips are scored', { default: 'test' })
    .option('--selection-split <s>', 'Split whose --from clips choose among named features', { default: 'val' })
    .option('--max-clips <n>', 'At most this many scored clips')
    .option('--no-baselines', 'Skip the neuron and random-direction baselines')
    .option('--seed <s>', "The random direction's seed", { default: 0 })
    .option('--model <dir>', 'Model folder (default: weights/)')
    .option('--max-tokens <n>', 'Maximum new tokens per answer', { default: 32 })
    .option('--batch <n>', 'Sequences decoded together at most (the answers do not depend on it)', { default: 32 })
    .option('--sae <path>', SAE_FLAG_HELP)
    .option('--force', 'Rerun even if the inputs are unchanged')
    .action(async (flags: GlobalFlags & {
      run?: string; layer?: string; from?: string; prompt?: string; expect?: string; controlPrompt: string; values: string; units: string; feature?: string; mode: string;
      split: string; selectionSplit: string; maxClips?: string; baselines: boolean; seed: number; model?: string; maxTokens: number; batch: number; force?: boolean; sae?: string;
    }) => {
      const run = needRun(flags.run);
      const layer = layerOf(flags, run);
      for (const k of ['from', 'prompt', 'expect'] as const) {
        if (typeof flags[k] !== 'string' || !flags[k]!.trim()) throw new UsageError(`--${k} <${k === 'from' ? 'label' : k === 'prompt' ? 'text' : 'word'}> is required`);
      }
      if (flags.units !== 'feature' && flags.units !== 'raw') throw new UsageError(`--units: expected feature or raw, got '${flags.units}'`);
      if (flags.mode !== 'add' && flags.mode !== 'set') throw new UsageError(`--mode: expected add or set, got '${flags.mode}'`);
      const values = listFlag('values', flags.values)!;
      const feature = intFlag('feature', flags.feature, 0);
      const batch = intFlag('batch', flags.batch, 1);
      checkSteerExperiment({ run, layer, from: flags.from!, expect: flags.expect!, split: String(flags.split), feature }); // before loading anything
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, true);
      const sae = openSae(engine, run, layer, flags.sae);
      const b = bar('steer', flags, 'clips');
      try {
        const r = await steerExperiment({
          model, sae, ...(flags.sae !== undefined ? { saeFile: String(flags.sae) } : {}), run, layer, from: flags.from!, prompt: flags.prompt!, expect: flags.expect!, controlPrompt: String(flags.controlPrompt),
          values, valuesInFeatureUnits: flags.units === 'feature', ...(feature !== undefined ? { feature, mode: flags.mode as 'add' | 'set' } : {}),
          split: String(flags.split), selectionSplit: String(flags.selectionSplit), maxClips: intFlag('max-clips', flags.maxClips, 1),
          baselines: flags.baselines !== false, randomSeed: intFlag('seed', flags.seed, 0), maxNewTokens: intFlag('max-tokens', flags.maxTokens, 1), batch, force: flags.force,
          onProgress: b.update,
        });
        b.finish();
        const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
        const { per_clip: _p, sweeps: _s, ...summary } = r;
        const json = { ...summary, baselines: r.baselines?.map(({ per_clip: _q, values: v, ...rest }) => ({ ...rest, values: v.map(({ answers: _a, ...x }) => x) })) };
        emit(flags, { file: runPaths(run, layer).steering, ...json }, () =>
          [
            `feature #${r.feature}${r.name ? ` (${r.name})` : ''} at layer ${r.layer}, ${r.mode}: '${r.from}' clips of split '${r.split}' → '${r.target}'${r.skipped ? ' (unchanged)' : ''}`,
            `  values      ${r.values.join(', ')}${r.value_unit !== 1 ? ` (${r.value_unit.toPrecision(4)} per unit)` : ''}`,
            `  ${'method'.padEnd(10)}  ${'flip rate'.padStart(9)}  ${'unchanged'.padStart(9)}`,
            `  ${'feature'.padEnd(10)}  ${pct(r.flip_rate).padStart(9)}  ${pct(r.unchanged_rate).padStart(9)}   over ${r.clips} clips`,
            ...(r.baselines ?? []).map((x) => `  ${x.kind.padEnd(10)}  ${pct(x.flip_rate).padStart(9)}  ${pct(x.unchanged_rate).padStart(9)}   ${x.description}`),
            `  → ${runPaths(run, layer).steering}`,
          ].join('\n'),
        );
      } finally {
        sae.dispose();
        model.dispose();
        engine.destroy();
      }
    });

  withGlobals(cli.command('train-sae', 'Train a Top-K sparse autoencoder on one captured layer → RUN/sae-L.safetensors'))
    .option('--run <dir>', 'Run folder')
    .option('--layer <n>', 'Decoder layer')
    .option('--latents <m>', 'Number of latents (default 8·d)')
    .option('--k <k>', 'Active latents per token', { default: 16 })
    .option('--steps <n>', 'Training steps (default: about 20 epochs, 200–4000)')
    .option('--batch <n>', 'Batch size', { default: 4096 })
    .option('--lr <x>', 'Learning rate (default 2e-4/sqrt(m/16384))')
    .option('--seed <s>', 'Seed', { default: 0 })
    .option('--arch <a>', 'topk (k latents per token) or batchtopk (k·batch per batch in training, one threshold at inference)', { default: 'topk' })
    .option('--force', 'Retrain even if inputs are unchanged')
    .action(async (flags: GlobalFlags & { run?: string; layer?: string; latents?: string; k: number; steps?: string; batch: number; lr?: string; seed: number; arch: string; force?: boolean }) => {
      const run = needRun(flags.run);
      const layer = layerOf(flags, run);
      if (!(SAE_ARCHS as readonly string[]).includes(flags.arch)) throw new UsageError(`--arch: expected ${SAE_ARCHS.join(' or ')}, got '${flags.arch}'`);
      const engine = await openEngine(flags);
      let b: Progress | null = null;
      const r = await trainSaeStage({
        engine, run, layer, m: intFlag('latents', flags.latents, 1), k: intFlag('k', flags.k, 1), steps: intFlag('steps', flags.steps, 1),
        batchSize: intFlag('batch', flags.batch, 1), lr: flags.lr === undefined ? undefined : Number(flags.lr), seed: intFlag('seed', flags.seed, 0), force: flags.force, arch: flags.arch as SaeArch,
        onLog: (l, steps) => {
          b ??= new Progress('train-sae', steps, { quiet: flags.quiet, unit: 'steps' });
          b.update(Math.min(l.step + 1, steps), `fvu ${l.fvu.toFixed(3)} dead ${(l.deadShare * 100).toFixed(0)}%`);
        },
      });
      (b as Progress | null)?.finish();
      emit(flags, r, () => r.skipped ? `train-sae: unchanged, kept ${r.file}` : `train-sae: FVU ${r.metrics!.fvu.toFixed(4)}, MSE ${r.metrics!.mse.toExponential(3)}, L0 ${r.metrics!.l0}, dead ${(r.metrics!.deadShare * 100).toFixed(1)}%, ${r.metrics!.tokensPerS.toFixed(0)} tokens/s → ${r.file}`);
      engine.destroy();
    });

  withGlobals(cli.command('demo', 'The whole AR&D loop on the embedded default model, ending with RUN/report.html'))
    .option('--out <dir>', 'Run folder', { default: 'runs/demo' })
    .option('--model <dir>', 'Model folder (default: weights/)')
    .option('--dtype <d>', "Model weights: auto (config.json's torch_dtype: float16/bfloat16 → f16 where the adapter has shader-f16), f32 or f16", { default: 'auto' })
    .option('--kv-dtype <d>', 'KV cache: auto (the weight dtype; f32 for ardgpu-trained checkpoints), f32 or f16', { default: 'auto' })
    .option('--layer <n>', 'Decoder layer (default: the middle one)')
    .option('--size <n>', 'Corpus clips', { default: 1200 })
    .option('--seed <s>', 'Seed', { default: 0 })
    .option('--force', 'Recompute every stage')
    .action(async (flags: GlobalFlags & { out: string; model?: string; layer?: string; size: number; seed: number; force?: boolean }) => {
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, flags.quiet, modelFlags(flags));
      const say = (line: string) => void (flags.quiet || process.stderr.write(`${line}\n`));
      let bar: Progress | null = null;
      let current = '';
      const t0 = Date.now();
      const r = await runDemo({
        engine, model, out: flags.out, layer: intFlag('layer', flags.layer, 0), size: intFlag('size', flags.size, 30), seed: intFlag('seed', flags.seed, 0), force: flags.force,
        onStage: (name, i, n) => {
          (bar as Progress | null)?.finish();
          bar = null;
          current = name;
          say(`[${i}/${n}] ${name}  (elapsed ${fmtTime((Date.now() - t0) / 1000)})`);
        },
        onProgress: (stage, done, total) => {
          if (stage !== current) return;
          bar ??= new Progress(`  ${stage}`, total, { quiet: flags.quiet });
          bar.update(done);
        },
        log: (line) => {
          (bar as Progress | null)?.finish();
          bar = null;
          say(`  ${line}`);
        },
      });
      const serve = `ardgpu serve --run ${shellQuote(path.resolve(r.run))}`;
      emit(flags, { ...r, serve }, () => `demo finished in ${fmtTime(r.seconds)} (${DEMO_STAGES.length} stages, layer ${r.layer})\nreport: ${path.resolve(r.report)}\nexplore it: ${serve}`);
      model.dispose();
      engine.destroy();
    });

  withGlobals(cli.command('serve', 'A local web explorer over runs: feature table and pages, explain and steer in the browser'))
    .option('--run <dir>', 'Run folder (repeat for several runs)')
    .option('--port <n>', 'Port (0: any free one)', { default: 8080 })
    .option('--host <addr>', 'Listen address (default 127.0.0.1; another address has NO authentication)')
    .option('--model <dir>', 'Model folder for explain and steer (default: weights/)')
    .action(async (flags: GlobalFlags & { run?: string | string[]; port: number; host?: string; model?: string }) => {
      const list = (Array.isArray(flags.run) ? flags.run : [flags.run]).filter((r): r is string => typeof r === 'string' && r !== '');
      if (!list.length) throw new UsageError('--run <dir> is required');
      const host = flags.host === undefined ? '127.0.0.1' : String(flags.host);
      const srv = await startServer({
        runs: list, host, port: intFlag('port', flags.port, 0), allowRemote: flags.host !== undefined, modelDir: flags.model,
        engineOptions: { backend: flags.backend, adapter: flags.adapter, unsafeApis: flags.unsafeApis || undefined },
        log: (line) => void (flags.quiet || process.stderr.write(line + '\n')),
      });
      if (!isLoopback(host)) process.stderr.write(`warning: serving on ${host} with no authentication: anyone who can reach this port can read these runs and use this machine's GPU\n`);
      const info = { url: srv.url, runs: srv.runs.list.map((r) => ({ name: r.name, dir: r.dir, layers: r.layers })) };
      // one line, printed as soon as it listens (the process keeps running)
      process.stdout.write(flags.json ? JSON.stringify(info) + '\n' : `explorer: ${srv.url}  (${info.runs.map((r) => r.name).join(', ')}; Ctrl-C stops)\n`);
      await new Promise<void>((resolve) => {
        const stop = () => void srv.close().then(resolve, resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });

  withGlobals(cli.command('plan', 'Whether a model fits this adapter, from its config alone: weights, split tensors, KV cache, activations'))
    .option('--model <dir>', 'Model folder with config.json (default: the embedded weights/)')
    .option('--dtype <d>', 'Weight dtype: f32 or f16', { default: 'f32' })
    .option('--positions <n>', "Positions per sequence (default: one audio window's tokens + 256)")
    .option('--kv-dtype <d>', 'KV cache dtype: f32 or f16', { default: 'f32' })
    .option('--batch <n>', 'Sequences decoded together', { default: 1 })
    .option('--memory-gib <g>', 'Memory available to the device (default: host RAM on a software adapter, else unknown)')
    .action(async (flags: GlobalFlags & { model?: string; dtype: string; kvDtype: string; positions?: string; batch: string; memoryGib?: string }) => {
      if (flags.dtype !== 'f32' && flags.dtype !== 'f16') throw new UsageError(`--dtype: expected f32 or f16, got '${flags.dtype}'`);
      if (flags.kvDtype !== 'f32' && flags.kvDtype !== 'f16') throw new UsageError(`--kv-dtype: expected f32 or f16, got '${flags.kvDtype}'`);
      const memGib = flags.memoryGib === undefined ? undefined : Number(flags.memoryGib);
      if (memGib !== undefined && !(memGib > 0)) throw new UsageError(`--memory-gib: expected a positive number, got '${flags.memoryGib}'`);
      const dir = flags.model ?? defaultModelDir();
      const config = loadQwen2AudioConfig(dir);
      const engine = await openEngine(flags);
      const a = engine.adapter!;
      const memoryBytes = memGib !== undefined ? memGib * 2 ** 30 : a.isSoftware ? os.totalmem() : undefined;
      const p = planModel(config, {
        dtype: flags.dtype,
        kvDtype: flags.kvDtype,
        positions: intFlag('positions', flags.positions, 1),
        batch: intFlag('batch', flags.batch, 1),
        maxBindingBytes: engine.limits.maxStorageBufferBindingSize,
        maxBufferBytes: engine.limits.maxBufferSize,
        memoryBytes,
        // the op falls back to chunked when no flash tile fits this head size
        attention: engine.profile.nn.attention === 'flash' && flashTile(engine.profile, config.text_config.head_dim, config.text_config.head_dim) && flashTile(engine.profile, config.audio_config.d_model / config.audio_config.encoder_attention_heads, config.audio_config.d_model / config.audio_config.encoder_attention_heads) ? 'flash' : 'chunked',
      });
      engine.destroy();
      const f16Note = flags.dtype === 'f16' && !a.f16 ? ' — this adapter has no shader-f16: loading f16 will be refused' : '';
      if (flags.dtype === 'f16' && !a.f16) p.problems.push('f16 weights need shader-f16, which this adapter lacks');
      p.fits = p.problems.length === 0;
      const gib = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);
      const t = config.text_config;
      emit(flags, { model: dir, adapter: a.name, ...p }, () =>
        [
          `model        ${dir} (${t.num_hidden_layers} decoder layers, hidden ${t.hidden_size}, vocab ${t.vocab_size}; encoder ${config.audio_config.encoder_layers} layers, width ${config.audio_config.d_model})`,
          `adapter      ${a.name}: binding ${gib(p.limits.maxBindingBytes)} usable, buffer ${gib(p.limits.maxBufferBytes)}`,
          `weights      ${gib(p.weights.bytes)} in ${p.weights.tensors} tensors (${p.dtype}${f16Note}); largest ${p.weights.largest.name} [${p.weights.largest.shape.join(', ')}] ${gib(p.weights.largest.bytes)}`,
          p.split.length === 0
            ? 'split        nothing: every weight fits one binding'
            : `split        ${p.split.length} weights into row blocks: ${splitSummary(p.split)}`,
          `KV cache     ${gib(p.kvCache.bytes)} (${p.positions} positions × ${p.batch} sequence${p.batch > 1 ? 's' : ''}, ${p.kvCache.dtype})`,
          `activations  largest ${p.activations.slice(0, 3).map((x) => `${x.name} [${x.shape.join(', ')}] ${gib(x.bytes)}`).join('; ')}`,
          `total        about ${gib(p.totalBytes)}; memory ${p.limits.memoryBytes === null ? 'unknown (WebGPU does not report it: --memory-gib states it)' : gib(p.limits.memoryBytes)}`,
          p.fits ? 'fits         yes' : `fits         no:\n${p.problems.map((x) => `  - ${x}`).join('\n')}`,
        ].join('\n'),
      );
    });

  withGlobals(cli.command('tokenize <text>', "Token ids and pieces of a text under a model's tokenizer (debug prompts)"))
    .option('--model <dir>', 'Model folder with tokenizer.json (default: the embedded weights/)')
    .option('--chat', 'Wrap the text in the chat template as the user turn after one audio clip, as ask does')
    .option('--no-special', 'Treat special-token strings in the text as plain text')
    .action((text: string, flags: GlobalFlags & { model?: string; chat?: boolean; special: boolean }) => {
      const tok = loadTokenizer(path.join(flags.model ?? defaultModelDir(), 'tokenizer.json'));
      const full = flags.chat ? chatPromptText(1, String(text)) : String(text);
      const ids = tok.encode(full, { allowSpecial: flags.special });
      const pieces = ids.map((id) => ({ id, token: tok.idToToken(id) ?? '', text: tok.decode([id]), special: tok.isSpecial(id) }));
      emit(flags, { tokenizer: tok.source, text: full, ids, pieces }, () =>
        [`${ids.length} tokens (${tok.source})`, ...pieces.map((p) => `${String(p.id).padStart(7)}  ${JSON.stringify(p.text)}${p.special ? '  (special)' : ''}`)].join('\n'),
      );
    });

  withCorpusFlags(withGlobals(cli.command('eval-model', 'Held-out quality of the AudioLLM: gender and speaking accuracy, label precision/recall, latency')))
    .option('--corpus <dir>', 'Corpus folder: manifest.jsonl with splits, a label file\'s folder, or a dataset layout')
    .option('--model <dir>', 'Model folder (default: weights/)')
    .option('--dtype <d>', "Model weights: auto (config.json's torch_dtype: float16/bfloat16 → f16 where the adapter has shader-f16), f32 or f16", { default: 'auto' })
    .option('--kv-dtype <d>', 'KV cache: auto (the weight dtype; f32 for ardgpu-trained checkpoints), f32 or f16', { default: 'auto' })
    .option('--split <s>', "The split to ask (train, val, test, or any split the corpus names; 'all' for every clip)", { default: 'test' })
    .option('--questions <list>', 'Questions to ask, of describe,gender,sounds,speaking (default: all four)')
    .option('--all-answers', "Keep every clip's answers in the JSON file (default: the first 24 clips')")
    .option('--out <file>', 'Write the result as JSON here', { default: 'eval-model.json' })
    .option('--limit <n>', 'At most this many clips')
    .action(async (flags: GlobalFlags & CorpusFlags & { model?: string; dtype: string; kvDtype: string; split: string; out: string; limit?: string; questions?: string; allAnswers?: boolean }) => {
      if (!flags.corpus && flags.labels === undefined) throw new UsageError('--corpus <dir> is required (make one with `ardgpu make-corpus --out DIR`)');
      const { corpus, corpusOptions } = corpusOf(flags);
      const kinds = ['describe', 'gender', 'sounds', 'speaking'] as const;
      const questions = flags.questions === undefined ? undefined : String(flags.questions).split(',').map((q) => q.trim());
      for (const q of questions ?? []) if (!(kinds as readonly string[]).includes(q)) throw new UsageError(`--questions: '${q}' is not one of ${kinds.join(', ')}`);
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, flags.quiet, modelFlags(flags));
      const r = await evalModel({
        engine, model, corpus, corpusOptions, split: String(flags.split), maxClips: intFlag('limit', flags.limit, 1), out: flags.out,
        questions: questions as (typeof kinds)[number][] | undefined, examples: flags.allAnswers ? Infinity : undefined,
        log: (line) => void (flags.quiet || process.stderr.write(`${line}\n`)),
      });
      const { examples: _e, ...summary } = r;
      emit(flags, summary, () =>
        [
          `${r.split} split, ${r.clips} clips (${r.model})`,
          `gender question accuracy     ${(r.gender.accuracy * 100).toFixed(1)}% (${r.gender.correct}/${r.gender.total})`,
          `"Is anyone speaking?"        ${(r.speaking.accuracy * 100).toFixed(1)}% (${r.speaking.correct}/${r.speaking.total})`,
          `labels named: precision      ${(r.labels.precision * 100).toFixed(1)}%, recall ${(r.labels.recall * 100).toFixed(1)}%`,
          `ask() latency                median ${r.latency.medianMs.toFixed(0)} ms, max ${r.latency.maxMs.toFixed(0)} ms`,
          `written to ${flags.out}`,
        ].join('\n'),
      );
      model.dispose();
      engine.destroy();
    });

  withGlobals(cli.command('export-sae', "Write a run's SAE as a SAELens folder (cfg.json, sae_weights.safetensors, sparsity.safetensors) or sparsify's layout"))
    .option('--run <dir>', 'Run folder')
    .option('--layer <n>', 'Decoder layer')
    .option('--format <f>', 'saelens or sparsify', { default: 'saelens' })
    .option('--out <dir>', 'SAELens: the SAE folder; sparsify: the root, which gets one folder per hookpoint')
    .option('--sae <path>', SAE_FLAG_HELP)
    .action(async (flags: GlobalFlags & { run?: string; layer?: string; format: string; out?: string; sae?: string }) => {
      const run = needRun(flags.run);
      const layer = layerOf(flags, run);
      if (!(SAE_EXPORT_FORMATS as readonly string[]).includes(flags.format)) throw new UsageError(`--format: expected ${SAE_EXPORT_FORMATS.join(' or ')}, got '${flags.format}'`);
      if (!flags.out || typeof flags.out !== 'string') throw new UsageError('--out <dir> is required');
      const engine = await openEngine(flags);
      const b = bar('feature density', flags, 'rows');
      const r = await exportSae({ engine, run, layer, format: flags.format as SaeExportFormat, out: flags.out, onProgress: b.update, ...(flags.sae === undefined ? {} : { saeFile: String(flags.sae) }) });
      b.finish();
      emit(flags, r, () => `export-sae: ${r.format} SAE (d_in ${r.d}, ${r.m} latents, k ${r.k}; input scale ${r.inputScale.toPrecision(6)} folded into the weights)${r.densityRows === null ? '' : `, densities over ${r.densityRows} capture rows`} → ${r.dir}`);
      engine.destroy();
    });
}
