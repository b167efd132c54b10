// The end of a run: the model directory in Hugging Face's layout (F16 safetensors, config,
// preprocessor config, tokenizer, generation config), the loss log and curve, weights/README.md,
// and the same directory from a run's latest checkpoint.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FrontendConfig } from '../audio/logmel.js';
import type { Engine } from '../gpu/engine.js';
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { type Qwen2AudioConfig, expectedTensorShapes, qwen2AudioConfigToJson } from '../model/config.js';
import { Tokenizer } from '../model/tokenizer.js';
import { ArdError } from '../util/errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/fs.js';
import { CKPT, readInto, runFiles } from './checkpoint.js';
import { templateIds } from './data.js';
import { FROZEN, POSITION_SCALE, type Weights, frontendFor, initWeights, makeConfig, preprocessorJson } from './dims.js';
import type { EvalResult } from './eval-model.js';
import type { RunSpec, StepRecord, TrainResult } from './run.js';

export interface ExportInfo {
  spec: RunSpec;
  /** The tokenizer.json text. */
  tokenizerJson: string;
  records: readonly StepRecord[];
  totalMs: number;
}

/** Files the exported model directory holds (README.md is written by writeWeightsReadme). */
export const MODEL_FILES = ['model.safetensors', 'config.json', 'preprocessor_config.json', 'tokenizer.json', 'generation_config.json'] as const;
/** Upper bound for everything in weights/ (the repository carries it). */
export const MAX_EXPORT_BYTES = 20 * 1024 * 1024;

/**
 * Writes a loadable model directory (HF layout): model.safetensors (F16 by default; F32 for exact
 * comparisons), config.json, preprocessor_config.json, tokenizer.json, generation_config.json.
 */
export async function writeModelDir(
  out: string,
  w: Weights,
  config: Qwen2AudioConfig,
  fe: FrontendConfig,
  tokenizerJson: string,
  opts: { dtype?: 'F16' | 'F32'; metadata?: Record<string, string> } = {},
): Promise<void> {
  const dtype = opts.dtype ?? 'F16';
  fs.mkdirSync(out, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of w) {
    if (name.startsWith('aux.')) continue; // training-only head
    const data = await t.toFloat32();
    if (dtype === 'F16') {
      for (let i = 0; i < data.length; i++) {
        if (!(Math.abs(data[i]!) < 65504)) throw new ArdError(`export: ${name} holds ${data[i]} (not representable in f16)`);
      }
    }
    tensors[name] = { dtype, shape: [...t.shape], data };
  }
  writeSafetensors(path.join(out, 'model.safetensors'), tensors, { format: 'pt', producer: 'ardgpu src/train/export.ts', ...opts.metadata });
  writeJsonAtomic(path.join(out, 'config.json'), { ...qwen2AudioConfigToJson(config), torch_dtype: dtype === 'F16' ? 'float16' : 'float32' });
  writeJsonAtomic(path.join(out, 'preprocessor_config.json'), preprocessorJson(fe));
  writeFileAtomic(path.join(out, 'tokenizer.json'), tokenizerJson);
  const tok = Tokenizer.fromJSON(JSON.parse(tokenizerJson), 'tokenizer.json');
  const t = templateIds(tok);
  writeJsonAtomic(path.join(out, 'generation_config.json'), {
    bos_token_id: t.endOfText,
    eos_token_id: [t.imEnd, t.endOfText],
    pad_token_id: t.endOfText,
    do_sample: false,
    max_new_tokens: 64,
  });
}

