// The engine: one GPUDevice, its kernel registry, buffer pool and the command batch being recorded.
// Ops call `dispatch`, which appends to one open compute pass; the batch is submitted when it gets
// long, when data goes to or from the host, or on `flush()`. Errors raised by Dawn while a batch is
// recorded or compiled are collected and thrown at the next sync point (read, sync), naming the
// kernels of that batch, so a bad dispatch never turns into a hang or a silent wrong result.
import { ArdError } from '../util/errors.js';
import { AdapterOptions, AdapterSummary, deviceFacts, requestAdapter, requestDevice, summarizeAdapter, summarizeDevice } from './device.js';
import { buildProfile, type DeviceProfile, type ProfileKind } from './profile.js';
import { BufferPool } from './pool.js';
import { KernelRegistry, KernelSpec, kernelLabel } from './registry.js';

export interface EngineOptions extends AdapterOptions {
  /** Use this device (the caller keeps ownership: the engine never destroys it). */
  device?: GPUDevice;
  /** Force the device profile's kind (else ARDGPU_PROFILE, else what the adapter is). */
  profileKind?: ProfileKind;
}

export interface Dispatch {
  kernel: KernelSpec;
  /** Uniform parameter block bound at binding 0 (≤ 256 bytes), if the kernel has one. */
  params?: ArrayBuffer;
  /** Storage buffers, bound from binding 1 (or 0 without params) in this order. */
  buffers: GPUBuffer[];
  workgroups: [number, number?, number?];
}

export interface KernelTiming {
  kernel: string;
  calls: number;
  totalMs: number;
}

const PARAM_SLOT = 256;
const ARENA_SLOTS = 512;
const MAX_BATCH = 256;
const MAP_READ = 0x0001;
const COPY_DST = 0x0008;
const UNIFORM = 0x0040;
const QUERY_RESOLVE = 0x0200;
const COPY_SRC = 0x0004;

export class Engine {
  readonly registry: KernelRegistry;
  readonly pool: BufferPool;
  readonly f16: boolean;
  readonly hasTimestamps: boolean;
  /** Every device-dependent kernel choice (gpu/profile.ts). */
  readonly profile: DeviceProfile;
  /** Per-kernel GPU timing on (timestamp queries; see takeTimings). */
  timing: boolean;
  /** Autograd recording switch (see tensor/autograd.ts). */
  gradEnabled = true;

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private batchKernels: string[] = [];
  private arena: GPUBuffer;
  private arenaData = new Uint8Array(PARAM_SLOT * ARENA_SLOTS);
  private arenaUsed = 0;
  private errors: Promise<void>[] = [];
  private lostReason: string | null = null;
  private destroyed = false;
  private querySet: GPUQuerySet | null = null;
  private queryKernels: string[] = [];
  private pendingTimings: Promise<void>[] = [];
  private timings = new Map<string, KernelTiming>();
  dispatchCount = 0;
  submitCount = 0;

  private constructor(
    readonly device: GPUDevice,
    readonly adapter: AdapterSummary,
    private readonly ownsDevice: boolean,
    opts: EngineOptions,
  ) {
    this.f16 = device.features.has('shader-f16');
    this.hasTimestamps = device.features.has('timestamp-query');
    this.timing = Boolean(opts.timing) && this.hasTimestamps;
    // from the device, not the adapter: its features are what was granted, its adapterInfo the same facts
    this.profile = buildProfile(deviceFacts(device), { kind: opts.profileKind });
    this.registry = new KernelRegistry(device, this.f16);
    this.pool = new BufferPool(device);
    this.arena = device.createBuffer({ size: PARAM_SLOT * ARENA_SLOTS, usage: UNIFORM | COPY_DST, label: 'ardgpu params' });
    device.lost.then((info) => {
      if (!this.destroyed) this.lostReason = `${info.reason ?? 'unknown'}: ${info.message}`;
    });
    device.onuncapturederror = (ev: any) => {
      const msg = String(ev?.error?.message ?? ev);
      this.errors.push(Promise.reject(new ArdError(`GPU error (kernels: ${this.describeBatch()}): ${firstLines(msg)}`)));
    };
  }

