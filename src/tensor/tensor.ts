// Tensor: a strided view over a reference-counted GPU buffer. reshape/transpose/permute/slice/
// expand are views when the strides allow it; kernels that need dense input call `contiguous()`.
import { Float16Array } from '@petamoriken/float16';
import type { Engine } from '../gpu/engine.js';
import { ArdError } from '../util/errors.js';
import type { GradNode } from './autograd.js';

export type DType = 'f32' | 'f16' | 'i32' | 'u32';
export type HostArray = Float32Array | Int32Array | Uint32Array | Float16Array;

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, i32: 4, u32: 4 };

/** A GPU buffer shared by a tensor and its views; freed when the last of them is disposed. */
export class Storage {
  refs = 1;
  constructor(readonly engine: Engine, readonly buffer: GPUBuffer, readonly byteLength: number, readonly owned = true) {}
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (--this.refs === 0 && this.owned) this.engine.free(this.buffer);
  }
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function checkShape(shape: readonly number[]): void {
  for (const d of shape) if (!Number.isInteger(d) || d < 0) throw new ArdError(`invalid tensor shape ${shapeStr(shape)}`);
}

let nextId = 1;

/** Open tidy() scopes, innermost last (see scope.ts). */
export const scopeStack: Set<Tensor>[] = [];

export class Tensor {
  readonly id = nextId++;
  readonly strides: readonly number[];
  readonly size: number;
  /** Element offset of this view inside its storage. */
  readonly offset: number;
  requiresGrad = false;
  grad: Tensor | null = null;
  /** How this tensor was computed, when autograd recorded it. */
  node: GradNode | null = null;
  name?: string;
  private disposed = false;

  constructor(
    readonly storage: Storage,
    readonly shape: readonly number[],
    readonly dtype: DType,
    strides?: readonly number[],
    offset = 0,
  ) {
    checkShape(shape);
    this.strides = strides ?? contiguousStrides(shape);
    this.size = numel(shape);
    this.offset = offset;
    scopeStack[scopeStack.length - 1]?.add(this);
  }

  get engine(): Engine {
    return this.storage.engine;
  }
  get buffer(): GPUBuffer {
    this.assertAlive();
    return this.storage.buffer;
  }
  get rank(): number {
    return this.shape.length;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  assertAlive(): void {
    if (this.disposed) throw new ArdError(`tensor #${this.id}${this.name ? ` (${this.name})` : ''} ${shapeStr(this.shape)} used after dispose`);
  }

  /** Dense row-major with no offset: what most kernels take as-is. */
  get isContiguous(): boolean {
    return this.offset === 0 && this.isContiguousIgnoringOffset();
  }

  /** Dense row-major strides (the offset may be anything). */
  isContiguousIgnoringOffset(): boolean {
    const c = contiguousStrides(this.shape);
    for (let i = 0; i < this.rank; i++) if (this.shape[i] !== 1 && this.strides[i] !== c[i]) return false;
    return true;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.storage.release();
    this.node = null;
    for (const s of scopeStack) s.delete(this);
  }

  /** A view sharing this tensor's storage. */
  view(shape: readonly number[], strides: readonly number[], offset = this.offset): Tensor {
    this.assertAlive();
    return new Tensor(this.storage.retain(), shape, this.dtype, strides, offset);
  }

  /** Download as a typed array (row-major, views materialised on the GPU first). */
  async read(): Promise<HostArray> {
    this.assertAlive();
    const engine = this.engine;
    if (this.size === 0) return emptyHost(this.dtype);
    const { contiguous } = await import('./ops/layout.js');
    const dense = this.isContiguous ? this : engine.noGradScope(() => contiguous(this));
    try {
      const bpe = DTYPE_BYTES[this.dtype];
      const bytes = await engine.read(dense.buffer, 0, this.size * bpe);
      return hostView(this.dtype, bytes);
    } finally {
      if (dense !== this) dense.dispose();
    }
  }

  /** Download as a Float32Array regardless of dtype. */
  async toFloat32(): Promise<Float32Array> {
    const h = await this.read();
    return h instanceof Float32Array ? h : Float32Array.from(h as ArrayLike<number>);
  }

  async item(): Promise<number> {
    if (this.size !== 1) throw new ArdError(`item() needs a single-element tensor, got ${shapeStr(this.shape)}`);
    return (await this.read())[0]!;
  }

  toString(): string {
    return `Tensor#${this.id}(${this.dtype}${shapeStr(this.shape)}${this.requiresGrad ? ', grad' : ''})`;
  }
}

function emptyHost(dtype: DType): HostArray {
  return dtype === 'f16' ? new Float16Array(0) : dtype === 'i32' ? new Int32Array(0) : dtype === 'u32' ? new Uint32Array(0) : new Float32Array(0);
}

function hostView(dtype: DType, bytes: ArrayBuffer): HostArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(bytes);
    case 'f16':
      return new Float16Array(bytes);
    case 'i32':
      return new Int32Array(bytes);
    case 'u32':
      return new Uint32Array(bytes);
  }
}

function toHost(data: ArrayLike<number> | HostArray, dtype: DType): HostArray {
  switch (dtype) {
    case 'f32':
      return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
    case 'f16':
      return data instanceof Float16Array ? data : Float16Array.from(data as ArrayLike<number>);
    case 'i32':
      return data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>);
    case 'u32':
      return data instanceof Uint32Array ? data : Uint32Array.from(data as ArrayLike<number>);
  }
}

export function checkDtypeSupported(engine: Engine, dtype: DType): void {
  if (dtype === 'f16' && !engine.f16) throw new ArdError('f16 tensors need the shader-f16 feature, which this adapter lacks');
}

/** An uninitialised tensor. */
export function empty(engine: Engine, shape: readonly number[], dtype: DType = 'f32'): Tensor {
  checkShape(shape);
  checkDtypeSupported(engine, dtype);
  const bytes = Math.max(4, numel(shape) * DTYPE_BYTES[dtype]);
  const buf = engine.alloc(bytes);
  return new Tensor(new Storage(engine, buf, bytes), shape, dtype);
}

/** Upload host data as a new tensor. */
export function tensor(engine: Engine, data: ArrayLike<number> | HostArray, shape?: readonly number[], dtype: DType = 'f32'): Tensor {
  const shp = shape ?? [data.length];
  if (numel(shp) !== data.length) throw new ArdError(`tensor(): ${data.length} values do not fill shape ${shapeStr(shp)}`);
  const host = toHost(data, dtype);
  const t = empty(engine, shp, dtype);
  if (host.length) engine.write(t.buffer, 0, host as ArrayBufferView);
  return t;
}

/** Wrap a caller's GPUBuffer (not freed by ardgpu) as a tensor. */
export function fromBuffer(engine: Engine, buffer: GPUBuffer, shape: readonly number[], dtype: DType = 'f32'): Tensor {
  const bytes = numel(shape) * DTYPE_BYTES[dtype];
  if (bytes > buffer.size) throw new ArdError(`fromBuffer(): buffer of ${buffer.size} bytes is smaller than ${dtype}${shapeStr(shape)}`);
  return new Tensor(new Storage(engine, buffer, buffer.size, false), shape, dtype);
}
