// ardgpu's public API. See README.md ("Library") for an example that embeds ardgpu in a program
// that already owns a GPUDevice.
export { Engine } from './gpu/engine.js';
export type { EngineOptions, Dispatch, KernelTiming } from './gpu/engine.js';
export { requestAdapter, requestDevice, summarizeAdapter } from './gpu/device.js';
export type { AdapterSummary, AdapterOptions } from './gpu/device.js';
export * from './tensor/index.js';
export { ArdError, UsageError } from './util/errors.js';