  static async create(opts: EngineOptions = {}): Promise<Engine> {
    if (opts.device) return new Engine(opts.device, summarizeDevice(opts.device), false, opts);
    const adapter = await requestAdapter(opts);
    const device = await requestDevice(adapter);
    return new Engine(device, summarizeAdapter(adapter), true, opts);
  }

  /** Run `fn` without recording autograd nodes. */
  noGradScope<T>(fn: () => T): T {
    const prev = this.gradEnabled;
    this.gradEnabled = false;
    try {
      return fn();
    } finally {
      this.gradEnabled = prev;
    }
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  private checkAlive(what: string): void {
    if (this.destroyed) throw new ArdError(`engine already destroyed (while ${what})`);
    if (this.lostReason) throw new ArdError(`GPU device lost (${this.lostReason}) while ${what}`);
  }

  private describeBatch(): string {
    const uniq = [...new Set(this.batchKernels)];
    return uniq.length ? uniq.slice(0, 8).join(', ') + (uniq.length > 8 ? ', …' : '') : 'none';
  }

  /** Allocate a storage buffer from the pool (contents undefined). */
  alloc(bytes: number, label?: string): GPUBuffer {
    this.checkAlive('allocating memory');
    return this.pool.acquire(bytes, label);
  }

  free(buf: GPUBuffer): void {
    if (this.destroyed) return;
    this.pool.release(buf);
    // evicted buffers may be used by the open batch: they go once it is submitted (flush)
    if (!this.encoder) this.pool.destroyEvicted();
  }

  dispatch(d: Dispatch): void {
    const label = kernelLabel(d.kernel);
    this.checkAlive(`running kernel ${label}`);
    const [x, y = 1, z = 1] = d.workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const maxWg = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg || z > maxWg) {
      throw new ArdError(`kernel ${label}: ${x}×${y}×${z} workgroups exceed the device limit ${maxWg} per dimension`);
    }
    const pipeline = this.registry.pipeline(d.kernel);
    if (!this.encoder) this.beginBatch();
    const entries: GPUBindGroupEntry[] = [];
    let binding = 0;
    if (d.params) {
      if (d.params.byteLength > PARAM_SLOT) throw new ArdError(`kernel ${label}: parameter block over ${PARAM_SLOT} bytes`);
      if (this.arenaUsed === ARENA_SLOTS) {
        this.flush();
        this.beginBatch();
      }
      const offset = this.arenaUsed * PARAM_SLOT;
      this.arenaData.set(new Uint8Array(d.params), offset);
      this.arenaUsed++;
      entries.push({ binding: binding++, resource: { buffer: this.arena, offset, size: PARAM_SLOT } });
    }
    for (const buffer of d.buffers) entries.push({ binding: binding++, resource: { buffer } });
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label });
    this.batchKernels.push(label);
    if (this.timing) {
      const i = this.queryKernels.length;
      this.queryKernels.push(label);
      const pass = this.encoder!.beginComputePass({
        label,
        timestampWrites: { querySet: this.querySet!, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
      });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(x, y, z);
      pass.end();
    } else {
      this.pass!.setPipeline(pipeline);
      this.pass!.setBindGroup(0, bindGroup);
      this.pass!.dispatchWorkgroups(x, y, z);
    }
    this.dispatchCount++;
    if (this.batchKernels.length >= MAX_BATCH) this.flush();
  }

  /** Record a buffer-to-buffer copy (offsets and size multiples of 4). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.checkAlive('copying a buffer');
    if (!this.encoder) this.beginBatch();
    this.pass?.end();
    this.pass = null;
    this.encoder!.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    if (!this.timing) this.pass = this.encoder!.beginComputePass();
    this.batchKernels.push('copy');
  }

  private beginBatch(): void {
    this.device.pushErrorScope('validation');
    this.device.pushErrorScope('out-of-memory');
    this.encoder = this.device.createCommandEncoder({ label: 'ardgpu batch' });
    if (this.timing) {
      this.querySet ??= this.device.createQuerySet({ type: 'timestamp', count: 2 * MAX_BATCH });
      this.queryKernels = [];
    } else {
      this.pass = this.encoder.beginComputePass();
    }
  }

  /** Submit the recorded batch (no wait). */
  flush(): void {
    if (!this.encoder) return;
    const kernels = this.describeBatch();
    this.pass?.end();
    this.pass = null;
    let timing: { buf: GPUBuffer; labels: string[]; resolve: GPUBuffer } | null = null;
    if (this.timing && this.queryKernels.length) {
      const n = this.queryKernels.length;
      const resolve = this.device.createBuffer({ size: 16 * n, usage: QUERY_RESOLVE | COPY_SRC });
      const read = this.device.createBuffer({ size: 16 * n, usage: MAP_READ | COPY_DST });
      this.encoder.resolveQuerySet(this.querySet!, 0, 2 * n, resolve, 0);
      this.encoder.copyBufferToBuffer(resolve, 0, read, 0, 16 * n);
      timing = { buf: read, labels: this.queryKernels, resolve };
    }
    const cmd = this.encoder.finish();
    this.encoder = null;
    if (this.arenaUsed) this.device.queue.writeBuffer(this.arena, 0, this.arenaData, 0, this.arenaUsed * PARAM_SLOT);
    this.arenaUsed = 0;
    this.device.queue.submit([cmd]);
    timing?.resolve.destroy(); // after submit: freed once the GPU is done with it
    this.pool.destroyEvicted(); // likewise: submitted work may still use them, recorded work no longer exists
    this.submitCount++;
    this.batchKernels = [];
    for (const kind of ['out of memory', 'validation error']) {
      const p = this.device.popErrorScope().then((err) => {
        if (err) throw new ArdError(`GPU ${kind} in batch [${kernels}]: ${firstLines(err.message)}`);
      });
      p.catch(() => {});
      this.errors.push(p);
    }
    if (timing) {
      const { buf, labels } = timing;
      const p = buf.mapAsync(MAP_READ).then(() => {
        const t = new BigUint64Array(buf.getMappedRange());
        labels.forEach((k, i) => {
          const ns = Number(t[2 * i + 1]! - t[2 * i]!);
          const e = this.timings.get(k) ?? { kernel: k, calls: 0, totalMs: 0 };
          e.calls++;
          e.totalMs += ns / 1e6;
          this.timings.set(k, e);
        });
        buf.unmap();
        buf.destroy();
      });
      p.catch(() => {});
      this.pendingTimings.push(p);
    }
  }

  /** Throw any error Dawn reported for work recorded so far. */
  async checkErrors(): Promise<void> {
    const all = [...this.registry.pendingChecks.splice(0), ...this.errors.splice(0)];
    for (const p of all) await p;
  }

  /** Submit everything and wait until the GPU has finished it. */
  async sync(): Promise<void> {
    this.flush();
    this.checkAlive('waiting for the GPU');
    await this.withLossCheck(this.device.queue.onSubmittedWorkDone(), 'waiting for the GPU');
    await this.checkErrors();
  }

  private async withLossCheck<T>(p: Promise<T>, what: string): Promise<T> {
    try {
      return await p;
    } catch (e: any) {
      if (this.lostReason) throw new ArdError(`GPU device lost (${this.lostReason}) while ${what}`);
      throw new ArdError(`GPU operation failed while ${what}: ${firstLines(String(e?.message ?? e))}`);
    }
  }

  /** Upload bytes into a buffer. Flushes first: queued writes must not overtake recorded work. */
  write(buf: GPUBuffer, byteOffset: number, data: ArrayBufferView): void {
    this.checkAlive('uploading data');
    if (this.encoder) this.flush();
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const aligned = bytes.byteLength & 3 ? padTo4(bytes) : bytes;
    this.device.queue.writeBuffer(buf, byteOffset, aligned);
  }

  /** Read bytes back (offset and length are rounded out to multiples of 4 internally). */
  async read(buf: GPUBuffer, byteOffset: number, byteLength: number): Promise<ArrayBuffer> {
    const start = byteOffset & ~3;
    const end = Math.min(buf.size, (byteOffset + byteLength + 3) & ~3);
    const staging = this.device.createBuffer({ size: Math.max(4, end - start), usage: MAP_READ | COPY_DST, label: 'readback' });
    this.copy(buf, start, staging, 0, end - start);
    this.flush();
    try {
      await this.withLossCheck(staging.mapAsync(MAP_READ), 'reading a result back');
      await this.checkErrors();
      const out = staging.getMappedRange().slice(byteOffset - start, byteOffset - start + byteLength);
      staging.unmap();
      return out;
    } finally {
      staging.destroy();
    }
  }

  /** Per-kernel GPU time since the last call (timing mode only). */
  async takeTimings(): Promise<KernelTiming[]> {
    await this.sync();
    await Promise.all(this.pendingTimings.splice(0));
    const out = [...this.timings.values()].sort((a, b) => b.totalMs - a.totalMs);
    this.timings.clear();
    return out;
  }

  memory(): { liveBytes: number; liveBuffers: number; pooledBytes: number; peakLiveBytes: number } {
    const p = this.pool;
    return { liveBytes: p.liveBytes, liveBuffers: p.liveBuffers, pooledBytes: p.pooledBytes, peakLiveBytes: p.peakLiveBytes };
  }

  /** Free every GPU object the engine created; the device too only if the engine created it. */
  destroy(): void {
    if (this.destroyed) return;
    try {
      this.flush();
    } catch {
      /* device may already be lost */
    }
    this.destroyed = true;
    this.pool.trim();
    this.arena.destroy();
    this.querySet?.destroy();
    if (this.ownsDevice) this.device.destroy();
    else this.device.onuncapturederror = null;
  }
}

