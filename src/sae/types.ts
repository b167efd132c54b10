// What the AR&D stages need from a sparse autoencoder, whatever its architecture: retrieval and
// explain only encode (SparseEncoder); steering also needs a latent's decoder direction and the
// input scale. A new architecture is a class implementing Sae plus one line in load.ts's registry.
import type { Engine } from '../gpu/engine.js';
import type { Tensor } from '../tensor/tensor.js';

/** Sparse codes of a batch of rows. */
export interface SparseEncoder {
  /** Number of latents. */
  readonly m: number;
  /**
   * x [rows, d] f32 in the caller's units → values [rows, k] (z; ≤ 0 means not firing) and the
   * latents they belong to, indices [rows, k] (i32).
   */
  encode(x: Tensor): { values: Tensor; indices: Tensor };
}

export interface Sae extends SparseEncoder {
  readonly engine: Engine;
  /** Width of the residual stream it reads. */
  readonly d: number;
  /** Inputs are multiplied by this before encoding (codes and decoder rows live in those units). */
  readonly inputScale: number;
  /** Decoder direction of latent i as f32 [1, d], in the SAE's (scaled) units; the caller disposes it. */
  decoderRow(i: number): Tensor;
  dispose(): void;
}
