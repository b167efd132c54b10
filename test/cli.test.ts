// The CLI as a user meets it: help for every command, exit codes (0 ok, 1 failure, 2 usage),
// one-line errors naming the file and the problem (a stack only with --debug), clean --json.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyModelDir } from './tiny-model.js';
import { runCli as cli } from './helpers.js';

const BIN = path.join(import.meta.dirname, '..', 'bin', 'ardgpu.mjs');
const COMMANDS = ['info', 'bench', 'ask', 'make-corpus', 'eval-model', 'capture', 'train-sae', 'retrieve', 'describe', 'steer', 'steer-experiment', 'evaluate', 'report', 'explain', 'demo', 'tokenize', 'plan', 'export-sae', 'serve', 'merge-capture', 'splice'];


function expectOneLineError(r: ReturnType<typeof cli>, code: number, ...needles: (string | RegExp)[]) {
  expect(r.code, r.stderr.join('\n')).toBe(code);
  expect(r.stderr).toHaveLength(1);
  expect(r.stderr[0]).toMatch(/^error: /);
  for (const n of needles) expect(r.stderr[0]).toMatch(n);
  expect(r.stderr.join('\n')).not.toMatch(/\n\s+at /);
}

let model: string;
let tmp: string;

beforeAll(() => {
  model = tinyModelDir();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-cli-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.rmSync(model, { recursive: true, force: true });
});

describe('ardgpu CLI', () => {
  it('has help for every command, with the shared flags', () => {
    const top = cli(['--help']);
    expect(top.code).toBe(0);
    for (const c of COMMANDS) expect(top.stdout).toContain(`  ${c}`);
    for (const c of COMMANDS) {
      const r = cli([c, '--help']);
      expect(r.code, c).toBe(0);
      for (const f of ['--json', '--quiet', '--debug']) expect(r.stdout, `${c} ${f}`).toContain(f);
    }
  });

  it('usage errors exit 2 with one line', () => {
    expectOneLineError(cli(['frobnicate']), 2, /unknown command 'frobnicate'/);
    expectOneLineError(cli(['info', '--frob']), 2, /--frob/);
    expectOneLineError(cli(['evaluate']), 2, /--run <dir> is required/);
    expectOneLineError(cli(['make-corpus', '--size', 'lots']), 2, /--size: expected an integer/);
  });

  it('info --json prints only JSON on stdout', () => {
    const r = cli(['info', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.name).toMatch(/\S/);
    expect(typeof j.f16).toBe('boolean');
  });

  it('every kind of malformed WAV: one line naming the file and the problem, exit 1', () => {
    const wavDir = path.join(import.meta.dirname, 'fixtures', 'wav');
    const cases: [string, RegExp][] = [
      ['empty.wav', /empty file/],
      ['not-riff.wav', /not a RIFF\/WAVE file/],
      ['truncated-header.wav', /truncated header/],
      ['truncated-data.wav', /truncated data/],
      ['zero-samples.wav', /no samples/],
      ['nan-samples.wav', /NaN sample/],
      ['inf-samples.wav', /infinite sample/],
      ['alaw.wav', /unsupported encoding A-law/],
    ];
    for (const [f, why] of cases) {
      const r = cli(['ask', path.join(wavDir, f), '--model', model]);
      expectOneLineError(r, 1, f, why);
    }
    const missing = cli(['ask', path.join(tmp, 'nope.wav'), '--model', model]);
    expectOneLineError(missing, 1, 'nope.wav');
    // --debug adds the stack
    const dbg = cli(['ask', path.join(wavDir, 'nan-samples.wav'), '--model', model, '--debug']);
    expect(dbg.code).toBe(1);
    expect(dbg.stderr.join('\n')).toMatch(/\n\s+at /);
  });

  it('missing or corrupt weights: one line naming the file', () => {
    const wav = path.join(import.meta.dirname, 'fixtures', 'wav', 'pcm16-stereo-44k.wav');
    const bad = (name: string, mutate: (dir: string) => void) => {
      const dir = path.join(tmp, name);
      fs.cpSync(model, dir, { recursive: true });
      mutate(dir);
      return cli(['ask', wav, '--model', dir]);
    };
    expectOneLineError(cli(['ask', wav, '--model', path.join(tmp, 'no-model')]), 1, /no-model: no model here/);
    expectOneLineError(
      bad('truncated', (d) => {
        const f = path.join(d, 'model.safetensors');
        fs.truncateSync(f, Math.floor(fs.statSync(f).size / 2));
      }),
      1,
      /model\.safetensors/,
    );
    expectOneLineError(
      bad('header-length', (d) => {
        const f = path.join(d, 'model.safetensors');
        const b = fs.readFileSync(f);
        b.writeBigUInt64LE(BigInt(b.length * 4), 0);
        fs.writeFileSync(f, b);
      }),
      1,
      /model\.safetensors/,
      /header/i,
    );
    expectOneLineError(
      bad('shape', (d) => {
        const f = path.join(d, 'config.json');
        const c = JSON.parse(fs.readFileSync(f, 'utf8'));
        c.text_config.intermediate_size += 8;
        fs.writeFileSync(f, JSON.stringify(c));
      }),
      1,
      /mlp\.(gate|up|down)_proj/,
    );
    expectOneLineError(bad('bad-json', (d) => fs.writeFileSync(path.join(d, 'config.json'), '{ nope')), 1, /config\.json/);
  });

  it('ask answers on stdout (and as JSON), exit 0', () => {
    const wav = path.join(import.meta.dirname, 'fixtures', 'wav', 'pcm16-stereo-44k.wav');
    const r = cli(['ask', wav, '--model', model, '--max-tokens', '4', '--json']);
    expect(r.code, r.stderr.join('\n')).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(typeof j.answer).toBe('string');
    expect(j.tokens).toBeGreaterThan(0);
  });
});

// stderr exactly as the user sees it (runCli drops Dawn's notices itself, should a run show them).
function cliRaw(args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ARDGPU_FROM_SOURCE: '1', XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
    timeout: 120_000,
  });
}