function firstLines(msg: string): string {
  return msg.split('\n').map((s) => s.trim()).filter(Boolean).slice(0, 4).join(' | ');
}

function padTo4(b: Uint8Array): Uint8Array {
  const out = new Uint8Array((b.byteLength + 3) & ~3);
  out.set(b);
  return out;
}

/** Workgroup grid for `n` workgroups: x ≤ 65535, extra rows in y. Kernels rebuild the linear id. */
export function grid(n: number, maxX = 65535): [number, number] {
  if (n <= maxX) return [Math.max(1, n), 1];
  return [maxX, Math.ceil(n / maxX)];
}

/** Packs a uniform block: u32/i32/f32 scalars in order, with explicit 16-byte alignment helpers. */
export class Params {
  private view = new DataView(new ArrayBuffer(PARAM_SLOT));
  private off = 0;
  u32(...v: number[]): this {
    for (const x of v) {
      this.view.setUint32(this.off, x >>> 0, true);
      this.off += 4;
    }
    return this;
  }
  i32(...v: number[]): this {
    for (const x of v) {
      this.view.setInt32(this.off, x | 0, true);
      this.off += 4;
    }
    return this;
  }
  f32(...v: number[]): this {
    for (const x of v) {
      this.view.setFloat32(this.off, x, true);
      this.off += 4;
    }
    return this;
  }
  /** Pad to the next 16-byte boundary (start of a vec4 / array<vec4<u32>, N> field). */
  align16(): this {
    this.off = (this.off + 15) & ~15;
    return this;
  }
  /** Write `n` u32 values padded with `fill` (for fixed-size array<vec4<u32>, n/4> fields). */
  u32Array(values: readonly number[], n: number, fill = 0): this {
    this.align16();
    for (let i = 0; i < n; i++) this.u32(i < values.length ? values[i]! : fill);
    return this;
  }
  done(): ArrayBuffer {
    return this.view.buffer.slice(0, Math.max(16, (this.off + 15) & ~15)) as ArrayBuffer;
  }
}