/** The finished run: the model (F16) plus the loss log and curve; checks the size budget. */
export async function exportModel(out: string, w: Weights, config: Qwen2AudioConfig, fe: FrontendConfig, info: ExportInfo): Promise<void> {
  const last = info.records[info.records.length - 1];
  await writeModelDir(out, w, config, fe, info.tokenizerJson, {
    metadata: {
      producer: 'ardgpu tools/train-audiollm.ts',
      steps: String(info.spec.steps),
      seed: String(info.spec.seed),
      ...(last ? { final_loss: last.loss.toFixed(4) } : {}),
    },
  });
  writeFileAtomic(path.join(out, 'train-log.jsonl'), info.records.map((r) => JSON.stringify(r) + '\n').join(''));
  writeFileAtomic(path.join(out, 'loss.svg'), lossSvg(info.records));
  const bytes = fs.readdirSync(out).filter((f) => fs.statSync(path.join(out, f)).isFile()).reduce((a, f) => a + fs.statSync(path.join(out, f)).size, 0);
  if (bytes > MAX_EXPORT_BYTES) throw new ArdError(`export: ${out} holds ${(bytes / 2 ** 20).toFixed(1)} MiB, over the ${MAX_EXPORT_BYTES / 2 ** 20} MiB budget`);
}

/** An SVG line chart of the training loss (raw and smoothed) and the validation loss. */
export function lossSvg(records: readonly StepRecord[]): string {
  const W = 720, H = 360, L = 60, R = 20, T = 30, B = 45;
  if (records.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"></svg>\n`;
  const xs = records.map((r) => r.step + 1);
  const ys = records.map((r) => r.loss);
  const ema: number[] = [];
  let e = ys[0]!;
  for (const y of ys) ema.push((e = 0.95 * e + 0.05 * y));
  const val = records.filter((r) => r.valLoss !== undefined).map((r) => [r.step + 1, r.valLoss!] as const);
  const xMax = Math.max(...xs);
  const yMax = Math.max(...ema, ...val.map((v) => v[1]), ys.slice(0, Math.max(1, Math.ceil(ys.length / 50))).reduce((a, b) => Math.max(a, b), 0)) * 1.05;
  const sx = (x: number) => L + ((W - L - R) * x) / xMax;
  const sy = (y: number) => T + (H - T - B) * (1 - Math.min(y, yMax) / yMax);
  const stride = Math.max(1, Math.floor(records.length / 600));
  const line = (pts: [number, number][]) => pts.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
  const rawPts = xs.map((x, i) => [x, ys[i]!] as [number, number]).filter((_, i) => i % stride === 0);
  const emaPts = xs.map((x, i) => [x, ema[i]!] as [number, number]).filter((_, i) => i % stride === 0 || i === xs.length - 1);
  const nice = (max: number) => {
    const raw = max / 5;
    const p = 10 ** Math.floor(Math.log10(raw));
    return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  };
  const xStep = nice(xMax);
  const yStep = nice(yMax);
  let g = '';
  for (let y = 0; y <= yMax + 1e-9; y += yStep) g += `<line x1="${L}" x2="${W - R}" y1="${sy(y).toFixed(1)}" y2="${sy(y).toFixed(1)}" stroke="#ddd"/><text x="${L - 6}" y="${(sy(y) + 4).toFixed(1)}" text-anchor="end">${+y.toFixed(3)}</text>`;
  for (let x = 0; x <= xMax; x += xStep) g += `<text x="${sx(x).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${x}</text>`;
  const valDots = val.map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="#d62728"/>`).join('');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14">Training loss (answer tokens, cross-entropy)</text>`,
    g,
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle">step</text>`,
    `<path d="${line(rawPts)}" fill="none" stroke="#9ecae1" stroke-width="1"/>`,
    `<path d="${line(emaPts)}" fill="none" stroke="#08519c" stroke-width="2"/>`,
    valDots,
    `<g transform="translate(${W - R - 190},${T + 8})"><rect width="180" height="${val.length ? 58 : 40}" fill="#fff" stroke="#ccc"/>`,
    `<line x1="8" x2="28" y1="14" y2="14" stroke="#9ecae1"/><text x="34" y="18">loss per step</text>`,
    `<line x1="8" x2="28" y1="32" y2="32" stroke="#08519c" stroke-width="2"/><text x="34" y="36">moving average</text>`,
    val.length ? `<circle cx="18" cy="50" r="3.5" fill="#d62728"/><text x="34" y="54">validation loss</text>` : '',
    `</g></svg>`,
    '',
  ].join('\n');
}

