// Buffer pool. Tensor storage is rounded up to a size class and recycled: allocation on Dawn is
// slow, and training loops allocate the same sizes every step. `liveBytes` counts what tensors
// hold right now; tests assert that it does not grow across a training loop.

const STORAGE_USAGE = 0x80 /*STORAGE*/ | 0x04 /*COPY_SRC*/ | 0x08 /*COPY_DST*/;

export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 16) * 16);
  if (b <= 1 << 20) return 2 ** Math.ceil(Math.log2(b));
  // above 1 MiB: multiples of 1/8 of the next power of two (≤ 12.5 % slack)
  const p = 2 ** Math.ceil(Math.log2(b));
  const step = p / 8;
  return Math.ceil(b / step) * step;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  liveBytes = 0;
  liveBuffers = 0;
  pooledBytes = 0;
  peakLiveBytes = 0;
  /** Idle bytes kept for reuse before buffers are destroyed. */
  maxPooledBytes = 1 << 30;
  /**
   * Buffers over the idle cap, waiting to be destroyed: commands already recorded in the open
   * batch may still use them, so the engine destroys them only after that batch is submitted.
   */
  readonly evicted: GPUBuffer[] = [];

  constructor(private device: GPUDevice) {}

  acquire(bytes: number, label?: string): GPUBuffer {
    const size = sizeClass(bytes);
    const list = this.free.get(size);
    let buf = list?.pop();
    if (buf) {
      this.pooledBytes -= size;
    } else {
      buf = this.device.createBuffer({ size, usage: STORAGE_USAGE, label });
    }
    this.liveBytes += size;
    this.liveBuffers++;
    if (this.liveBytes > this.peakLiveBytes) this.peakLiveBytes = this.liveBytes;
    return buf;
  }

  release(buf: GPUBuffer): void {
    const size = buf.size;
    this.liveBytes -= size;
    this.liveBuffers--;
    if (this.pooledBytes + size > this.maxPooledBytes) {
      this.evicted.push(buf);
      return;
    }
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
    this.pooledBytes += size;
  }

  destroyEvicted(): void {
    for (const b of this.evicted.splice(0)) b.destroy();
  }

  /** Destroy every idle buffer (live ones are untouched). Only call with no batch open. */
  trim(): void {
    this.destroyEvicted();
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.pooledBytes = 0;
  }
}
