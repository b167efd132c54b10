// Adapter and device acquisition. Dawn is loaded lazily so that pure-CPU parts of the library
// (tokenizer, safetensors, corpus) work without a Vulkan driver.
import { ArdError } from '../util/errors.js';

export interface AdapterOptions {
  /** Dawn backend: vulkan, metal, d3d12, opengl, … (env ARDGPU_BACKEND). `null` is refused. */
  backend?: string;
  /** Substring of the adapter's description to pick among several (env ARDGPU_ADAPTER). */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
}

export interface AdapterSummary {
  name: string;
  vendor: string;
  architecture: string;
  backend: string;
  isSoftware: boolean;
  features: string[];
  limits: Record<string, number>;
  f16: boolean;
}

let gpuInstance: GPU | null = null;
let gpuInstanceKey = '';

async function getGPU(opts: AdapterOptions): Promise<GPU> {
  const backend = opts.backend ?? process.env.ARDGPU_BACKEND;
  const adapterName = opts.adapter ?? process.env.ARDGPU_ADAPTER;
  if (backend && /^null$/i.test(backend)) {
    throw new ArdError('ARDGPU_BACKEND=null: Dawn\'s null backend computes nothing; choose a real backend (vulkan, metal, d3d12)');
  }
  const flags: string[] = [];
  if (backend) flags.push(`backend=${backend}`);
  if (adapterName) flags.push(`adapter=${adapterName}`);
  const key = flags.join('|');
  if (gpuInstance && key === gpuInstanceKey) return gpuInstance;
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  let mod: any;
  try {
    mod = await import('webgpu');
  } catch (e: any) {
    throw new ArdError(`webgpu package cannot be loaded (${e.message.split('\n')[0]}): run \`npm run setup\``);
  }
  Object.assign(globalThis, mod.globals);
  gpuInstance = mod.create(flags) as GPU;
  gpuInstanceKey = key;
  return gpuInstance;
}

const LIMITS_OF_INTEREST = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'minStorageBufferOffsetAlignment',
  'minUniformBufferOffsetAlignment',
] as const;

export function summarizeAdapter(adapter: GPUAdapter): AdapterSummary {
  const info: any = (adapter as any).info ?? {};
  const name = String(info.description || info.device || 'unknown adapter');
  const limits: Record<string, number> = {};
  for (const k of LIMITS_OF_INTEREST) limits[k] = Number((adapter.limits as any)[k]);
  const features = [...adapter.features].map(String).sort();
  return {
    name,
    vendor: String(info.vendor ?? ''),
    architecture: String(info.architecture ?? ''),
    backend: String(info.backendType ?? guessBackend(name)),
    isSoftware: /llvmpipe|lavapipe|swiftshader|software/i.test(name) || info.type === 'cpu',
    features,
    limits,
    f16: adapter.features.has('shader-f16'),
  };
}

function guessBackend(name: string): string {
  if (/mesa|vulkan|llvmpipe|nvidia|radv/i.test(name)) return 'vulkan';
  return 'unknown';
}

function isNullAdapter(adapter: GPUAdapter): boolean {
  const info: any = (adapter as any).info ?? {};
  return /null/i.test(String(info.backendType ?? '')) || /null backend/i.test(String(info.description ?? ''));
}

export async function requestAdapter(opts: AdapterOptions = {}): Promise<GPUAdapter> {
  const gpu = await getGPU(opts);
  // On Vulkan, Dawn's native code prints two "artificially reduced" notices straight to fd 2 here
  // (no toggle or option silences them); the CLI filters them out in bin/ardgpu.mjs.
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new ArdError('no WebGPU adapter found: run `npm run setup` (installs Mesa lavapipe on Debian/Ubuntu) or install a Vulkan driver');
  }
  if (isNullAdapter(adapter)) throw new ArdError('only Dawn\'s null adapter is available: it computes nothing; install a Vulkan driver (`npm run setup`)');
  return adapter;
}

/** A device with the adapter's largest buffer limits and every feature ardgpu can use. */
export async function requestDevice(adapter: GPUAdapter): Promise<GPUDevice> {
  const wanted: GPUFeatureName[] = ['shader-f16', 'timestamp-query', 'subgroups' as GPUFeatureName];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const a = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
    maxBufferSize: a.maxBufferSize,
    maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: a.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: a.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: a.maxComputeWorkgroupSizeY,
    maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
  };
  return adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'ardgpu' });
}
