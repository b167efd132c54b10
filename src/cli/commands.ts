// Every subcommand: its flags and a thin call into the library.
import type { CAC } from 'cac';
import { Engine } from '../gpu/engine.js';
import { formatBench, runBench } from '../../bench/run.js';
import { UsageError } from '../util/errors.js';
import { makeCorpus } from '../corpus/index.js';
import { Progress } from './progress.js';

export interface GlobalFlags {
  json?: boolean;
  quiet?: boolean;
  debug?: boolean;
  backend?: string;
  adapter?: string;
}

/** Print a result: JSON on stdout with --json, else the human text. */
export function emit(flags: GlobalFlags, json: unknown, text: () => string): void {
  if (flags.json) process.stdout.write(JSON.stringify(json, null, 2) + '\n');
  else process.stdout.write(text() + '\n');
}

export async function openEngine(flags: GlobalFlags & { profile?: boolean }): Promise<Engine> {
  return Engine.create({ backend: flags.backend, adapter: flags.adapter, profile: flags.profile });
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

function withGlobals<T extends { option: (...a: any[]) => T }>(cmd: T): T {
  return cmd
    .option('--json', 'Machine-readable result on stdout (nothing else there)')
    .option('--quiet', 'No progress output')
    .option('--debug', 'Show stack traces on errors')
    .option('--backend <name>', 'Dawn backend: vulkan, metal, d3d12 (env ARDGPU_BACKEND)')
    .option('--adapter <name>', 'Pick an adapter by name substring (env ARDGPU_ADAPTER)');
}

export function registerCommands(cli: CAC): void {
  withGlobals(cli.command('info', 'Show the WebGPU adapter: name, backend, features, limits, f16')).action(async (flags: GlobalFlags) => {
    const engine = await openEngine(flags);
    const a = engine.adapter!;
    emit(flags, a, () =>
      [
        `adapter   ${a.name}`,
        `vendor    ${a.vendor} (${a.architecture})${a.isSoftware ? ' — software rasteriser on the CPU' : ''}`,
        `backend   ${a.backend}`,
        `f16       ${a.f16 ? 'yes (shader-f16)' : 'no'}`,
        `features  ${a.features.join(', ')}`,
        'limits',
        ...Object.entries(a.limits).map(([k, v]) => `  ${k.padEnd(36)} ${v}`),
      ].join('\n'),
    );
    engine.destroy();
  });

  withGlobals(cli.command('bench', 'Kernel microbenchmarks next to the measured FMA peak and copy bandwidth'))
    .option('--only <name>', 'Run only benchmarks whose name contains this')
    .option('--seconds <s>', 'Timing budget per benchmark', { default: 1 })
    .action(async (flags: GlobalFlags & { only?: string; seconds?: number }) => {
      const engine = await openEngine(flags);
      const { entries, json } = await runBench(engine, {
        only: flags.only,
        seconds: Number(flags.seconds),
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
}
