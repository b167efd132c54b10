// The browser build of ardgpu (bundled by web/build-engine.mjs into dist/web/ardgpu-browser.js):
// the engine's own modules on the page's navigator.gpu, with the WGSL kernels inlined and node:fs
// replaced by an in-memory file system holding what the page fetched from `ardgpu serve` (the
// model folder's files and the run's SAE). explainInBrowser runs the same code as the server's
// explain: the clip's residuals at the SAE's layer, then the named features' activations.
import { KERNELS } from 'ardgpu:kernels';
import { vfsPut } from './fs-shim.js';
import { explain } from '../../src/ard/explain.js';
import { clipResiduals } from '../../src/ard/stages.js';
import { decodeAudio } from '../../src/audio/decode.js';
import { requestDevice } from '../../src/gpu/device.js';
import { Engine } from '../../src/gpu/engine.js';
import type { AudioLLM } from '../../src/model/audiollm.js';
import { loadAudioLLM } from '../../src/model/load.js';
import { loadSae } from '../../src/sae/load.js';
import type { Sae } from '../../src/sae/types.js';

// packageRoot() walks up from this file's URL path to a folder holding package.json and kernels/
const here = new URL('.', import.meta.url).pathname.replace(/\/$/, '') || '/';
vfsPut(`${here}/package.json`, '{}');
for (const [name, src] of Object.entries(KERNELS as Record<string, string>)) vfsPut(`${here}/kernels/${name}`, src);

let engine: Engine | null = null;
let adapterName = '';
let model: AudioLLM | null = null;
const saes = new Map<string, Sae>();

async function bytes(url: string): Promise<Uint8Array> {
  const r = await fetch(url);
  if (!r.ok) {
    let msg = `${url}: ${r.status}`;
    try {
      msg = ((await r.json()) as any).error ?? msg;
    } catch {
      /* keep the status */
    }
    throw new Error(msg);
  }
  return new Uint8Array(await r.arrayBuffer());
}

/** The page's WebGPU device as an ardgpu engine, or null when the browser has no WebGPU. */
export async function browserEngine(): Promise<Engine | null> {
  if (engine) return engine;
  const gpu = (globalThis as any).navigator?.gpu as GPU | undefined;
  if (!gpu) return null;
  const adapter = await gpu.requestAdapter();
  if (!adapter) return null;
  const device = await requestDevice(adapter);
  engine = await Engine.create({ device });
  const info: any = (adapter as any).info ?? {};
  adapterName = String(info.description || [info.vendor, info.architecture].filter(Boolean).join(' ') || 'WebGPU');
  return engine;
}

export interface BrowserExplainOptions {
  run: number;
  layer: number;
  audio: Uint8Array;
  name: string;
  threshold?: number;
  onStatus?: (text: string) => void;
}

export async function explainInBrowser(o: BrowserExplainOptions) {
  const e = await browserEngine();
  if (!e) throw new Error('this browser has no WebGPU');
  const say = o.onStatus ?? (() => {});
  if (!model) {
    const list: string[] = ((await (await fetch("/api/model")).json()) as any).files;
    for (const [i, f] of list.entries()) {
      say(`fetching the model (${i + 1}/${list.length}: ${f})…`);
      vfsPut(`/model/${f}`, await bytes(`/api/model/${encodeURIComponent(f)}`));
    }
    say('loading the model onto this browser\'s GPU…');
    model = await loadAudioLLM(e, '/model');
  }
  const key = `${o.run}/${o.layer}`;
  let sae = saes.get(key);
  if (!sae) {
    say('fetching the SAE…');
    const file = `/runs/${o.run}/sae-${o.layer}.safetensors`;
    vfsPut(file, await bytes(file));
    sae = loadSae(e, file);
    saes.set(key, sae);
  }
  const features = ((await (await fetch(`/api/runs/${o.run}/features/${o.layer}`)).json()) as any).features.filter((f: any) => f.name);
  const prompt = ((await (await fetch(`/api/runs/${o.run}/clips`)).json()) as any).prompt ?? undefined;
  say('running on this browser\'s GPU…');
  const samples = (await decodeAudio(o.audio, o.name)).samples;
  const acts = clipResiduals(model, samples, o.layer, prompt);
  try {
    const r = await explain({ engine: e, sae, acts, frameSeconds: model.frameSeconds, features, threshold: o.threshold ?? 0 });
    return { file: o.name, layer: o.layer, where: 'browser', adapter: adapterName, duration: r.duration, frameSeconds: model.frameSeconds, features: r.features, timeline: r.timeline };
  } finally {
    acts.dispose();
  }
}
