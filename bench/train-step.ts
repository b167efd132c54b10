// AudioLLM training-step time: runs the trainer (trainAudioLLM, the embedded model's dims and the
// stage-1 recipe of weights/README.md: 8 clips, mixtures at 0.35, aux head ×20 at 10× lr, question
// weights gender=5,sounds=4) for a few steps on a probe corpus and reports the wall time per step
// of the steps after the first `skip` (pipeline compilation, first allocations), read from the
// run's loss log, with the FMA peak measured in the same run. Log-mels are computed once into
// --cache and reused. Deterministic: the same seed and steps draw the same batches, so two commits
// can be compared step for step (run them interleaved; the machine must be otherwise idle).
//   npx tsx bench/train-step.ts --corpus DIR [--steps 22 --skip 2 --cache DIR --profile]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Engine } from '../src/gpu/engine.js';
import { trainAudioLLM } from '../src/train/run.js';
import { measurePeakFma } from '../src/tensor/ops/peak.js';

export interface TrainStepResult {
  steps: number;
  skip: number;
  msPerStep: number;
  /** ms of each timed step, in order */
  ms: number[];
  fmaPeakGflops: number;
}

export async function benchTrainStep(engine: Engine, corpus: string, o: { steps?: number; skip?: number; cache?: string } = {}): Promise<TrainStepResult> {
  const steps = o.steps ?? 22;
  const skip = o.skip ?? 2;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-train-step-'));
  const work = path.join(tmp, 'work');
  fs.mkdirSync(work);
  // reuse log-mel caches (they depend on the corpus and the front end only)
  if (o.cache) {
    fs.mkdirSync(o.cache, { recursive: true });
    for (const f of fs.readdirSync(o.cache)) if (f.startsWith('mels-')) fs.copyFileSync(path.join(o.cache, f), path.join(work, f));
  }
  try {
    const r = await trainAudioLLM({
      corpus, out: path.join(tmp, 'out'), work, steps, seed: 0, engine, export: false, valEvery: 0,
      auxWeight: 20, auxLrScale: 10, mixRate: 0.35, questionWeights: { gender: 5, sounds: 4 },
    });
    if (o.cache) for (const f of fs.readdirSync(work)) if (f.startsWith('mels-') && !fs.existsSync(path.join(o.cache, f))) fs.copyFileSync(path.join(work, f), path.join(o.cache, f));
    const ms = r.records.filter((s) => s.step >= skip).map((s) => s.ms);
    const peak = await measurePeakFma(engine);
    return { steps, skip, msPerStep: Math.round(ms.reduce((a, b) => a + b, 0) / ms.length), ms, fmaPeakGflops: Math.round(peak * 10) / 10 };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const corpus = arg('corpus');
  if (!corpus) {
    console.error('usage: npx tsx bench/train-step.ts --corpus DIR [--steps 22 --skip 2 --cache DIR --profile]');
    process.exit(2);
  }
  const profile = process.argv.includes('--profile');
  const engine = await Engine.create({ timing: profile });
  const r = await benchTrainStep(engine, corpus, { steps: Number(arg('steps') ?? 22), skip: Number(arg('skip') ?? 2), cache: arg('cache') });
  console.log(JSON.stringify({ ...r, adapter: engine.adapter?.name }));
  if (profile) {
    const rows = await engine.takeTimings();
    const total = rows.reduce((a, t) => a + t.totalMs, 0);
    const per = r.steps; // every step was profiled (the compile-heavy first steps included)
    for (const t of rows.slice(0, 20)) console.log(`${t.kernel.padEnd(28)} ${String(t.calls).padStart(6)} ${(t.totalMs / per).toFixed(1).padStart(8)} ms/step ${((100 * t.totalMs) / total).toFixed(1).padStart(5)}%`);
  }
  engine.destroy();
}
