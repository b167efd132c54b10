// Every subcommand: its flags and a thin call into the library.
import type { CAC } from 'cac';
import { Engine } from '../gpu/engine.js';
import { describeVariants } from '../gpu/profile.js';
import { formatBench, modelTasks, runBench, SAE_TASKS } from '../../bench/run.js';
import { UsageError } from '../util/errors.js';
import { makeCorpus } from '../corpus/index.js';
import { Progress } from './progress.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../gpu/registry.js';
import { loadAudioLLM } from '../model/load.js';
import type { AudioLLM } from '../model/audiollm.js';
import { askDetailed, askWindows, chatPromptText } from '../model/chat.js';
import { loadTokenizer } from '../model/tokenizer.js';
import { loadQwen2AudioConfig } from '../model/config.js';
import { planModel } from '../model/plan.js';
import * as os from 'node:os';
import { capture, DEFAULT_CAPTURE_PROMPT } from '../ard/capture.js';
import { computeTimelines, retrieve } from '../ard/retrieve.js';
import { readCaptureManifest, runPaths } from '../ard/run.js';
import { rank, readFeatures } from '../ard/rank.js';
import { describeFeatures } from '../ard/describe.js';
import { evaluate } from '../ard/evaluate.js';
import { writeReport } from '../ard/report.js';
import { explain } from '../ard/explain.js';
import { loadSae, saeDigest } from '../sae/load.js';
import { SAE_ARCHS } from '../sae/model.js';
import type { SaeArch } from '../sae/model.js';
import type { Reconstructor } from '../ard/splice.js';
import { spliceStage } from '../ard/splice.js';
import type { Sae } from '../sae/types.js';
import { clipResiduals, modelDescriber, wavSamples } from '../ard/stages.js';
import { steerCommand } from '../ard/steer.js';
import { trainSaeStage } from '../ard/train-sae.js';
import { DEMO_STAGES, runDemo } from '../ard/demo.js';
import { evalModel } from '../train/eval-model.js';
import { fmtTime } from './progress.js';
import { ArdError } from '../util/errors.js';
import { exportSae, SAE_EXPORT_FORMATS, SaeExportFormat } from '../ard/export-sae.js';

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

