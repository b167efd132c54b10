// `ardgpu serve`: a local web explorer over one or more runs, on Node's own http module.
//
// Routes (r = run index in --run order, L = layer):
//   GET  /, /app.js, /style.css            the page (web/index.html, dist/web/app.js, web/style.css)
//   GET  /api/runs                          runs, layers, which outputs each has
//   GET  /api/runs/r/features/L             features-L.json
//   GET  /api/runs/r/feature/L/F            one feature: entry, label APs, decoder neighbours,
//                                           activation timelines, steering results about it
//   GET  /api/runs/r/clips                  the capture manifest's clips (no shards)
//   GET  /api/runs/r/quality/L              the SAE's quality (density histogram)
//   GET  /api/runs/r/eval, /steering        eval.json, steering.json
//   GET  /api/runs/r/clip/i                 clip i's audio file
//   GET  /runs/r/PATH                       any plain file inside the run folder (safeResolve)
//   POST /api/runs/r/explain?layer=&threshold=&name=   body: audio bytes → explanation JSON
//   POST /api/runs/r/steer?layer=&feature=&values=&prompt=&mode=&positions=&maxTokens=&clip=
//                                           body: audio bytes unless clip=i → NDJSON stream
//   GET  /api/status                        queue and memory figures
//   GET  /ardgpu-browser.js, /api/model[/NAME]  the browser build and the model files it loads
// Every error is one JSON line {"error": "..."} (no stack); GPU work goes through one WorkQueue.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { explain } from '../ard/explain.js';
import { clipResiduals } from '../ard/stages.js';
import { addSteeringHook } from '../ard/steer.js';
import type { SteerMode, SteerPositions } from '../ard/steer.js';
import { runPaths } from '../ard/run.js';
import { decodeAudio } from '../audio/decode.js';
import { Engine } from '../gpu/engine.js';
import { packageRoot } from '../gpu/registry.js';
import type { AudioLLM } from '../model/audiollm.js';
import { buildChatPrompt } from '../model/chat.js';
import { generate } from '../model/generate.js';
import { loadAudioLLM } from '../model/load.js';
import { loadSae } from '../sae/load.js';
import type { Sae } from '../sae/types.js';
import { ArdError, describeError } from '../util/errors.js';
import { contentType, safeResolve } from './paths.js';
import { WorkQueue } from './queue.js';
import { Runs } from './runs.js';
import type { RunInfo } from './runs.js';

export interface ServeOptions {
  runs: readonly string[];
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** A non-loopback host is refused unless this is set (the CLI sets it for an explicit --host). */
  allowRemote?: boolean;
  /** Model folder (default weights/). */
  modelDir?: string;
  /** An engine to use (default: one created on the first GPU request). */
  engine?: Engine;
  engineOptions?: Parameters<typeof Engine.create>[0];
  /** Upload cap in bytes (default 32 MB). */
  maxUploadBytes?: number;
  /** Longest clip accepted, seconds (default 600). */
  maxClipSeconds?: number;
  /** Time allowed to decode an upload (default 20 s). */
  decodeTimeoutMs?: number;
  /** Most GPU jobs waiting (default 64). */
  maxPending?: number;
  /** Steering: most values per request (default 16) and most new tokens (default 64). */
  maxValues?: number;
  maxTokens?: number;
  /** Progress and warnings (default: stderr). */
  log?: (line: string) => void;
}

export interface Server {
  url: string;
  host: string;
  port: number;
  queue: WorkQueue;
  runs: Runs;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost', '[::1]']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** An error for the client: one line and an HTTP status. */
class HttpError extends ArdError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendError(res: http.ServerResponse, e: unknown, log: (l: string) => void): void {
  let status = 500;
  let message: string;
  if (e instanceof HttpError) {
    status = e.status;
    message = e.message;
  } else if (e instanceof ArdError) {
    status = 400;
    message = e.message;
  } else {
    message = `internal error: ${describeError(e)}`;
    log(`serve: ${(e as Error)?.stack ?? String(e)}`);
  }
  message = message.split('\n')[0]!;
  if (res.headersSent) {
    if (!res.writableEnded) res.end(JSON.stringify({ type: 'error', error: message }) + '\n');
    return;
  }
  sendJson(res, status, { error: message });
}

function sendFile(res: http.ServerResponse, file: string): void {
  const st = fs.statSync(file);
  res.writeHead(200, { 'content-type': contentType(file), 'content-length': st.size, 'cache-control': 'no-cache' });
  fs.createReadStream(file).pipe(res);
}

/** The request body, refused (413) past `max` bytes. */
function readBody(req: http.IncomingMessage, max: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max) {
      reject(new HttpError(413, `upload of ${declared} bytes is over the ${max}-byte limit`));
      req.resume();
      return;
    }
    const parts: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > max) {
        reject(new HttpError(413, `upload is over the ${max}-byte limit`));
        req.destroy();
        return;
      }
      parts.push(c);
    });
    req.on('end', () => resolve(new Uint8Array(Buffer.concat(parts))));
    req.on('error', reject);
  });
}