// ---- weights/README.md ----------------------------------------------------------------------

export interface ReadmeInfo {
  /** Commands of earlier stages (a run with initFrom), printed before `command`. */
  previousCommands?: string[];
  command: string;
  result: TrainResult;
  eval: EvalResult;
  adapter: string;
  /** How the corpus was made (default: the make-corpus command for seed 0, size 1200). */
  corpusCommand?: string;
}

/** Encoder layers a stage added to the model it started from (0 without --init or growth). */
function grownLayers(spec: RunSpec): number {
  const cfgFile = spec.initFrom ? path.join(spec.initFrom.dir, 'config.json') : null;
  if (!cfgFile || !fs.existsSync(cfgFile)) return 0;
  const before = (JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Qwen2AudioConfig).audio_config.encoder_layers;
  return Math.max(0, spec.dims.encLayers - before);
}

/**
 * The training commands a model's README lists, one per stage: the first code block that holds
 * `npx tsx tools/train-audiollm.ts` lines (the shipped README shows its one-command rebuild first).
 */
export function stageCommands(readme: string): string[] {
  return [...readme.matchAll(/```[^\n]*\n([\s\S]*?)```/g)]
    .map((m) => m[1]!.split('\n').filter((l) => l.startsWith('npx tsx tools/train-audiollm.ts')))
    .find((c) => c.length > 0) ?? [];
}

