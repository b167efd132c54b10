// The cluster examples in docs/: the SLURM array script passes `bash -n` and, run with stand-ins for
// ardgpu and sbatch under a SLURM array task's variables, captures its part with --shards and has
// the first task submit the merge after the array; the Kubernetes manifest parses (a small YAML
// reader for the block subset the file uses) into an Indexed Job whose completions agree with
// --shards, and a merge Job, told apart by the labels `kubectl apply -l` selects.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const DOCS = path.join(import.meta.dirname, '..', 'docs');
let tmp: string;
beforeAll(() => void (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-docs-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

type Yaml = string | number | boolean | null | Yaml[] | { [k: string]: Yaml };

function scalar(s: string): Yaml {
  s = s.trim();
  if (s.startsWith('[') && s.endsWith(']')) return s.slice(1, -1).trim() ? s.slice(1, -1).split(',').map(scalar) : [];
  if (/^".*"$/.test(s)) return JSON.parse(s);
  if (/^'.*'$/.test(s)) return s.slice(1, -1).replace(/''/g, "'");
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  if (s === 'true' || s === 'false') return s === 'true';
  if (s === 'null' || s === '~' || s === '') return null;
  return s;
}

/** Block-style YAML (mappings, sequences, flow sequences of scalars, comments, ---): throws on what it does not read. */
function parseYaml(text: string): Yaml[] {
  const docs = text.split(/^---\s*$/m);
  return docs.map((doc) => {
    const lines = doc.split('\n').map((raw, i) => ({ raw: raw.replace(/\s+#.*$/, '').replace(/^\s*#.*$/, ''), no: i + 1 }))
      .filter((l) => l.raw.trim() !== '')
      .map((l) => {
        if (/\t/.test(l.raw)) throw new Error(`line ${l.no}: tab`);
        return { indent: l.raw.length - l.raw.trimStart().length, text: l.raw.trim(), no: l.no };
      });
    let at = 0;
    const block = (indent: number): Yaml => {
      const first = lines[at]!;
      if (first.indent !== indent) throw new Error(`line ${first.no}: indent ${first.indent}, expected ${indent}`);
      if (first.text.startsWith('- ') || first.text === '-') {
        const list: Yaml[] = [];
        while (at < lines.length && lines[at]!.indent === indent && lines[at]!.text.startsWith('-')) {
          const l = lines[at]!;
          const rest = l.text.slice(1).trimStart();
          if (/^[\w.-]+:(\s|$)/.test(rest)) {
            // "- key: v" opens a mapping whose further keys sit at the dash's indent + 2
            lines[at] = { indent: indent + 2, text: rest, no: l.no };
            list.push(block(indent + 2));
          } else {
            at++;
            list.push(scalar(rest));
          }
        }
        return list;
      }
      const map: Record<string, Yaml> = {};
      while (at < lines.length && lines[at]!.indent === indent && !lines[at]!.text.startsWith('- ')) {
        const l = lines[at]!;
        const m = /^([\w.\/-]+):(?:\s+(.*))?$/.exec(l.text);
        if (!m) throw new Error(`line ${l.no}: not "key: value": ${l.text}`);
        if (m[1]! in map) throw new Error(`line ${l.no}: duplicate key ${m[1]}`);
        at++;
        if (m[2] !== undefined && m[2] !== '') map[m[1]!] = scalar(m[2]);
        else if (at < lines.length && (lines[at]!.indent > indent || (lines[at]!.indent === indent && lines[at]!.text.startsWith('- ')))) map[m[1]!] = block(lines[at]!.indent);
        else map[m[1]!] = null;
      }
      return map;
    };
    const v = lines.length ? block(0) : null;
    if (at !== lines.length) throw new Error(`line ${lines[at]!.no}: unexpected indentation`);
    return v;
  }).filter((d) => d !== null);
}

describe('cluster examples in docs/', () => {
  it('slurm-capture.sh: valid bash; a task captures its part with --shards, the first submits the merge after the array', () => {
    const script = path.join(DOCS, 'slurm-capture.sh');
    expect(spawnSync('bash', ['-n', script]).status).toBe(0);
    const text = fs.readFileSync(script, 'utf8');
    const array = /^#SBATCH --array=(\d+)-(\d+)$/m.exec(text)!;
    const shards = /^SHARDS=\$\{SHARDS:-(\d+)\}$/m.exec(text)!;
    expect(Number(array[2]) - Number(array[1]) + 1).toBe(Number(shards[1]));
    // stand-ins record their arguments
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    const log = path.join(tmp, 'calls.log');
    for (const tool of ['ardgpu', 'sbatch']) {
      fs.writeFileSync(path.join(bin, tool), `#!/usr/bin/env bash\necho "${tool} $*" >> "${log}"\n`, { mode: 0o755 });
    }
    const runTask = (id: string) => spawnSync('bash', [script], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, SLURM_ARRAY_TASK_ID: id, SLURM_ARRAY_TASK_MIN: '0', SLURM_ARRAY_TASK_COUNT: shards[1]!, SLURM_ARRAY_JOB_ID: '4242', RUN: '/shared/runs/x' },
    });
    expect(runTask('3').status).toBe(0);
    expect(fs.readFileSync(log, 'utf8').trim().split('\n')).toEqual([expect.stringMatching(/^ardgpu capture --labels \S+ --layers \d+ --model \S+ --run \/shared\/runs\/x --shards 8$/)]);
    fs.rmSync(log);
    expect(runTask('0').status).toBe(0);
    const calls = fs.readFileSync(log, 'utf8').trim().split('\n');
    expect(calls[0]).toMatch(/^ardgpu capture .* --shards 8$/);
    expect(calls[1]).toMatch(/^sbatch --dependency=afterok:4242 .*--wrap=ardgpu merge-capture --run '\/shared\/runs\/x'$/);
  });

  it('k8s-capture.yaml: an Indexed Job whose completions agree with --shards, and a merge Job', () => {
    expect(() => parseYaml('a:\n  - b: 1\n   c: 2\n')).toThrow(); // the reader refuses bad indentation
    expect(parseYaml('a:\n  - b: 1\n    c: [x, "y"]\n  - 3\n')).toEqual([{ a: [{ b: 1, c: ['x', 'y'] }, 3] }]);
    const docs = parseYaml(fs.readFileSync(path.join(DOCS, 'k8s-capture.yaml'), 'utf8')) as any[];
    expect(docs).toHaveLength(2);
    const [job, merge] = docs;
    expect(job).toMatchObject({ apiVersion: 'batch/v1', kind: 'Job', metadata: { labels: { 'ardgpu-step': 'capture' } } });
    expect(job.spec.completionMode).toBe('Indexed');
    expect(job.spec.template.spec.restartPolicy).toBe('Never');
    const c = job.spec.template.spec.containers[0];
    expect(c.command).toEqual(['ardgpu']);
    expect(c.args[0]).toBe('capture');
    expect(Number(c.args[c.args.indexOf('--shards') + 1])).toBe(job.spec.completions);
    const run = c.args[c.args.indexOf('--run') + 1];
    expect(c.volumeMounts[0].mountPath).toBe('/data');
    expect(merge).toMatchObject({ kind: 'Job', metadata: { labels: { 'ardgpu-step': 'merge' } } });
    expect(merge.spec.template.spec.containers[0].command).toEqual(['ardgpu', 'merge-capture', '--run', run]);
  });
});
