// tools/train-embedded.sh rebuilds the shipped model in one command. Running it takes hours, so this
// checks its plan (--dry-run) against what the shipped model's README says each stage ran: the same
// stages in the same order, each with the same training options and the corpus the README names.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { stageCommands } from '../src/train/export.js';

const ROOT = path.resolve(__dirname, '..');
const SCRIPT = path.join(ROOT, 'tools', 'train-embedded.sh');

function dryRun(...args: string[]): { code: number; lines: string[]; stderr: string } {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-train-embedded-'));
  const r = spawnSync('bash', [SCRIPT, '--dry-run', '--work', work, ...args], { cwd: ROOT, encoding: 'utf8' });
  fs.rmSync(work, { recursive: true, force: true });
  return { code: r.status ?? -1, lines: r.stdout.split('\n').filter(Boolean), stderr: r.stderr };
}

/** A command's options as name → value, without the ones that only name places. */
function options(cmd: string): Record<string, string> {
  const words = cmd.split(/\s+/);
  const out: Record<string, string> = {};
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (!w.startsWith('--')) continue;
    const v = words[i + 1] && !words[i + 1]!.startsWith('--') ? words[++i]! : 'true';
    if (!['--corpus', '--init', '--out', '--work'].includes(w)) out[w] = v;
  }
  return out;
}

describe('tools/train-embedded.sh', () => {
  it("runs the shipped model's training stages, in its README's order, with their options", () => {
    const readme = fs.readFileSync(path.join(ROOT, 'weights', 'README.md'), 'utf8');
    const shipped = stageCommands(readme); // the first code block of training commands (later ones are tries)
    const { code, lines } = dryRun();
    expect(code).toBe(0);
    const planned = lines.filter((l) => l.startsWith('npx tsx tools/train-audiollm.ts'));
    expect(shipped.length).toBeGreaterThanOrEqual(7);
    expect(planned.length).toBe(shipped.length);
    for (let i = 0; i < planned.length; i++) expect(options(planned[i]!), `stage ${i + 1}`).toEqual(options(shipped[i]!));
    // each stage starts from the one before, and the last writes the model
    for (let i = 1; i < planned.length; i++) expect(planned[i]).toContain(`--init ${/--out (\S+)/.exec(planned[i - 1]!)![1]}`);
    expect(planned[0]).not.toContain('--init');
    expect(planned.at(-1)).toContain('--out weights-retrained');
  });

  it('renders the corpora the stages read, with the make-corpus options the README gives', () => {
    const { lines } = dryRun();
    const corpora = lines.filter((l) => l.includes(' make-corpus '));
    expect(corpora.map((l) => l.replace(/ --out \S+/, '').replace(/^node bin\/ardgpu.mjs /, ''))).toEqual([
      'make-corpus --seed 0 --size 3000',
      'make-corpus --variety 1 --seed 0 --size 4000',
      'make-corpus --variety 2 --seed 0 --size 4000',
      'make-corpus --variety 3 --seed 0 --size 4000',
      'make-corpus --variety 4 --seed 0 --size 4000',
      'make-corpus --variety 5 --seed 0 --size 4000',
      'make-corpus --variety 6 --seed 0 --size 4000',
      'make-corpus --variety 7 --seed 0 --size 4000',
    ]);
    // and the real training recordings, with the default options the README gives
    expect(lines.filter((l) => l.includes('make-train-recordings.sh')).map((l) => l.replace(/ --out \S+/, ''))).toEqual(['bash tools/make-train-recordings.sh']);
    // every corpus a stage reads is made (or merged) before it
    const made = new Set<string>();
    for (const l of lines) {
      const out = /--out (\S+)/.exec(l)?.[1];
      if (l.includes('train-audiollm.ts')) expect(made.has(/--corpus (\S+)/.exec(l)![1]!), l).toBe(true);
      else if (out) made.add(out);
    }
  });

  it('stops after --stages N, writing that stage to --out', () => {
    const { code, lines } = dryRun('--stages', '3', '--out', '/tmp/x');
    expect(code).toBe(0);
    const planned = lines.filter((l) => l.startsWith('npx tsx tools/train-audiollm.ts'));
    expect(planned).toHaveLength(3);
    expect(planned[2]).toContain('--out /tmp/x');
  });

  it('refuses an unknown option or stage in one line, exit 2', () => {
    for (const [args, msg] of [[['--bogus'], "unknown option '--bogus'"], [['--stages', '0'], '--stages must be 1 to']] as const) {
      const r = dryRun(...args);
      expect(r.code).toBe(2);
      const err = r.stderr.trim().split('\n');
      expect(err).toHaveLength(1);
      expect(err[0]).toContain(msg);
    }
  });
});
