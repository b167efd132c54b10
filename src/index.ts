// ardgpu's public API. See README.md ("Library") for an example that embeds ardgpu in a program
// that already owns a GPUDevice.
export { Engine } from './gpu/engine.js';
export type { EngineOptions, Dispatch, KernelTiming } from './gpu/engine.js';
export { requestAdapter, requestDevice, summarizeAdapter } from './gpu/device.js';
export type { AdapterSummary, AdapterOptions } from './gpu/device.js';
export * from './tensor/index.js';
export { ArdError, UsageError } from './util/errors.js';
export { loadAudioLLM } from './model/load.js';
export type { LoadOptions } from './model/load.js';
export { AudioLLM } from './model/audiollm.js';
export { ask, askDetailed, buildChatPrompt, chatPromptText } from './model/chat.js';
export { generate } from './model/generate.js';
export type { GenerateOptions, GenerateResult } from './model/generate.js';
export type { HookFn, HookContext, HookSpec, HookHandle } from './model/hooks.js';
export { Tokenizer, loadTokenizer } from './model/tokenizer.js';
export { openSafetensors, openCheckpoint, writeSafetensors } from './model/safetensors.js';
export { loadQwen2AudioConfig } from './model/config.js';
export { readWav, decodeWav, writeWav, listWavs } from './audio/wav.js';
export { resample } from './audio/resample.js';
export { logMel } from './audio/logmel.js';
export { makeCorpus, readManifest } from './corpus/index.js';
export { capture } from './ard/capture.js';
export type { CaptureOptions, CaptureResult } from './ard/capture.js';
