// `ardgpu serve` without a browser: it serves only files inside its runs (404 for ../, absolute,
// symlinked and percent-encoded escapes), answers the JSON API, explains an upload like
// explain() does, streams steering answers equal to `ardgpu steer`'s, runs 20 concurrent GPU
// requests through one queue with flat GPU memory, and keeps working after a client disconnects.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeAudio } from '../src/audio/decode.js';
import { encodeWav } from '../src/audio/wav.js';
import { explain } from '../src/ard/explain.js';
import { readFeatures } from '../src/ard/rank.js';
import { clipResiduals } from '../src/ard/stages.js';
import type { Engine } from '../src/gpu/engine.js';
import { loadAudioLLM } from '../src/model/load.js';
import { loadSae } from '../src/sae/load.js';
import { startServer, type Server } from '../src/serve/server.js';
import { CLI_BIN, getEngine, runCli } from './helpers.js';
import { fixtureClip, LAYER, makeServeRun, NAMED } from './serve-fixture.js';
import { tinyModelDir } from './tiny-model.js';

let engine: Engine;
let run: string;
let modelDir: string;
let srv: Server;
let outside: string;

/** A raw GET: the path goes out exactly as written (fetch would normalise `..`). */
function rawGet(p: string): Promise<{ status: number; body: string; type?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: srv.port, path: p, method: 'GET' }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(parts).toString('utf8'), type: res.headers['content-type'] }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** POST and read an NDJSON stream into its messages. */
async function steer(query: string, body?: Uint8Array): Promise<any[]> {
  const r = await fetch(`${srv.url}api/runs/0/steer?${query}`, { method: 'POST', body });
  const text = await r.text();
  if (!r.ok) throw new Error(text);
  return text.trim().split('\n').map((l) => JSON.parse(l));
}

beforeAll(async () => {
  engine = await getEngine();
  run = await makeServeRun(engine);
  modelDir = tinyModelDir();
  outside = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-serve-outside-'));
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'outside secret');
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(run, 'link.txt'));
  fs.symlinkSync(outside, path.join(run, 'linkdir'));
  fs.writeFileSync(path.join(run, 'inside.txt'), 'inside');
  fs.symlinkSync(path.join(run, 'inside.txt'), path.join(run, 'inside-link.txt'));
  srv = await startServer({ runs: [run], port: 0, engine, modelDir, log: () => {}, maxUploadBytes: 200_000 });
}, 60_000);