describe('ardgpu CLI: stderr and WAV input', () => {
  it('a successful command prints nothing on stderr (Dawn\'s notices are filtered)', () => {
    const r = cliRaw(['info']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^adapter /m);
    expect(r.stderr).toBe('');
  });

  it('reads the WAV from the bug report (LIST/INFO, odd JUNK, LIST/adtl before data); a damaged WAV is one error line', () => {
    const wavDir = path.join(import.meta.dirname, 'fixtures', 'wav');
    const ok = cliRaw(['ask', path.join(wavDir, 'riff-list-junk-adtl.wav'), '--model', model, '--max-tokens', '2', '--json']);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stderr).toBe('');
    expect(JSON.parse(ok.stdout).tokens).toBeGreaterThan(0);

    // The same file with its channel count zeroed.
    const bad = path.join(tmp, 'zero-channels.wav');
    const b = fs.readFileSync(path.join(wavDir, 'riff-list-junk-adtl.wav'));
    b.writeUInt16LE(0, 22);
    fs.writeFileSync(bad, b);
    const r = cliRaw(['ask', bad, '--model', model]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`error: ${bad}: invalid fmt chunk: 0 channels\n`);
  });

  it('the stderr filter drops whole notice lines only, and passes a progress redraw on at once', async () => {
    const { dawnNoticeFilter } = await import('../bin/dawn-notices.mjs');
    const notice = (kind: string) =>
      `Warning: maxDynamic${kind}BuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n`;
    const kept = [
      '\r\x1b[2Kcapture [##....] 2/6',
      '\r\x1b[2Kcapture [######] 6/6\n',
      'Warning: maxDynamicUniformBuffersPerPipelineLayout is something else\n',
      'Warning: an unrelated warning\n',
      'error: x.wav: no samples\n',
      'Warning: maxDynamic', // ends the stream unfinished: passed on by flush()
    ];
    const input = notice('Uniform') + kept[0] + kept[1] + notice('Storage') + kept[2] + kept[3] + notice('Uniform') + kept[4] + kept[5];
    const want = kept.join('');
    // Every split of the stream into two pieces, and one character at a time.
    for (let cut = 0; cut <= input.length; cut++) {
      const f = dawnNoticeFilter();
      expect(f.feed(input.slice(0, cut)) + f.feed(input.slice(cut)) + f.flush(), `cut ${cut}`).toBe(want);
    }
    const f = dawnNoticeFilter();
    expect([...input].map((c) => f.feed(c)).join('') + f.flush()).toBe(want);
    // A redraw without a newline is not held back.
    const g = dawnNoticeFilter();
    expect(g.feed(notice('Storage'))).toBe('');
    expect(g.feed(kept[0])).toBe(kept[0]);
    expect(g.feed(' more')).toBe(' more');
  });
});
