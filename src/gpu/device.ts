// Adapter and device acquisition. Dawn is loaded lazily so that pure-CPU parts of the library
// (tokenizer, safetensors, corpus) work without a Vulkan driver.
import { ArdError } from '../util/errors.js';
import { type DeviceFacts, isSoftwareAdapter } from './profile.js';

export interface AdapterOptions {
  /** Dawn backend: vulkan, metal, d3d12, opengl, … (env ARDGPU_BACKEND). `null` is refused. */
  backend?: string;
  /** Substring of the adapter's description to pick among several (env ARDGPU_ADAPTER). */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
  /**
   * Dawn's `allow_unsafe_apis` (env ARDGPU_UNSAFE_APIS=1): exposes experimental features such as
   * subgroup matrices (`chromium-experimental-subgroup-matrix`). Off unless asked for.
   */
  unsafeApis?: boolean;
  /**
   * Record per-kernel GPU time with timestamp queries (one compute pass per dispatch); Dawn's
   * timestamp quantisation is turned off for it.
   */
  timing?: boolean;
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

// one Dawn instance per distinct set of flags (toggles are per instance in Dawn's node binding)
const gpuInstances = new Map<string, GPU>();

/** ARDGPU_UNSAFE_APIS: 1/true on, 0/false/empty off, anything else an error. */
export function unsafeApisFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = (env.ARDGPU_UNSAFE_APIS ?? '').trim().toLowerCase();
  if (v === '' || v === '0' || v === 'false') return false;
  if (v === '1' || v === 'true') return true;
  throw new ArdError(`ARDGPU_UNSAFE_APIS=${env.ARDGPU_UNSAFE_APIS}: expected 1 or 0`);
}

/**
 * The flags handed to the `webgpu` package's create(): backend / adapter choice and Dawn toggles.
 * - vulkan_enable_f16_on_nvidia, always: Dawn hides NVIDIA's `shader-f16` on Vulkan without it
 *   (the toggle does nothing on other vendors);
 * - allow_unsafe_apis only when asked for (subgroup matrices are experimental);
 * - timestamp_quantization off while timing kernels.
 */
export function dawnFlags(opts: AdapterOptions = {}, env: NodeJS.ProcessEnv = process.env): string[] {
  const backend = opts.backend ?? env.ARDGPU_BACKEND;
  const adapterName = opts.adapter ?? env.ARDGPU_ADAPTER;
  if (backend && /^null$/i.test(backend)) {
    throw new ArdError('ARDGPU_BACKEND=null: Dawn\'s null backend computes nothing; choose a real backend (vulkan, metal, d3d12)');
  }
  const flags: string[] = [];
  if (backend) flags.push(`backend=${backend}`);
  if (adapterName) flags.push(`adapter=${adapterName}`);
  // one flag per key: Dawn's node binding keeps the last value given for a key
  const enable = ['vulkan_enable_f16_on_nvidia'];
  if (opts.unsafeApis ?? unsafeApisFromEnv(env)) enable.push('allow_unsafe_apis');
  flags.push(`enable-dawn-features=${enable.join(',')}`);
  if (opts.timing) flags.push('disable-dawn-features=timestamp_quantization');
  return flags;
}

async function getGPU(opts: AdapterOptions): Promise<GPU> {
  const flags = dawnFlags(opts);
  const key = flags.join('|');
  const cached = gpuInstances.get(key);
  if (cached) return cached;
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  let mod: any;
  try {
    mod = await import('webgpu');
  } catch (e: any) {
    throw new ArdError(`webgpu package cannot be loaded (${e.message.split('\n')[0]}): run \`npm run setup\``);
  }
  Object.assign(globalThis, mod.globals);
  const gpu = mod.create(flags) as GPU;
  gpuInstances.set(key, gpu);
  return gpu;
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
  return summarize({ info: (adapter as any).info ?? {}, features: adapter.features as Iterable<string>, limits: adapter.limits });
}

/** The same summary for a device a caller made (its adapterInfo, and the features and limits it got). */
export function summarizeDevice(device: GPUDevice): AdapterSummary {
  return summarize({ info: (device as any).adapterInfo ?? {}, features: device.features as Iterable<string>, limits: device.limits });
}

/** The facts a profile is built from, for a device (see gpu/profile.ts). */
export function deviceFacts(device: GPUDevice): DeviceFacts {
  return { info: (device as any).adapterInfo ?? {}, features: device.features as Iterable<string>, limits: device.limits };
}

function summarize(facts: DeviceFacts): AdapterSummary {
  const info: any = facts.info;
  const name = String(info.description || info.device || 'unknown adapter');
  const limits: Record<string, number> = {};
  for (const k of LIMITS_OF_INTEREST) limits[k] = Number((facts.limits as any)[k]);
  const features = [...facts.features].map(String).sort();
  return {
    name,
    vendor: String(info.vendor ?? ''),
    architecture: String(info.architecture ?? ''),
    backend: String(info.backendType ?? guessBackend(name)),
    isSoftware: isSoftwareAdapter(info),
    features,
    limits,
    f16: features.includes('shader-f16'),
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
  // subgroup matrices appear only with allow_unsafe_apis (dawnFlags), so asking for them is safe
  const wanted = ['shader-f16', 'timestamp-query', 'subgroups', 'chromium-experimental-subgroup-matrix'] as GPUFeatureName[];
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
