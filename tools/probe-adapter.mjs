// Prints the WebGPU adapter Dawn gives us; exits 1 if there is none or it is Dawn's null backend
// (which accepts every command and computes nothing).
import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const opts = [];
if (process.env.ARDGPU_BACKEND) opts.push(`backend=${process.env.ARDGPU_BACKEND}`);
if (process.env.ARDGPU_ADAPTER) opts.push(`adapter=${process.env.ARDGPU_ADAPTER}`);
const gpu = create(opts);
const adapter = await gpu.requestAdapter();
if (!adapter) { console.log('no adapter'); process.exit(1); }
const info = adapter.info ?? {};
const desc = `${info.description || info.device || 'unknown'} (${info.vendor || '?'}, ${info.architecture || '?'}, backend ${info.backendType ?? '?'})`;
if (/null/i.test(String(info.backendType ?? '')) || /null backend/i.test(desc)) { console.log(`only the null backend: ${desc}`); process.exit(1); }
console.log(desc);
process.exit(0);