/** weights/README.md: what the model is, how it was trained (exact command, time) and how it scores. */
export function writeWeightsReadme(out: string, info: ReadmeInfo): void {
  const cfg = info.result.config;
  const a = cfg.audio_config;
  const t = cfg.text_config;
  const spec = JSON.parse(fs.readFileSync(runFiles(info.result.work).spec, 'utf8')) as RunSpec;
  const shapes = expectedTensorShapes(cfg);
  let nParams = 0;
  for (const s of shapes.values()) nParams += s.reduce((x, y) => x * y, 1);
  const size = (f: string) => (fs.existsSync(path.join(out, f)) ? fs.statSync(path.join(out, f)).size : 0);
  const total = fs.readdirSync(out).filter((f) => fs.statSync(path.join(out, f)).isFile()).reduce((s, f) => s + size(f), 0);
  const recs = info.result.records;
  const tail = recs.slice(-Math.max(1, Math.floor(recs.length / 20)));
  const tailLoss = tail.reduce((s, r) => s + r.loss, 0) / tail.length;
  const vals = recs.filter((r) => r.valLoss !== undefined);
  const ev = info.eval;
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const ok = (x: boolean) => (x ? 'yes' : 'no');
  const meanStep = recs.reduce((s, r) => s + r.ms, 0) / Math.max(1, recs.length);
  const lines = [
    '# The default AudioLLM',
    '',
    'A small model in the layout of Hugging Face\'s `Qwen2AudioForConditionalGeneration` (Whisper-style',
    'audio encoder → average pool → projector → Qwen2 decoder), trained from scratch by ardgpu itself:',
    'its own autograd and AdamW, on WebGPU. It exists so that a fresh clone runs the whole AR&D loop with',
    'nothing downloaded, and it proves the engine\'s autograd on a real model. It knows only the synthetic',
    'probe corpus (`src/corpus`): 26 sound concepts, female/male speech (espeak-ng voices), mixtures and',
    'augmentations.',
    '',
    '## Files',
    '',
    '| file | what | bytes |',
    '| --- | --- | --- |',
    `| model.safetensors | every tensor, F16, Hugging Face names (${shapes.size} tensors, ${(nParams / 1e6).toFixed(2)} M parameters) | ${size('model.safetensors')} |`,
    `| config.json | Qwen2-Audio config | ${size('config.json')} |`,
    `| preprocessor_config.json | Whisper front end: ${a.num_mel_bins} mel bins, ${spec.dims.windowSeconds} s window | ${size('preprocessor_config.json')} |`,
    `| tokenizer.json | byte-level BPE, ${t.vocab_size} tokens (Qwen2 pre-tokenizer and special tokens) | ${size('tokenizer.json')} |`,
    `| generation_config.json | stop tokens (<\\|im_end\\|>, <\\|endoftext\\|>), greedy | ${size('generation_config.json')} |`,
    `| train-log.jsonl, loss.svg | loss per step (and validation loss) | ${size('train-log.jsonl') + size('loss.svg')} |`,
    `| eval-${ev.split}.json | held-out evaluation | ${size(`eval-${ev.split}.json`)} |`,
    '',
    `In all ${(total / 2 ** 20).toFixed(2)} MiB.`,
    '',
    '## Architecture',
    '',
    '| part | size |',
    '| --- | --- |',
    `| audio encoder | ${a.encoder_layers} pre-LN layers, d_model ${a.d_model}, ${a.encoder_attention_heads} heads, FFN ${a.encoder_ffn_dim}; conv stem (k3, k3 stride 2); ${a.max_source_positions} positions (${spec.dims.windowSeconds} s window, 25 audio tokens per second after the pool); sinusoidal positions (× ${POSITION_SCALE}), frozen |`,
    `| projector | linear ${a.d_model} → ${t.hidden_size} |`,
    `| decoder | ${t.num_hidden_layers} layers, hidden ${t.hidden_size}, ${t.num_attention_heads} query heads / ${t.num_key_value_heads} KV heads (head dim ${t.head_dim}), SwiGLU ${t.intermediate_size}, RoPE θ ${t.rope_theta}, RMSNorm; untied lm_head |`,
    `| vocabulary | ${t.vocab_size} (audio token id ${cfg.audio_token_index}) |`,
    '',
    '## Data',
    '',
    `The training split of the probe corpus (${info.corpusCommand ?? '`ardgpu make-corpus --seed 0 --size 1200 --out DIR`'}); validation and test clips use`,
    'speakers and sentences never heard in training. Each training example is one single-turn chat in',
    'Qwen2-Audio\'s template (`src/model/chat.ts`) — exactly the prompt inference feeds — with the clip\'s',
    'audio and one question:',
    '',
    '| question | answer |',
    '| --- | --- |',
    '| Describe the sound. | the clip\'s caption |',
    '| What is the gender of the speaker? | female / male (speech clips only) |',
    `| What sounds can you hear? | the labels, comma-separated (e.g. "female speech, white noise"), ${spec.labelOrder === 'canonical' ? 'speech first, then the sounds in a fixed order (the corpus\'s concept list)' : 'speech or the loudest sound first'} |`,
    '| Is anyone speaking? | yes / no |',
    '',
    `Each step takes ${spec.batch} clips and asks each ${spec.questionsPerClip} of its questions (seeded draws${spec.questionWeights ? `, weighted ${Object.entries(spec.questionWeights).map(([k, v]) => `${k} ${v}`).join(', ')}, others 1` : ''}), one sequence per`,
    'question, sharing the clip\'s encoder pass and the decoder\'s pass over the prompt up to the audio\'s end (the question comes after',
    'the audio, so under causal attention those rows are the same in every sequence about the clip). The loss is on answer tokens and',
    'their <|im_end|> only.',
    ...(spec.mixRate > 0 ? [`A share of ${spec.mixRate} of the batch slots that hold a single-label clip get a fresh mixture instead: that clip with another single-label training clip added in the log-mel power domain (src/train/mix.ts)${spec.mixThird > 0 ? `; ${spec.mixThird} of those mixtures get a third sound` : ''}${spec.mixCorpusLevels ? '; in mixtures of sounds only, noise-like sounds sit 3–8 dB lower, as in the corpus' : ''}.`] : []),
    ...(spec.levelJitter ? [`Every batch slot (mixture or not) is played at a random level: a gain drawn uniformly from ${spec.levelJitter[0]} to ${spec.levelJitter[1]} dB, applied to its log-mel features (a uniform shift, src/train/mix.ts shiftLevel), so that loudness alone tells nothing.`] : []),
    ...(spec.mixtureRepeat !== 1 ? [`Clips with several labels (mixtures) appear ${spec.mixtureRepeat} times in each epoch's order, every other clip once.`] : []),
    'Log-mels are computed once per clip and cached. (A multi-turn chat with every question about a clip',
    'would be cheaper, but later answers can be read off earlier ones, and the model learned that shortcut',
    'instead of listening.)',
    '',
    '## Training',
    '',
    '```',
    ...(info.previousCommands ?? []),
    info.command,
    '```',
    '',
    ...(spec.initFrom
      ? ((k) => [`- Stage ${k + 1}, the last command: it starts from the stage-${k} model (its README is kept as README.stage${k}.md, its loss curve as loss.stage${k}.svg; earlier stages likewise) instead of a random initialisation, with the stage-1 tokenizer. Figures below are this stage's.`])(Math.max(1, info.previousCommands?.length ?? 1))
      : []),
    ...((n) => (n > 0 ? [`- The audio encoder has ${n} more layer${n > 1 ? 's' : ''} than the model it starts from: appended after its layers, freshly initialised with both residual outputs (attention out_proj, fc2) zeroed, so the grown model starts out computing exactly what that model did.`] : []))(grownLayers(spec)),
    `- ${spec.steps} steps of ${spec.batch} clips, seed ${spec.seed}; AdamW (β ${spec.beta1}/${spec.beta2}, weight decay ${spec.weightDecay}), learning rate ${spec.lr}${spec.encoderLrScale !== 1 ? ` (× ${spec.encoderLrScale} for the audio tower)` : ''} after ${spec.warmup} warm-up steps, cosine decay to ${+(spec.lr * spec.minLrRatio).toPrecision(3)}; gradients clipped to norm ${spec.clipNorm}.`,
    ...(spec.freeze ? [`- Kept as the model it starts from (no gradient, no optimizer): the weights whose names start with ${spec.freeze.map((p) => `\`${p}\``).join(', ')}.`] : []),
    ...(spec.ema > 0 ? [`- The exported weights (and the validation losses) are an exponential moving average of the trained weights, decay ${spec.ema} (ramped up as (1+t)/(10+t) over the first updates), kept from the first step.`] : []),
    ...(spec.averageFrom !== null ? [`- The exported weights (and the validation losses from step ${spec.averageFrom} on) are the mean of the weights after ${spec.averageEvery === 1 ? `every step from step ${spec.averageFrom} to step ${spec.steps}` : `steps ${spec.averageFrom}, ${spec.averageFrom + spec.averageEvery}, … up to ${spec.steps} (every ${spec.averageEvery} steps)`} (${Math.floor((spec.steps - spec.averageFrom) / spec.averageEvery) + 1} sets of weights).`] : []),
    ...(spec.auxWeight > 0
      ? [`- A training-only auxiliary loss (weight ${spec.auxWeight}${spec.auxLrScale !== 1 ? `, learning rate × ${spec.auxLrScale}` : ''}, not exported): ${spec.auxPool === 'frames' ? 'a linear head on every audio frame, pooled per class over time by a softmax of its own logits (a smooth maximum),' : "a linear head on each clip's time-averaged audio features"} predicts the clip's labels (binary cross-entropy over ${spec.auxClasses.length} classes; its bias starts at each label's log-odds among training clips), so the encoder gets a direct signal from the start.`]
      : []),
    `- Wall time: ${(info.result.totalMs / 60000).toFixed(1)} min of training (${(meanStep / 1000).toFixed(2)} s per step on average) on ${info.adapter}.`,
    `- Loss: ${recs[0] ? recs[0].loss.toFixed(3) : '?'} at the first step, ${tailLoss.toFixed(3)} averaged over the last ${tail.length} steps${vals.length ? `; validation loss ${vals[vals.length - 1]!.valLoss!.toFixed(3)} at the end` : ''}.`,
    '- Interrupted runs continue with `--resume` (checkpoints hold the weights, AdamW state and step; the data order is a function of seed and step, so the loss sequence equals an uninterrupted run\'s).',
    '',
    '![training loss](loss.svg)',
    '',
    `## Held-out results (${ev.split} split, ${ev.clips} clips, greedy decoding)`,
    '',
    '| measure | result | target | met |',
    '| --- | --- | --- | --- |',
    `| gender accuracy ("What is the gender of the speaker?", ${ev.gender.total} speech clips) | ${pct(ev.gender.accuracy)} | ≥ 95 % | ${ok(ev.gender.accuracy >= 0.95)} |`,
    `| "Is anyone speaking?" accuracy | ${pct(ev.speaking.accuracy)} | ≥ 95 % | ${ok(ev.speaking.accuracy >= 0.95)} |`,
    `| label precision ("What sounds can you hear?") | ${pct(ev.labels.precision)} | ≥ 80 % | ${ok(ev.labels.precision >= 0.8)} |`,
    `| label recall | ${pct(ev.labels.recall)} | ≥ 80 % | ${ok(ev.labels.recall >= 0.8)} |`,
    ...Object.entries(ev.labels.byLabelCount).map(([n, c]) => `| label recall on clips with ${n} label${n === '1' ? '' : 's'} (${c.clips} clips, ${c.labels} labels) | ${pct(c.recall)} | | |`),
    `| exact label set | ${pct(ev.labels.exactMatch)} | | |`,
    `| ask() latency, WAV in → answer out (median of ${ev.latency.clips}) | ${(ev.latency.medianMs / 1000).toFixed(2)} s | < 5 s | ${ok(ev.latency.medianMs < 5000)} |`,
    '',
    'Some answers:',
    '',
    '| clip labels | Describe the sound. | What sounds can you hear? |',
    '| --- | --- | --- |',
    ...ev.examples.slice(0, 8).map((e) => `| ${e.labels.join(', ')} | ${e.answers.describe ?? ''} | ${e.answers.sounds ?? ''} |`),
    '',
    `Reproduce the evaluation: \`evalModel({ engine, model: 'weights', corpus, split: '${ev.split}' })\` (src/train/eval-model.ts).`,
    '',
  ];
  writeFileAtomic(path.join(out, 'README.md'), lines.join('\n'));
}

/**
 * Writes the weights of a run's latest checkpoint as a loadable model directory (to look at a
 * run in progress, or to rescue an interrupted one). Returns the checkpoint's step.
 */
export async function exportCheckpoint(engine: Engine, work: string, out: string, opts: { dtype?: 'F16' | 'F32' } = {}): Promise<number> {
  const files = runFiles(work);
  const spec = JSON.parse(fs.readFileSync(files.spec, 'utf8')) as RunSpec;
  const tokenizerJson = fs.readFileSync(files.tokenizer, 'utf8');
  const tok = Tokenizer.fromJSON(JSON.parse(tokenizerJson), files.tokenizer);
  const config = makeConfig(spec.dims, tok);
  const w = initWeights(engine, config, spec.seed);
  const st = openSafetensors(files.checkpoint);
  try {
    readInto(engine, st, `${work}/${CKPT}`, [...w].filter(([name]) => !FROZEN.has(name)), (n) => `param.${n}`, '');
    await writeModelDir(out, w, config, frontendFor(spec.dims), tokenizerJson, { dtype: opts.dtype, metadata: { steps: st.metadata.step ?? '?' } });
    return Number(st.metadata.step);
  } finally {
    st.close();
    for (const t of w.values()) t.dispose();
  }
}
