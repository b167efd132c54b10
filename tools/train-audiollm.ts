// Trains the small default AudioLLM in weights/ from the synthetic corpus, with ardgpu's autograd:
//
//   npx tsx tools/train-audiollm.ts --corpus DIR --out weights/ --steps N --seed S [--resume]
//
// Options (defaults in src/train/run.ts): --batch, --lr, --warmup, --encoder-lr-scale, --aux-weight, --aux-lr-scale, --aux-pool, --mixture-repeat, --mix-rate,
// --mix-third, --mix-corpus-levels, --level-jitter LO,HI, --label-order, --ema DECAY, --average-from STEP, --average-every N,
// --questions, --work DIR (caches, checkpoint,
// loss log; default OUT/.ardgpu-cache/train), --checkpoint-every, --val-every, --vocab,
// --dims '{"hidden":192,...}', --no-eval (skip the held-out evaluation and README),
// --eval-split test|val, --eval-max N (clips), --init DIR (second stage from an exported model),
// --question-weights 'gender=4,sounds=2', --freeze PREFIX,... (weights kept as --init has them), --stop-after N.
// Interrupted? Run the same command with --resume: it continues from the last checkpoint and the
// loss sequence is the one an uninterrupted run gives.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cac } from 'cac';
import { Engine } from '../src/gpu/engine.js';
import { CORPUS_FILE } from '../src/corpus/manifest.js';
import { evalModel } from '../src/train/eval-model.js';
import type { ModelDims } from '../src/train/dims.js';
import { stageCommands, writeWeightsReadme } from '../src/train/export.js';
import type { AuxPool } from '../src/train/forward.js';
import { trainAudioLLM } from '../src/train/run.js';
import { LABEL_ORDERS, type LabelOrder } from '../src/train/data.js';
import { ArdError, UsageError } from '../src/util/errors.js';