function num(q: URLSearchParams, name: string, dflt?: number): number {
  const v = q.get(name);
  if (v === null || v === '') {
    if (dflt === undefined) throw new ArdError(`${name}: required`);
    return dflt;
  }
  const n = Number(v);
  if (!Number.isFinite(n)) throw new ArdError(`${name}: '${v}' is not a number`);
  return n;
}

export async function startServer(o: ServeOptions): Promise<Server> {
  const host = o.host ?? '127.0.0.1';
  const log = o.log ?? ((l: string) => void process.stderr.write(l + '\n'));
  if (!isLoopback(host) && !o.allowRemote) throw new ArdError(`serve: ${host} is not a loopback address (give it with --host to serve it on purpose)`);
  const runs = new Runs(o.runs);
  const queue = new WorkQueue(o.maxPending ?? 64);
  const maxUpload = o.maxUploadBytes ?? 32 * 1024 * 1024;
  const maxClipSeconds = o.maxClipSeconds ?? 600;
  const decodeTimeout = o.decodeTimeoutMs ?? 20_000;
  const maxValues = o.maxValues ?? 16;
  const maxTokens = o.maxTokens ?? 64;
  const root = packageRoot();
  const webFiles: Record<string, string> = {
    '/': path.join(root, 'web', 'index.html'),
    '/index.html': path.join(root, 'web', 'index.html'),
    '/style.css': path.join(root, 'web', 'style.css'),
    '/app.js': path.join(root, 'dist', 'web', 'app.js'),
    '/ardgpu-browser.js': path.join(root, 'dist', 'web', 'ardgpu-browser.js'),
  };
  const modelDir = o.modelDir ?? path.join(root, 'weights');
  /** The model folder's files a browser needs to run the model itself (no other file of it is served). */
  function modelFiles(): string[] {
    const fixed = ['config.json', 'preprocessor_config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors', 'model.safetensors.index.json'];
    const names = new Set(fixed.filter((f) => fs.existsSync(path.join(modelDir, f))));
    if (names.has('model.safetensors.index.json')) {
      try {
        const idx = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.safetensors.index.json'), 'utf8'));
        for (const f of Object.values<string>(idx.weight_map ?? {})) if (/^[\w.-]+\.safetensors$/.test(f) && fs.existsSync(path.join(modelDir, f))) names.add(f);
      } catch {
        /* a broken index: the browser's load will say so */
      }
    }
    return [...names].sort();
  }

  // GPU state: made on first use, kept for the server's life (one model, one SAE per run/layer)
  let engine: Engine | null = o.engine ?? null;
  const ownEngine = !o.engine;
  let model: AudioLLM | null = null;
  const saes = new Map<string, Sae>();
  async function gpu(): Promise<{ engine: Engine; model: AudioLLM }> {
    engine ??= await Engine.create(o.engineOptions ?? {});
    if (!model) {
      const dir = modelDir;
      if (!fs.existsSync(path.join(dir, 'config.json'))) throw new ArdError(`${dir}: no model here (config.json missing)`);
      log(`serve: loading the model from ${dir}`);
      // the same load as `ardgpu steer` (steerCommand), so answers match it
      model = await loadAudioLLM(engine, dir);
    }
    return { engine, model };
  }
  function saeOf(run: RunInfo, layer: number): Sae {
    const key = `${run.index}:${layer}`;
    let s = saes.get(key);
    if (!s) {
      const file = runPaths(run.dir, layer).sae;
      if (!fs.existsSync(file)) throw new ArdError(`${path.basename(file)}: not in run ${run.name}`);
      s = loadSae(engine!, file);
      saes.set(key, s);
    }
    return s;
  }

  /** Audio samples from the request: manifest clip `clip=i`, else the uploaded bytes. */
  async function audioOf(req: http.IncomingMessage, run: RunInfo, q: URLSearchParams): Promise<{ samples: Float32Array; name: string }> {
    let bytes: Uint8Array;
    let name: string;
    if (q.get('clip') !== null) {
      const file = runs.clipFile(run, num(q, 'clip'));
      bytes = fs.readFileSync(file);
      name = path.basename(file);
    } else {
      bytes = await readBody(req, maxUpload);
      name = (q.get('name') ?? 'upload').replace(/[^\w.\- ]/g, '_').slice(0, 80) || 'upload';
      if (!bytes.length) throw new ArdError(`${name}: empty upload (choose an audio file)`);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new HttpError(413, `${name}: decoding took over ${decodeTimeout / 1000} s`)), decodeTimeout);
    });
    try {
      const a = await Promise.race([decodeAudio(bytes, name), timeout]);
      const seconds = a.samples.length / 16000;
      if (seconds > maxClipSeconds) throw new HttpError(413, `${name}: ${seconds.toFixed(0)} s is longer than the ${maxClipSeconds} s limit`);
      return { samples: a.samples, name };
    } finally {
      clearTimeout(timer);
    }
  }

  async function doExplain(req: http.IncomingMessage, res: http.ServerResponse, run: RunInfo, q: URLSearchParams): Promise<void> {
    const layer = runs.layer(run, q.get('layer'));
    const threshold = num(q, 'threshold', 0);
    const features = runs.featuresFile(run, layer).features.filter((f) => f.name);
    const { samples, name } = await audioOf(req, run, q);
    const prompt = runs.manifest(run).prompt;
    const closed = watchClose(res);
    const out = await queue.run(async () => {
      if (closed()) return null;
      const { engine, model } = await gpu();
      const sae = saeOf(run, layer);
      const acts = clipResiduals(model, samples, layer, prompt);
      try {
        const r = await explain({ engine, sae, acts, frameSeconds: model.frameSeconds, features, threshold });
        return { file: name, layer, where: 'server', duration: r.duration, frameSeconds: model.frameSeconds, features: r.features, timeline: r.timeline };
      } finally {
        acts.dispose();
      }
    });
    if (out && !closed()) sendJson(res, 200, out);
  }

  async function doSteer(req: http.IncomingMessage, res: http.ServerResponse, run: RunInfo, q: URLSearchParams): Promise<void> {
    const layer = runs.layer(run, q.get('layer'));
    const feature = num(q, 'feature');
    if (!Number.isInteger(feature) || feature < 0) throw new ArdError(`feature: '${q.get('feature')}' is not a feature id`);
    const values = (q.get('values') ?? '0,5,10,20').split(',').filter((s) => s.trim() !== '').map((s) => {
      const v = Number(s);
      if (!Number.isFinite(v)) throw new ArdError(`values: '${s.trim()}' is not a number`);
      return v;
    });
    if (!values.length) throw new ArdError('values: none given');
    if (values.length > maxValues) throw new ArdError(`values: at most ${maxValues} per request`);
    const mode = (q.get('mode') ?? 'add') as SteerMode;
    if (mode !== 'add' && mode !== 'set') throw new ArdError(`mode: expected add or set, got '${mode}'`);
    const positions = (q.get('positions') ?? 'all') as SteerPositions;
    if (positions !== 'all' && positions !== 'audio') throw new ArdError(`positions: expected all or audio, got '${positions}'`);
    const maxNewTokens = num(q, 'maxTokens', 32);
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1 || maxNewTokens > maxTokens) throw new ArdError(`maxTokens: expected an integer from 1 to ${maxTokens}`);
    const question = (q.get('prompt') ?? 'What is the gender of the speaker?').slice(0, 2000);
    if (!question.trim()) throw new ArdError('prompt: empty');
    const { samples } = await audioOf(req, run, q);
    const name = runs.featuresFile(run, layer).features.find((f) => f.id === feature)?.name ?? null;
    const closed = watchClose(res);
    res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    const line = (v: unknown) => void (closed() || res.write(JSON.stringify(v) + '\n'));
    line({ type: 'queued', position: queue.pending });
    await queue.run(async () => {
      if (closed()) return;
      const { model } = await gpu();
      const sae = saeOf(run, layer);
      const tok = model.tokenizer;
      if (!tok) throw new ArdError(`${model.source}: no tokenizer.json`);
      // the prompt steerSweep builds: the clip's first window, one <|AUDIO|> block, the question
      const w = model.windows(samples.length)[0];
      if (!w) throw new ArdError(`a clip of ${samples.length} samples is too short to give an audio token`);
      const ids = buildChatPrompt(tok, [w.tokens], question, { audioTokenIndex: model.audioTokenIndex });
      line({ type: 'start', feature, name, layer, mode, positions, question, values, window: { start: w.start, end: w.end } });
      const feats = model.encodeAudio(samples.subarray(w.from, w.to));
      try {
        const gen = async (index: number, value: number | null): Promise<string | null> => {
          const h = value === null ? null : addSteeringHook(model, { sae, layer, feature, value, mode, positions, promptIds: ids });
          try {
            const toks: number[] = [];
            const r = await generate(model, { ids, audio: feats }, {
              maxNewTokens,
              seed: 0,
              onToken: (t) => {
                if (closed()) return false;
                toks.push(t);
                line({ type: 'token', index, text: tok.decode(toks, { skipSpecial: true }) });
              },
            });
            if (closed()) return null;
            return tok.decode(r.tokens, { skipSpecial: true });
          } finally {
            h?.remove();
          }
        };
        const baseline = await gen(-1, null);
        if (baseline === null) return;
        line({ type: 'answer', index: -1, value: null, answer: baseline });
        const answers: { value: number; answer: string }[] = [];
        for (let i = 0; i < values.length; i++) {
          const v = values[i]!;
          // as steerSweep: 'add 0' is the unsteered run, not generated again
          const a = mode === 'add' && v === 0 ? baseline : await gen(i, v);
          if (a === null) return;
          answers.push({ value: v, answer: a });
          line({ type: 'answer', index: i, value: v, answer: a });
        }
        line({ type: 'done', feature, name, layer, mode, positions, question, baseline, values: answers });
      } finally {
        feats.dispose();
      }
    });
    if (!res.writableEnded) res.end();
  }

  function featurePage(run: RunInfo, layer: number, id: number): unknown {
    const ff = runs.featuresFile(run, layer);
    const entry = ff.features.find((f) => f.id === id);
    if (!entry) throw new HttpError(404, `feature ${id}: not kept at layer ${layer} of run ${run.name}`);
    const tl = runs.optionalJson(run, path.basename(runPaths(run.dir, layer).timelines)) as { features?: Record<string, Record<string, number[]>>; frameSeconds?: Record<string, number> } | null;
    const steering = runs.optionalJson(run, 'steering.json') as { feature?: number; layer?: number; sweeps?: { feature: number; layer: number }[] } | null;
    const sweeps = (steering?.sweeps ?? []).filter((s) => s.feature === id && s.layer === layer);
    const clips = runs.manifest(run).clips;
    const clipInfo = (c: number) => ({ clip: c, id: clips[c]?.id, labels: clips[c]?.labels ?? [], duration: clips[c]?.duration, caption: clips[c]?.caption });
    return {
      run: run.index,
      layer,
      feature: entry,
      clips: Object.fromEntries([...entry.H, ...entry.L].map((r) => [r.clip, clipInfo(r.clip)])),
      labels: runs.labelAps(run, layer, id),
      neighbours: runs.neighbours(run, layer, id),
      timelines: tl?.features?.[String(id)] ?? {},
      frameSeconds: tl?.frameSeconds ?? {},
      steering: steering && steering.feature === id && steering.layer === layer ? steering : null,
      sweeps,
    };
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    // the raw path: segments are decoded one by one where files are looked up
    const raw = (req.url ?? '/').split('?')[0]!;
    const method = req.method ?? 'GET';
    const web = webFiles[raw];
    if (web && method === 'GET') {
      if (!fs.existsSync(web)) throw new HttpError(500, `${path.relative(root, web)} is missing (run npm run build)`);
      return sendFile(res, web);
    }
    let m: RegExpExecArray | null;
    if ((m = /^\/runs\/(\d+)\/(.+)$/.exec(raw)) && method === 'GET') {
      const run = runs.list[Number(m[1])];
      const file = run ? safeResolve(run.dir, m[2]!) : null;
      if (!file) throw new HttpError(404, 'not found');
      return sendFile(res, file);
    }
    const p = url.pathname;
    if (p === '/api/status' && method === 'GET') {
      const mem = process.memoryUsage();
      return sendJson(res, 200, { pending: queue.pending, done: queue.done, rss: mem.rss, heapUsed: mem.heapUsed, gpu: engine?.memory() ?? null, modelLoaded: !!model });
    }
    if (p === '/api/model' && method === 'GET') return sendJson(res, 200, { files: modelFiles() });
    if ((m = /^\/api\/model\/([^/]+)$/.exec(raw)) && method === 'GET') {
      let name: string;
      try {
        name = decodeURIComponent(m[1]!);
      } catch {
        throw new HttpError(404, 'not found');
      }
      if (!modelFiles().includes(name)) throw new HttpError(404, 'not found');
      return sendFile(res, path.join(modelDir, name));
    }
    if (p === '/api/runs' && method === 'GET') {
      return sendJson(res, 200, {
        runs: runs.list.map((r) => ({
          index: r.index,
          name: r.name,
          layers: r.layers,
          eval: fs.existsSync(path.join(r.dir, 'eval.json')),
          steering: fs.existsSync(path.join(r.dir, 'steering.json')),
          report: fs.existsSync(path.join(r.dir, 'report.html')),
          sae: r.layers.filter((l) => fs.existsSync(runPaths(r.dir, l).sae)),
        })),
      });
    }
    if (!(m = /^\/api\/runs\/([^/]+)\/(.+)$/.exec(p))) throw new HttpError(404, 'not found');
    const run = runs.run(m[1]!);
    const rest = m[2]!.split('/');
    const q = url.searchParams;
    const [what, a, b] = rest;
    if (method === 'POST' && rest.length === 1 && what === 'explain') return doExplain(req, res, run, q);
    if (method === 'POST' && rest.length === 1 && what === 'steer') return doSteer(req, res, run, q);
    if (method !== 'GET') throw new HttpError(405, `${method} ${p}: not allowed`);
    if (what === 'features' && rest.length === 2) return sendJson(res, 200, runs.featuresFile(run, runs.layer(run, a)));
    if (what === 'feature' && rest.length === 3) {
      if (!/^\d+$/.test(b!)) throw new HttpError(404, `feature ${b}: not a feature id`);
      return sendJson(res, 200, featurePage(run, runs.layer(run, a), Number(b)));
    }
    if (what === 'clips' && rest.length === 1) {
      const mf = runs.manifest(run);
      return sendJson(res, 200, { prompt: mf.prompt ?? null, clips: mf.clips.map((c, i) => ({ clip: i, id: c.id, labels: c.labels, duration: c.duration, split: c.split, caption: c.caption })) });
    }
    if (what === 'clip' && rest.length === 2) {
      if (!/^\d+$/.test(a!)) throw new HttpError(404, 'not found');
      return sendFile(res, runs.clipFile(run, Number(a)));
    }
    if (what === 'quality' && rest.length === 2) {
      const layer = runs.layer(run, a);
      const train = runs.optionalJson(run, path.basename(runPaths(run.dir, layer).saeTrain)) as { quality?: unknown } | null;
      const ev = runs.optionalJson(run, 'eval.json') as { layer?: number; quality?: unknown } | null;
      const quality = train?.quality ?? (ev?.layer === layer ? ev?.quality : null) ?? null;
      if (!quality) throw new HttpError(404, `no SAE quality for layer ${layer} in run ${run.name}`);
      return sendJson(res, 200, quality);
    }
    if ((what === 'eval' || what === 'steering') && rest.length === 1) {
      const v = runs.optionalJson(run, `${what}.json`);
      if (v === null) throw new HttpError(404, `${what}.json: not in run ${run.name}`);
      return sendJson(res, 200, v);
    }
    throw new HttpError(404, 'not found');
  }

  const server = http.createServer((req, res) => {
    route(req, res).catch((e) => {
      try {
        sendError(res, e, log);
      } catch {
        res.destroy();
      }
    });
  });
  server.on('clientError', (_e, socket) => socket.destroy());
  const port = o.port ?? 8080;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new ArdError(`serve: cannot listen on ${host}:${port} (${e.code ?? e.message})`)));
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shown}:${addr.port}/`,
    host: addr.address,
    port: addr.port,
    queue,
    runs,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await queue.run(async () => {
        for (const s of saes.values()) s.dispose();
        saes.clear();
        model?.dispose();
        model = null;
        if (ownEngine) engine?.destroy();
      });
    },
  };
}

/** A function saying whether the client has gone (the response closed before it ended). */
function watchClose(res: http.ServerResponse): () => boolean {
  let gone = false;
  res.on('close', () => {
    if (!res.writableFinished) gone = true;
  });
  return () => gone || res.destroyed;
}
