// A matrix stored as row blocks, each its own buffer: how a weight larger than one storage-buffer
// binding (maxStorageBufferBindingSize: 128 MiB on lavapipe, 1–4 GiB on GPUs) is kept on the device.
// Rows are a weight's output features ([out, in] as in nn.Linear) or an embedding table's tokens, so
// `linear` writes each block's slice of the output columns and `embedding` gathers each token from
// the one block that holds it: no copy of the whole matrix is ever made.
import { ArdError } from '../util/errors.js';
import { DTYPE_BYTES, DType, Tensor, shapeStr } from './tensor.js';

export class RowBlocks {
  /** First row of each block, then the total row count (starts.length = blocks.length + 1). */
  readonly starts: readonly number[];

  /** Blocks of shape [rows_i, ...rest] with the same rest and dtype (rest: one dim for a matrix, more for a convolution's kernel). */
  constructor(readonly blocks: readonly Tensor[]) {
    if (blocks.length === 0) throw new ArdError('RowBlocks: no blocks');
    const first = blocks[0]!;
    const rest = first.shape.slice(1);
    const starts = [0];
    for (const b of blocks) {
      if (b.rank < 2 || b.rank !== first.rank || b.shape.slice(1).some((d, i) => d !== rest[i]) || b.dtype !== first.dtype) {
        throw new ArdError(`RowBlocks: block ${shapeStr(b.shape)} ${b.dtype} does not match [*, ${rest.join(', ')}] ${first.dtype}`);
      }
      starts.push(starts[starts.length - 1]! + b.shape[0]!);
    }
    this.starts = starts;
  }

  get shape(): number[] {
    return [this.starts[this.blocks.length]!, ...this.blocks[0]!.shape.slice(1)];
  }

  get dtype(): DType {
    return this.blocks[0]!.dtype;
  }

  dispose(): void {
    for (const b of this.blocks) b.dispose();
  }
}

/** A weight as the model's ops take it: one tensor, or row blocks when it exceeds a binding. */
export type Weight = Tensor | RowBlocks;

/**
 * Row ranges [start, end) splitting a [rows, cols] matrix of `dtype` into as few blocks as keep each
 * within `maxBytes`, rows spread evenly (block sizes differ by at most one row). One block when it fits.
 */
export function rowBlockRanges(rows: number, cols: number, dtype: DType, maxBytes: number): [number, number][] {
  const rowBytes = cols * DTYPE_BYTES[dtype];
  const perBlock = Math.floor(maxBytes / rowBytes);
  if (perBlock < 1) throw new ArdError(`a row of ${cols} ${dtype} values (${rowBytes} bytes) exceeds one storage binding (${maxBytes} bytes)`);
  const n = Math.max(1, Math.ceil(rows / perBlock));
  const ranges: [number, number][] = [];
  for (let i = 0; i < n; i++) ranges.push([Math.floor((i * rows) / n), Math.floor(((i + 1) * rows) / n)]);
  return ranges;
}