function num(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number (got ${String(v)})`);
  return n;
}

function auxPoolOf(v: unknown): AuxPool | undefined {
  if (v === undefined) return undefined;
  if (v !== 'mean' && v !== 'frames') throw new UsageError(`--aux-pool must be mean or frames (got ${String(v)})`);
  return v;
}

function labelOrderOf(v: unknown): LabelOrder | undefined {
  if (v === undefined) return undefined;
  if (!LABEL_ORDERS.includes(v as LabelOrder)) throw new UsageError(`--label-order must be ${LABEL_ORDERS.join(' or ')} (got ${String(v)})`);
  return v as LabelOrder;
}

function levelJitterOf(v: unknown): [number, number] | undefined {
  if (v === undefined) return undefined;
  const parts = String(v).split(',').map((x) => (x.trim() === '' ? NaN : Number(x)));
  if (parts.length !== 2 || !parts.every(Number.isFinite)) throw new UsageError(`--level-jitter must be LO,HI in dB, e.g. -20,10 (got ${String(v)})`);
  return [parts[0]!, parts[1]!];
}

async function main(): Promise<void> {
  const cli = cac('train-audiollm');
  cli
    .option('--corpus <dir>', 'corpus directory (manifest.jsonl)')
    .option('--out <dir>', 'model directory to write', { default: 'weights' })
    .option('--steps <n>', 'optimizer steps')
    .option('--seed <n>', 'seed', { default: 0 })
    .option('--resume', 'continue from the checkpoint in the work directory')
    .option('--work <dir>', 'caches, checkpoint and loss log')
    .option('--batch <n>', 'clips per step')
    .option('--lr <x>', 'peak learning rate')
    .option('--warmup <n>', 'warm-up steps')
    .option('--encoder-lr-scale <x>', 'learning-rate multiplier of the audio tower')
    .option('--aux-weight <x>', 'weight of the training-only auxiliary label loss (0: off)')
    .option('--aux-lr-scale <x>', 'learning-rate multiplier of the auxiliary head')
    .option('--aux-pool <how>', 'how the auxiliary head pools over time: mean (default) or frames (per-frame logits, softmax-pooled)')
    .option('--mixture-repeat <n>', 'times a clip with several labels appears in each epoch (default 1)')
    .option('--mix-rate <p>', 'share of batch slots whose single-label clip becomes a fresh mixture (default 0)')
    .option('--mix-third <p>', 'share of those fresh mixtures that get a third sound (default 0)')
    .option('--mix-corpus-levels', 'fresh mixtures of sounds only put noise-like sounds 3–8 dB lower, as the corpus does')
    .option('--level-jitter <lo,hi>', 'play every batch slot at a random gain from LO to HI dB (e.g. -20,10), so loudness alone tells nothing (default: none)')
    .option('--freeze <prefixes>', "comma-separated weight-name prefixes kept as the --init model has them, e.g. 'language_model.model.layers.3.,language_model.model.norm.,language_model.lm_head.'")
    .option('--label-order <order>', 'order of the labels in "What sounds can you hear?" answers: given (manifest order, loudest first; default) or canonical (speech, then a fixed order of sounds)')
    .option('--ema <decay>', 'export an exponential moving average of the weights with this decay (e.g. 0.995) instead of the last step\'s')
    .option('--average-from <step>', 'export the mean of the weights after this step and every later one (or every --average-every-th) instead of the last step\'s')
    .option('--average-every <n>', 'with --average-from: average the weights after every n-th step only (default 1)')
    .option('--questions <n>', 'questions asked about each clip per step')
    .option('--checkpoint-every <n>', 'steps between checkpoints')
    .option('--val-every <n>', 'steps between validation losses')
    .option('--vocab <n>', 'requested tokenizer vocabulary')
    .option('--dims <json>', 'model dims overriding the defaults, as JSON')
    .option('--no-eval', 'skip the held-out evaluation and README')
    .option('--eval-split <split>', 'split to evaluate on', { default: 'test' })
    .option('--eval-max <n>', 'evaluate at most N clips')
    .option('--init <dir>', 'start from this exported model (a second stage) instead of a random initialisation')
    .option('--question-weights <list>', "relative draw weights of the questions, e.g. 'gender=4,sounds=2' (kinds: describe, gender, sounds, speaking)")
    .option('--stop-after <n>', 'stop (checkpointed, not exported) after this step, as if interrupted')
    .help();
  const { options: o } = cli.parse();
  if (o.help) return;
  if (!o.corpus) throw new UsageError('--corpus is required');
  const steps = num(o.steps, 'steps');
  if (steps === undefined) throw new UsageError('--steps is required');
  let dims: Partial<ModelDims> | undefined;
  if (o.dims) {
    try {
      dims = JSON.parse(String(o.dims));
    } catch {
      throw new UsageError(`--dims is not valid JSON: ${o.dims}`);
    }
  }
  const out = path.resolve(String(o.out));
  const engine = await Engine.create();
  const stamp = () => new Date().toISOString().slice(11, 19);
  const log = (l: string) => process.stdout.write(`[${stamp()}] ${l}\n`);
  log(`adapter: ${engine.adapter?.name ?? 'unknown'} (${engine.adapter?.backend ?? '?'})`);
  const res = await trainAudioLLM({
    corpus: String(o.corpus),
    out,
    steps,
    seed: num(o.seed, 'seed'),
    resume: Boolean(o.resume),
    work: o.work ? String(o.work) : undefined,
    batch: num(o.batch, 'batch'),
    lr: num(o.lr, 'lr'),
    warmup: num(o.warmup, 'warmup'),
    encoderLrScale: num(o.encoderLrScale, 'encoder-lr-scale'),
    auxWeight: num(o.auxWeight, 'aux-weight'),
    auxLrScale: num(o.auxLrScale, 'aux-lr-scale'),
    mixtureRepeat: num(o.mixtureRepeat, 'mixture-repeat'),
    mixRate: num(o.mixRate, 'mix-rate'),
    mixThird: num(o.mixThird, 'mix-third'),
    mixCorpusLevels: o.mixCorpusLevels ? true : undefined,
    levelJitter: levelJitterOf(o.levelJitter),
    freeze: o.freeze === undefined ? undefined : String(o.freeze).split(',').map((x) => x.trim()).filter(Boolean),
    labelOrder: labelOrderOf(o.labelOrder),
    auxPool: auxPoolOf(o.auxPool),
    questionsPerClip: num(o.questions, 'questions'),
    ema: num(o.ema, 'ema'),
    averageFrom: num(o.averageFrom, 'average-from'),
    averageEvery: num(o.averageEvery, 'average-every'),
    checkpointEvery: num(o.checkpointEvery, 'checkpoint-every'),
    valEvery: num(o.valEvery, 'val-every'),
    vocabSize: num(o.vocab, 'vocab'),
    dims,
    stopAfter: num(o.stopAfter, 'stop-after'),
    initFrom: o.init ? String(o.init) : undefined,
    questionWeights: o.questionWeights ? parseWeights(String(o.questionWeights)) : undefined,
    engine,
    log,
  });
  log(`training: ${res.steps} steps, ${(res.totalMs / 60000).toFixed(1)} min of training in all`);
  if (o.eval !== false && res.exported) {
    const split = String(o.evalSplit);
    if (split !== 'test' && split !== 'val') throw new UsageError('--eval-split must be test or val');
    const ev = await evalModel({ engine, model: out, corpus: String(o.corpus), split, maxClips: num(o.evalMax, 'eval-max'), log, out: path.join(out, `eval-${split}.json`) });
    let previousCommands: string[] | undefined;
    if (o.init && path.resolve(String(o.init)) !== out) {
      // keep the earlier stages' accounts next to this one: stage k's README and loss curve as
      // README.stage<k>.md / loss.stage<k>.svg, and their commands in this README
      const init = path.resolve(String(o.init));
      const readme = fs.existsSync(path.join(init, 'README.md')) ? fs.readFileSync(path.join(init, 'README.md'), 'utf8') : '';
      previousCommands = stageCommands(readme);
      const k = Math.max(1, previousCommands.length);
      for (const f of fs.readdirSync(init)) if (/^(README|loss)\.stage\d+\.(md|svg)$/.test(f)) fs.copyFileSync(path.join(init, f), path.join(out, f));
      for (const [from, to] of [['README.md', `README.stage${k}.md`], ['loss.svg', `loss.stage${k}.svg`]]) {
        if (fs.existsSync(path.join(init, from))) fs.copyFileSync(path.join(init, from), path.join(out, to));
      }
    }
    writeWeightsReadme(out, { command: commandLine(), previousCommands, result: res, eval: ev, adapter: engine.adapter?.name ?? 'unknown', corpusCommand: corpusCommand(String(o.corpus)) });
    log(`README written (${path.join(out, 'README.md')})`);
  }
  engine.destroy();
}

function parseWeights(v: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of v.split(',').filter(Boolean)) {
    const [k, x] = part.split('=');
    const n = Number(x);
    if (!k || x === undefined || !Number.isFinite(n)) throw new UsageError(`--question-weights: '${part}' is not kind=number`);
    out[k.trim()] = n;
  }
  return out;
}

/**
 * The make-corpus command that rebuilds the corpus, from its corpus.json (seed, size, variety), or the
 * script that built a corpus of training recordings; for a corpus joined by tools/merge-corpora.ts,
 * each source's command.
 */
function corpusCommand(dir: string): string | undefined {
  type Info = { kind?: string; packages?: string[]; seed?: number; size?: number; variety?: boolean | number; merged?: Record<string, { corpus?: Info }> };
  const one = (c: Info | undefined): string | undefined => {
    if (c?.kind === 'train-recordings') {
      // its options (and the packages' versions) are in the corpus's packages.txt
      return `\`bash tools/make-train-recordings.sh --out DIR\` (real recordings from ${c.packages?.length ?? 'some'} Debian packages; DIR/packages.txt lists the options used)`;
    }
    return c && typeof c.seed === 'number' && typeof c.size === 'number'
      ? `\`ardgpu make-corpus${typeof c.variety === 'number' ? ` --variety ${c.variety}` : c.variety ? ' --variety' : ''} --seed ${c.seed} --size ${c.size} --out DIR\``
      : undefined;
  };
  try {
    const c = JSON.parse(fs.readFileSync(path.join(dir, CORPUS_FILE), 'utf8')) as Info;
    if (!c.merged) return one(c);
    const parts = Object.entries(c.merged).map(([name, m]) => `${name}: ${one(m.corpus) ?? 'a corpus without seed and size'}`);
    return `corpora joined by \`tools/merge-corpora.ts\` — ${parts.join('; ')}`;
  } catch {
    // no readable corpus.json: the README keeps its default wording
  }
  return undefined;
}

function commandLine(): string {
  const args = process.argv.slice(2).map((a) => (/^[\w./:=,-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`));
  return ['npx tsx tools/train-audiollm.ts', ...args.filter((a) => a !== '--resume')].join(' ');
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`error: ${e instanceof ArdError ? e.message : (e?.stack ?? e)}\n`);
    process.exit(e instanceof ArdError ? e.exitCode : 1);
  },
);