export async function openModel(engine: Engine, dir: string | undefined, quiet?: boolean): Promise<AudioLLM> {
  const d = dir ?? defaultModelDir();
  if (!fs.existsSync(path.join(d, 'config.json'))) throw new ArdError(`${d}: no model here (config.json missing)`);
  let bar: Progress | null = null;
  const model = await loadAudioLLM(engine, d, {
    dtype: engine.f16 ? 'f16' : 'f32',
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
        ...Object.entries(variants).map(([k, v]) => `  ${k.padEnd(8)} ${v}`),
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
    .action(async (flags: GlobalFlags & { out: string; seed: string | number; size: number }) => {
      const size = intFlag('size', flags.size, 1)!;
      let bar: Progress | null = null;
      const r = await makeCorpus({
        out: flags.out,
        seed: flags.seed,
        size,
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

  withGlobals(cli.command('ask <wav>', 'Ask the AudioLLM a question about an audio file (WAV, FLAC, Ogg Vorbis, Ogg Opus, MP3)'))
    .option('--prompt <text>', 'The question', { default: 'Describe the sound.' })
    .option('--model <dir>', 'Model folder (default: the embedded weights/)')
    .option('--max-tokens <n>', 'Maximum new tokens', { default: 64 })
    .option('--seed <s>', 'Sample with this seed (default: greedy)')
    .option('--temperature <t>', 'Sampling temperature (with --seed)', { default: 0.7 })
    .option('--top-p <p>', 'Nucleus sampling (with --seed)', { default: 0.9 })
    .option('--windows <w>', "A clip longer than the model's audio window: first (answer its first window) or all (each window, with its time range)", { default: 'first' })
    .action(async (wav: string, flags: GlobalFlags & { prompt: string; model?: string; maxTokens: number; seed?: string; temperature: number; topP: number; windows: string }) => {
      const windows = windowsFlag(flags.windows);
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, true);
      const sampled = flags.seed !== undefined;
      const askOpts = {
        maxNewTokens: intFlag('max-tokens', flags.maxTokens, 1),
        ...(sampled ? { seed: intFlag('seed', flags.seed, 0), temperature: Number(flags.temperature), topP: Number(flags.topP) } : {}),
        onText: flags.json ? undefined : (piece: string) => void process.stdout.write(piece),
      };
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
        if (flags.json) emit(flags, { answer: r.text, tokens: r.tokens.length, ms, stopReason: r.stopReason, duration: clip.duration, windows: clip.windows, window }, () => '');
        else process.stdout.write('\n');
        if (clip.windows > 1) {
          process.stderr.write(`note: ${path.basename(wav)} is ${clip.duration.toFixed(1)} s; answered its first ${(window.end - window.start).toFixed(1)} s window (--windows all answers each)\n`);
        }
      }
      model.dispose();
      engine.destroy();
    });

  withGlobals(cli.command('capture', 'Capture residual-stream activations of chosen decoder layers over a corpus'))
    .option('--corpus <dir>', 'Corpus folder: manifest.jsonl, ESC-50, FSD50K, UrbanSound8K, a folder per class, or any folder of WAVs')
    .option('--labels <file>', 'Label file (CSV, TSV or JSONL: file and labels columns; split, fold, caption, speaker optional); paths relative to --corpus (default: its folder)')
    .option('--file-column <name>', 'Label file: the audio file column (default: file, filename, fname or path)')
    .option('--labels-column <name>', "Label file: the labels column, labels separated by ',' or ';' (default: labels or label)")
    .option('--split-column <name>', 'Label file: the split column (default: split)')
    .option('--fold-column <name>', 'Label file: the fold column (default: fold)')
    .option('--caption-column <name>', 'Label file: the caption column (default: caption)')
    .option('--speaker-column <name>', 'Label file: the speaker column (default: speaker)')
    .option('--val-fold <fold>', "Split by fold: this fold's clips are 'val' (default with folds: the second-to-last fold)")
    .option('--test-fold <fold>', "Split by fold: this fold's clips are 'test' (default with folds: the last fold)")
    .option('--split-seed <n>', 'Seed of the file-name hash split (70/15/15) used when the corpus gives neither splits nor folds', { default: 0 })
    .option('--out <dir>', 'Run folder (alias of --run)')
    .option('--run <dir>', 'Run folder')
    .option('--layers <list>', 'Decoder layers, e.g. 1,3', { default: '1' })
    .option('--model <dir>', 'Model folder (default: weights/)')
    .option('--prompt <text>', 'Fixed prompt', { default: DEFAULT_CAPTURE_PROMPT })
    .option('--all-positions', 'Store every prompt position, not only the audio tokens')
    .option('--dtype <t>', 'Shard dtype: f16 or f32', { default: 'f16' })
    .option('--limit <n>', 'At most this many clips')
    .option('--force', 'Recompute even if inputs are unchanged')
    .action(async (flags: GlobalFlags & { corpus?: string; labels?: string; fileColumn?: string; labelsColumn?: string; splitColumn?: string; foldColumn?: string; captionColumn?: string; speakerColumn?: string; valFold?: string | number; testFold?: string | number; splitSeed: string | number; out?: string; run?: string; layers: string; model?: string; prompt: string; allPositions?: boolean; dtype: string; limit?: string; force?: boolean }) => {
      const corpus = flags.corpus ?? (flags.labels !== undefined ? path.dirname(String(flags.labels)) : undefined);
      if (!corpus) throw new UsageError('--corpus <dir> is required');
      const str = (v: unknown) => (v === undefined ? undefined : String(v));
      const corpusOptions = {
        labels: str(flags.labels), fileColumn: str(flags.fileColumn), labelsColumn: str(flags.labelsColumn), splitColumn: str(flags.splitColumn),
        foldColumn: str(flags.foldColumn), captionColumn: str(flags.captionColumn), speakerColumn: str(flags.speakerColumn),
        valFold: str(flags.valFold), testFold: str(flags.testFold), splitSeed: intFlag('split-seed', flags.splitSeed, 0),
      };
      const run = needRun(flags.run ?? flags.out);
      if (flags.dtype !== 'f16' && flags.dtype !== 'f32') throw new UsageError(`--dtype: expected f16 or f32, got '${flags.dtype}'`);
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, flags.quiet);
      const b = bar('capture', flags, 'clips');
      const r = await capture({
        model, corpus, corpusOptions, run, layers: listFlag('layers', flags.layers)!, prompt: flags.prompt,
        positions: flags.allPositions ? 'all' : 'audio', dtype: flags.dtype, limit: intFlag('limit', flags.limit, 1), force: flags.force,
        onProgress: b.update,
        onBadClip: (file, error) => void (flags.quiet || process.stderr.write(`\nskipped ${error}\n`)),
        onSkippedRow: (line) => void (flags.quiet || process.stderr.write(`left out ${line}\n`)),
      });
      b.finish();
      const notes = [r.bad.length ? `${r.bad.length} bad clips skipped` : '', r.skippedRows.length ? `${r.skippedRows.length} metadata rows left out` : ''].filter(Boolean);
      emit(flags, r, () => `${r.skipped ? `capture: unchanged, kept ${r.manifest}` : `capture: ${r.clips} clips, ${r.rows} rows in ${r.seconds.toFixed(1)} s → ${r.manifest}`}${notes.length ? ` (${notes.join(', ')})` : ''}; splits ${r.split.description}`);
      model.dispose();
      engine.destroy();
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
    .option('--clips <n>', 'Captions per feature', { default: 5 })
    .option('--force', 'Re-describe features that already have a name')
    .action(async (flags: GlobalFlags & { run?: string; layer?: string; model?: string; clips: number; force?: boolean }) => {
      const run = needRun(flags.run);
      const layer = layerOf(flags, run);
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, flags.quiet);
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
      const r = writeReport(run);
      emit(flags, r, () => `report: ${r.file} (${(r.bytes / 1e6).toFixed(1)} MB)`);
    });

  withGlobals(cli.command('explain <wav>', 'Which named features fire when in a clip: a terminal timeline, or JSON'))
    .option('--run <dir>', 'Run folder')
    .option('--layer <n>', 'Decoder layer')
    .option('--model <dir>', 'Model folder (default: weights/)')
    .option('--threshold <x>', 'Fire above this fraction of a feature\'s typical activation', { default: 0 })
    .option('--sae <path>', SAE_FLAG_HELP)
    .action(async (wav: string, flags: GlobalFlags & { run?: string; layer?: string; model?: string; threshold: number; sae?: string }) => {
      const run = needRun(flags.run);
      const layer = layerOf(flags, run);
      const features = readFeatures(runPaths(run, layer).features).features.filter((f) => f.name);
      const samples = await wavSamples(wav);
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, true);
      const sae = openSae(engine, run, layer, flags.sae);
      const acts = clipResiduals(model, samples, layer, readCaptureManifest(run).prompt);
      // a long clip is taken window by window; its rows continue in time across windows
      const r = await explain({ engine, sae, acts, frameSeconds: model.frameSeconds, features, threshold: Number(flags.threshold) });
      acts.dispose();
      emit(flags, { file: wav, duration: r.duration, features: r.features.map(({ activations: _a, ...rest }) => rest) }, () => r.timeline);
      model.dispose();
      engine.destroy();
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
    .option('--layer <n>', 'Decoder layer (default: the middle one)')
    .option('--size <n>', 'Corpus clips', { default: 1200 })
    .option('--seed <s>', 'Seed', { default: 0 })
    .option('--force', 'Recompute every stage')
    .action(async (flags: GlobalFlags & { out: string; model?: string; layer?: string; size: number; seed: number; force?: boolean }) => {
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, flags.quiet);
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
      emit(flags, r, () => `demo finished in ${fmtTime(r.seconds)} (${DEMO_STAGES.length} stages, layer ${r.layer})\nreport: ${path.resolve(r.report)}`);
      model.dispose();
      engine.destroy();
    });

  withGlobals(cli.command('plan', 'Whether a model fits this adapter, from its config alone: weights, split tensors, KV cache, activations'))
    .option('--model <dir>', 'Model folder with config.json (default: the embedded weights/)')
    .option('--dtype <d>', 'Weight dtype: f32 or f16', { default: 'f32' })
    .option('--positions <n>', "Positions per sequence (default: one audio window's tokens + 256)")
    .option('--batch <n>', 'Sequences decoded together', { default: 1 })
    .option('--memory-gib <g>', 'Memory available to the device (default: host RAM on a software adapter, else unknown)')
    .action(async (flags: GlobalFlags & { model?: string; dtype: string; positions?: string; batch: string; memoryGib?: string }) => {
      if (flags.dtype !== 'f32' && flags.dtype !== 'f16') throw new UsageError(`--dtype: expected f32 or f16, got '${flags.dtype}'`);
      const memGib = flags.memoryGib === undefined ? undefined : Number(flags.memoryGib);
      if (memGib !== undefined && !(memGib > 0)) throw new UsageError(`--memory-gib: expected a positive number, got '${flags.memoryGib}'`);
      const dir = flags.model ?? defaultModelDir();
      const config = loadQwen2AudioConfig(dir);
      const engine = await openEngine(flags);
      const a = engine.adapter!;
      const memoryBytes = memGib !== undefined ? memGib * 2 ** 30 : a.isSoftware ? os.totalmem() : undefined;
      const p = planModel(config, {
        dtype: flags.dtype,
        positions: intFlag('positions', flags.positions, 1),
        batch: intFlag('batch', flags.batch, 1),
        maxBindingBytes: engine.limits.maxStorageBufferBindingSize,
        maxBufferBytes: engine.limits.maxBufferSize,
        memoryBytes,
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
          `KV cache     ${gib(p.kvCache.bytes)} (${p.positions} positions × ${p.batch} sequence${p.batch > 1 ? 's' : ''}, f32)`,
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

  withGlobals(cli.command('eval-model', 'Held-out quality of the AudioLLM: gender and speaking accuracy, label precision/recall, latency'))
    .option('--corpus <dir>', 'Corpus folder (manifest.jsonl with splits)')
    .option('--model <dir>', 'Model folder (default: weights/)')
    .option('--split <s>', 'train, val or test', { default: 'test' })
    .option('--out <file>', 'Write the result as JSON here', { default: 'eval-model.json' })
    .option('--limit <n>', 'At most this many clips')
    .action(async (flags: GlobalFlags & { corpus?: string; model?: string; split: string; out: string; limit?: string }) => {
      if (!flags.corpus) throw new UsageError('--corpus <dir> is required (make one with `ardgpu make-corpus --out DIR`)');
      if (!['train', 'val', 'test'].includes(flags.split)) throw new UsageError(`--split: expected train, val or test, got '${flags.split}'`);
      const engine = await openEngine(flags);
      const model = await openModel(engine, flags.model, flags.quiet);
      const r = await evalModel({
        engine, model, corpus: flags.corpus, split: flags.split as 'test', maxClips: intFlag('limit', flags.limit, 1), out: flags.out,
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