afterAll(async () => {
  await srv?.close();
  for (const d of [run, modelDir, outside]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

describe('serve: files', () => {
  it('serves files inside the run and 404s every escape', async () => {
    const ok = await rawGet('/runs/0/clips/clip-0.wav');
    expect(ok.status).toBe(200);
    expect(ok.type).toBe('audio/wav');
    expect((await rawGet('/runs/0/inside.txt')).body).toBe('inside');
    expect((await rawGet('/runs/0/inside-link.txt')).body).toBe('inside'); // a link that stays inside is fine
    const bad = [
      '/runs/0/../package.json',
      '/runs/0/clips/../../package.json',
      `/runs/0/${'../'.repeat(12)}etc/passwd`,
      '/runs/0//etc/passwd',
      '/runs/0/%2Fetc%2Fpasswd',
      '/runs/0/%2e%2e/package.json',
      '/runs/0/%2E%2E%2Fpackage.json',
      '/runs/0/clips%2F..%2F..%2Fpackage.json',
      '/runs/0/%252e%252e/package.json',
      '/runs/0/..%5cpackage.json',
      '/runs/0/clips/%00clip-0.wav',
      '/runs/0/%E0%A4%A',
      '/runs/0/link.txt',
      '/runs/0/linkdir/secret.txt',
      '/runs/0/.hidden',
      '/runs/0/clips',
      '/runs/0/',
      '/runs/1/clips/clip-0.wav',
      `/runs/0/${encodeURIComponent(path.join(outside, 'secret.txt'))}`,
      '/../package.json',
      '/api/runs/0/clip/99',
      '/api/runs/0/clip/..%2f..%2fpackage.json',
    ];
    for (const p of bad) {
      const r = await rawGet(p);
      expect(r.status, p).toBeGreaterThanOrEqual(400);
      expect(r.body, p).not.toContain('outside secret');
      expect(r.body, p).not.toContain('"name": "ardgpu"');
      if (p.startsWith('/runs/')) expect(r.status, p).toBe(404);
    }
  });

  it('serves only the model files a browser needs', async () => {
    fs.writeFileSync(path.join(modelDir, 'notes.txt'), 'model secret');
    const list = await (await fetch(`${srv.url}api/model`)).json();
    expect(list.files).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'preprocessor_config.json', 'tokenizer.json']);
    const cfg = await rawGet('/api/model/config.json');
    expect(cfg.status).toBe(200);
    expect(JSON.parse(cfg.body).model_type).toBeDefined();
    for (const p of ['/api/model/notes.txt', '/api/model/..%2Fnotes.txt', '/api/model/%2e%2e', '/api/model/../package.json', `/api/model/${encodeURIComponent(path.join(modelDir, 'notes.txt'))}`]) {
      const r = await rawGet(p);
      expect(r.status, p).toBe(404);
      expect(r.body).not.toContain('model secret');
    }
  });

  it('refuses a non-loopback host unless asked, and serves the page', async () => {
    await expect(startServer({ runs: [run], host: '0.0.0.0', port: 0 })).rejects.toThrow(/not a loopback address/);
    await expect(startServer({ runs: [path.join(run, 'nope')], port: 0 })).rejects.toThrow(/no such run folder/);
    const page = await rawGet('/');
    expect(page.status).toBe(200);
    expect(page.body).toContain('<script type="module" src="/app.js">');
  });
});

describe('serve: JSON API', () => {
  it('lists runs, features, one feature with label APs, neighbours, timelines and steering', async () => {
    const runs = await (await fetch(`${srv.url}api/runs`)).json();
    expect(runs.runs).toEqual([expect.objectContaining({ index: 0, layers: [LAYER], eval: false, steering: true, sae: [LAYER] })]);
    const ff = await (await fetch(`${srv.url}api/runs/0/features/${LAYER}`)).json();
    expect(ff.features.map((f: any) => f.id)).toEqual(readFeatures(path.join(run, `features-${LAYER}.json`)).features.map((f) => f.id));
    const f = await (await fetch(`${srv.url}api/runs/0/feature/${LAYER}/10`)).json();
    expect(f.feature.name).toBe('female speech');
    // feature 10's clip means are high exactly on the 'female speech' clips: AP 1 for that label
    expect(f.labels[0]).toEqual({ label: 'female speech', ap: 1, positives: 3 });
    expect(f.labels[1].ap).toBeLessThan(1);
    expect(f.neighbours).toHaveLength(5);
    expect(f.neighbours.map((n: any) => n.id)).not.toContain(10);
    for (let i = 1; i < f.neighbours.length; i++) expect(f.neighbours[i - 1].cosine).toBeGreaterThanOrEqual(f.neighbours[i].cosine);
    expect(Object.keys(f.timelines).length).toBe(f.feature.H.length + f.feature.L.length);
    expect(f.sweeps).toHaveLength(1);
    const q = await (await fetch(`${srv.url}api/runs/0/quality/${LAYER}`)).json();
    expect(q.histogram.counts.reduce((a: number, b: number) => a + b, 0) + q.histogram.dead).toBe(256);
  });

  it('answers a bad request with one line and the right status', async () => {
    for (const [p, status, msg] of [
      [`api/runs/0/feature/${LAYER}/99`, 404, 'feature 99: not kept'],
      ['api/runs/0/features/7', 400, 'layer 7: not in run'],
      ['api/runs/5/features/0', 400, 'run 5: no such run'],
      ['api/runs/0/eval', 404, 'eval.json: not in run'],
      ['api/nothing', 404, 'not found'],
    ] as const) {
      const r = await fetch(srv.url + p);
      expect(r.status, p).toBe(status);
      const j = await r.json();
      expect(j.error, p).toContain(msg);
      expect(j.error).not.toContain('\n');
    }
  });
});

describe('serve: GPU work', () => {
  const wav = encodeWav(fixtureClip(3, 1.5), 16000);

  it('explains an upload exactly as explain() does; bad and oversized uploads get one-line errors', async () => {
    const r = await fetch(`${srv.url}api/runs/0/explain?layer=${LAYER}&name=x.wav`, { method: 'POST', body: wav });
    expect(r.status).toBe(200);
    const got = await r.json();
    expect(got.where).toBe('server');
    expect(got.features.map((f: any) => f.feature).sort()).toEqual(NAMED);
    // the same computation in-process, as `ardgpu explain` does it
    const model = await loadAudioLLM(engine, modelDir);
    const sae = loadSae(engine, path.join(run, `sae-${LAYER}.safetensors`));
    const acts = clipResiduals(model, (await decodeAudio(wav, 'x.wav')).samples, LAYER);
    const want = await explain({ engine, sae, acts, frameSeconds: model.frameSeconds, features: readFeatures(path.join(run, `features-${LAYER}.json`)).features.filter((f) => f.name) });
    acts.dispose();
    sae.dispose();
    model.dispose();
    expect(got.features).toEqual(want.features);
    expect(got.timeline).toBe(want.timeline);

    const bad = await fetch(`${srv.url}api/runs/0/explain?layer=${LAYER}&name=noise.wav`, { method: 'POST', body: new Uint8Array(1000).fill(7) });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toMatch(/^noise\.wav: /);
    const big = await fetch(`${srv.url}api/runs/0/explain?layer=${LAYER}`, { method: 'POST', body: new Uint8Array(300_000) });
    expect(big.status).toBe(413);
    expect((await big.json()).error).toMatch(/200000-byte limit/);
    const empty = await fetch(`${srv.url}api/runs/0/explain?layer=${LAYER}`, { method: 'POST' });
    expect((await empty.json()).error).toMatch(/empty upload/);
  }, 60_000);

  it("streams steering answers equal to `ardgpu steer`'s", async () => {
    const file = path.join(run, 'clips', 'clip-2.wav');
    const cli = runCli(['steer', file, '--run', run, '--layer', String(LAYER), '--feature', '10', '--values', '0,6,-6', '--max-tokens', '6', '--model', modelDir, '--prompt', 'What is it?', '--json']);
    expect(cli.code, cli.stderr.join('\n')).toBe(0);
    const want = JSON.parse(cli.stdout);
    // runCli blocked this process's event loop: let the server close the idle keep-alive sockets
    // whose timeout passed meanwhile, or fetch may reuse one as it closes (ECONNRESET)
    await new Promise((r) => setTimeout(r, 300));
    const msgs = await steer(`layer=${LAYER}&feature=10&values=0,6,-6&maxTokens=6&prompt=${encodeURIComponent('What is it?')}&clip=2`);
    const done = msgs.at(-1);
    expect(done.type).toBe('done');
    expect(done.baseline).toBe(want.baseline);
    expect(done.values).toEqual(want.values);
    expect(msgs.filter((m) => m.type === 'answer').map((m) => m.answer)).toEqual([want.baseline, ...want.values.map((v: any) => v.answer)]);
    // tokens stream before each answer: the last partial text of a value is its answer
    const tokens = msgs.filter((m) => m.type === 'token' && m.index === 1);
    expect(tokens.length).toBeGreaterThan(0);
    expect(tokens.at(-1).text).toBe(want.values[1].answer);
    // a bad value is one line, before any GPU work
    const r = await fetch(`${srv.url}api/runs/0/steer?layer=${LAYER}&feature=10&values=1,x&clip=2`, { method: 'POST' });
    expect(r.status).toBe(400);
    expect((await r.json()).error).toBe("values: 'x' is not a number");
  }, 120_000);

  it('runs 20 concurrent explain and steer requests through one queue, memory flat', async () => {
    const one = (i: number) =>
      i % 2
        ? fetch(`${srv.url}api/runs/0/explain?layer=${LAYER}&clip=${i % 12}`, { method: 'POST' }).then(async (r) => ({ ok: r.ok, n: (await r.json()).features?.length }))
        : steer(`layer=${LAYER}&feature=11&values=3&maxTokens=3&clip=${i % 12}`).then((m) => ({ ok: m.at(-1).type === 'done', n: m.at(-1).values.length }));
    await Promise.all([one(0), one(1)]); // warm: model, SAE, kernels, pools
    const gpu0 = engine.memory().liveBytes;
    const rss0 = process.memoryUsage().rss;
    const done0 = srv.queue.done;
    const got = await Promise.all(Array.from({ length: 20 }, (_, i) => one(i)));
    expect(got.every((g) => g.ok)).toBe(true);
    expect(got.filter((_, i) => i % 2).every((g) => g.n === NAMED.length)).toBe(true);
    expect(srv.queue.done - done0).toBe(20);
    expect(srv.queue.pending).toBe(0);
    expect(engine.memory().liveBytes).toBe(gpu0);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(150e6);
  }, 180_000);

  it('survives a client that disconnects mid-generation', async () => {
    const gpu0 = engine.memory().liveBytes;
    const done0 = srv.queue.done;
    const ctl = new AbortController();
    const r = await fetch(`${srv.url}api/runs/0/steer?layer=${LAYER}&feature=12&values=1,2,3,4,5,6&maxTokens=32&clip=1`, { method: 'POST', signal: ctl.signal });
    const reader = r.body!.getReader();
    let seen = '';
    while (!seen.includes('"type":"token"')) seen += new TextDecoder().decode((await reader.read()).value);
    ctl.abort();
    await expect(reader.read()).rejects.toThrow();
    // the job ends early (its remaining values are not generated) and the server goes on
    for (let t = 0; srv.queue.done === done0 && t < 600; t++) await new Promise((res) => setTimeout(res, 50));
    expect(srv.queue.done).toBe(done0 + 1);
    const after = await steer(`layer=${LAYER}&feature=12&values=2&maxTokens=2&clip=1`);
    expect(after.at(-1).type).toBe('done');
    expect(engine.memory().liveBytes).toBe(gpu0);
  }, 120_000);
});

describe('ardgpu serve (CLI)', () => {
  const children: ReturnType<typeof spawn>[] = [];
  // a failed assertion must not leave a server running
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM'); // the wrapper passes it on to the server
  });

  /** Starts `ardgpu serve ARGS`, waits for its first stdout line, returns it with the process. */
  function serveCli(args: string[]): Promise<{ line: string; stderr: () => string; stop: () => Promise<number | null> }> {
    const child = spawn(process.execPath, [CLI_BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    let err = '';
    child.stderr.on('data', (c) => (err += c));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    return new Promise((resolve, reject) => {
      child.stdout.on('data', (c) => {
        out += c;
        if (out.includes('\n')) resolve({ line: out.split('\n')[0]!, stderr: () => err, stop: () => (child.kill('SIGTERM'), exited) });
      });
      exited.then((code) => reject(new Error(`serve exited (${code}): ${err}`)));
    });
  }

  it('prints its URL, serves the run, warns on a non-loopback --host and stops on SIGTERM', async () => {
    const s = await serveCli(['--run', run, '--port', '0', '--json']);
    const url = JSON.parse(s.line).url as string;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect((await (await fetch(`${url}api/runs`)).json()).runs[0].layers).toEqual([LAYER]);
    expect(await s.stop()).toBe(0);
    const open = await serveCli(['--run', run, '--port', '0', '--host', '0.0.0.0']);
    expect(open.line).toMatch(/^explorer: http:\/\/0\.0\.0\.0:\d+\//);
    await new Promise((r) => setTimeout(r, 200));
    expect(open.stderr()).toMatch(/^warning: serving on 0\.0\.0\.0 with no authentication/m);
    expect(await open.stop()).toBe(0);
    const none = runCli(['serve', '--port', '0']);
    expect(none.code).toBe(2);
    expect(none.stderr).toEqual(['error: --run <dir> is required']);
  }, 60_000);
});
