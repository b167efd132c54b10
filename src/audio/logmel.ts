// Whisper log-mel features on the GPU (kernels/logmel.wgsl + the matmul and reduce ops).
//
//   samples ─(host: pad/truncate to the model window)─ reflect-padded Hann frames [T, n_fft]
//   → DFT as one matmul with a precomputed (cos | sin) matrix → |X|² · mel filterbank → log10
//   → global max (reduce op) → max(x, max − 8), (x + 4)/4.
// A direct DFT per frame is simple but gather-bound on CPU backends; the matmul is the op the
// engine tunes hardest (about 3× faster on lavapipe than our first, per-frame kernel).
//
// Conventions are those of Hugging Face's WhisperFeatureExtractor (see tools/reference/README.md):
// reflect padding of n_fft/2 at both ends, periodic Hann, the last STFT frame dropped.
import { grid, Params } from '../gpu/engine.js';
import type { Engine } from '../gpu/engine.js';
import { keep, tidy } from '../tensor/scope.js';
import { Tensor, empty, tensor } from '../tensor/tensor.js';
import { max } from '../tensor/ops/reduce.js';
import { reshape } from '../tensor/ops/layout.js';
import { matmul } from '../tensor/ops/matmul.js';
import { ArdError } from '../util/errors.js';
import { HOP_LENGTH, N_FFT, SAMPLE_RATE, melFilters } from './mel-filters.js';

/** The WhisperFeatureExtractor settings a model's preprocessor_config.json gives. */
export interface FrontendConfig {
  /** Mel bins (`feature_size`): 80 or 128. */
  nMels: number;
  /** Window length in samples (`n_samples`, = chunk_length · sampling_rate): 480000 for Qwen2-Audio. */
  nSamples: number;
  hopLength: number;
  nFft: number;
  samplingRate: number;
}

/** Qwen2-Audio's front end (used when a model directory has no preprocessor_config.json). */
export const QWEN2_AUDIO_FRONTEND: Readonly<FrontendConfig> = {
  nMels: 128,
  nSamples: 30 * SAMPLE_RATE,
  hopLength: HOP_LENGTH,
  nFft: N_FFT,
  samplingRate: SAMPLE_RATE,
};

export interface LogMelOptions {
  nMels?: number;
  hopLength?: number;
  nFft?: number;
}

interface Tables {
  hann: Tensor;
  /** [nFft, 2·pb]: cos(2π·jk/nFft) in columns k < nBins, sin in columns pb + k (zeros between). */
  dft: Tensor;
  pb: number;
  fb: Tensor;
  rng: Tensor;
}

// Per engine and (nMels, nFft): window, DFT matrix, filters and their nonzero ranges.
const tableCache = new WeakMap<Engine, Map<string, Tables>>();

function tables(engine: Engine, nMels: number, nFft: number): Tables {
  let m = tableCache.get(engine);
  if (!m) tableCache.set(engine, (m = new Map()));
  const key = `${nMels}/${nFft}`;
  let t = m.get(key);
  if (t && !t.dft.isDisposed) return t;
  const nBins = nFft / 2 + 1;
  const pb = Math.ceil(nBins / 4) * 4; // rows of S stay 16-byte aligned
  // window and DFT matrix from f64, each entry rounded once (the angle index j·k mod nFft is exact)
  const hann = new Float32Array(nFft);
  const cos = new Float64Array(nFft);
  const sin = new Float64Array(nFft);
  for (let i = 0; i < nFft; i++) {
    const a = (2 * Math.PI * i) / nFft;
    hann[i] = 0.5 - 0.5 * Math.cos(a);
    cos[i] = Math.cos(a);
    sin[i] = Math.sin(a);
  }
  const dft = new Float32Array(nFft * 2 * pb);
  for (let j = 0; j < nFft; j++) {
    for (let k = 0; k < nBins; k++) {
      const idx = (j * k) % nFft;
      dft[j * 2 * pb + k] = cos[idx]!;
      dft[j * 2 * pb + pb + k] = sin[idx]!;
    }
  }
  const fb = melFilters(nMels, { nFft });
  const rng = new Uint32Array(2 * nMels);
  for (let mel = 0; mel < nMels; mel++) {
    let k0 = nBins;
    let k1 = 0;
    for (let k = 0; k < nBins; k++) {
      if (fb[mel * nBins + k] !== 0) {
        k0 = Math.min(k0, k);
        k1 = k + 1;
      }
    }
    rng[2 * mel] = k0 < k1 ? k0 : 0;
    rng[2 * mel + 1] = k0 < k1 ? k1 : 0;
  }
  t = {
    hann: keep(tensor(engine, hann, [nFft])),
    dft: keep(tensor(engine, dft, [nFft, 2 * pb])),
    pb,
    fb: keep(tensor(engine, fb, [nMels, nBins])),
    rng: keep(tensor(engine, rng, [2 * nMels], 'u32')),
  };
  m.set(key, t);
  return t;
}

/**
 * Log-mel of 16 kHz mono samples, unpadded: a new f32 tensor [nMels, floor(n/hop)]. The floor
 * (max − 8) uses the max over this whole spectrogram, as Whisper does over its window.
 */
export function logMel(engine: Engine, samples: Float32Array, opts: LogMelOptions = {}): Tensor {
  const nMels = opts.nMels ?? 80;
  const hop = opts.hopLength ?? HOP_LENGTH;
  const nFft = opts.nFft ?? N_FFT;
  if (!Number.isInteger(nFft) || nFft < 4 || nFft % 2 !== 0) throw new ArdError(`logmel: n_fft ${nFft} must be an even integer ≥ 4`);
  if (samples.length <= nFft / 2) {
    throw new ArdError(`logmel: need more than ${nFft / 2} samples for reflect padding, got ${samples.length}`);
  }
  for (let i = 0; i < samples.length; i++) {
    if (!Number.isFinite(samples[i]!)) throw new ArdError(`logmel: sample ${i} is ${samples[i]} (not finite)`);
  }
  const frames = Math.floor(samples.length / hop);
  const nBins = nFft / 2 + 1;
  const tb = tables(engine, nMels, nFft);
  return tidy(() => {
    const x = tensor(engine, samples, [samples.length]);
    const params = new Params().u32(samples.length, frames, hop, nFft, nMels, nBins, tb.pb, 0).done();
    // windowed frames [frames, nFft], then the DFT as one matmul: S [frames, 2·pb] = (re | im)
    const f = empty(engine, [frames, nFft]);
    engine.dispatch({
      kernel: { family: 'logmel', entry: 'frames', defines: { FRAMES: true, MEL: false, FLOOR: false } },
      params,
      buffers: [x.buffer, tb.hann.buffer, f.buffer],
      workgroups: grid(Math.ceil((frames * nFft) / 256)),
    });
    const spec = matmul(f, tb.dft);
    const logm = empty(engine, [nMels, frames]);
    engine.dispatch({
      kernel: { family: 'logmel', entry: 'mel', defines: { FRAMES: false, MEL: true, FLOOR: false } },
      params,
      buffers: [spec.buffer, tb.fb.buffer, tb.rng.buffer, logm.buffer],
      workgroups: grid(Math.ceil((nMels * frames) / 256)),
    });
    const mx = max(reshape(logm, [nMels * frames]), 0, true); // [1]
    const out = empty(engine, [nMels, frames]);
    engine.dispatch({
      kernel: { family: 'logmel', entry: 'apply_floor', defines: { FRAMES: false, MEL: false, FLOOR: true } },
      params,
      buffers: [logm.buffer, mx.buffer, out.buffer],
      workgroups: grid(Math.ceil((nMels * frames) / 256)),
    });
    return out;
  });
}

/** What the model sees of one window: the log-mel of the padded window and its valid frames. */
export interface WindowFeatures {
  /** [nMels, nSamples/hop] */
  mel: Tensor;
  /** ceil(samples in the window / hop): frames past this are padding (HF's attention mask). */
  validFrames: number;
}

/**
 * Qwen2AudioProcessor's features for one window: the clip zero-padded (or truncated) to
 * `nSamples`, log-mel over the padded signal, valid frames = ceil(len / hop).
 */
export function windowFeatures(engine: Engine, samples: Float32Array, fe: FrontendConfig): WindowFeatures {
  if (samples.length === 0) throw new ArdError('logmel: empty audio window');
  const n = Math.min(samples.length, fe.nSamples);
  const padded = new Float32Array(fe.nSamples);
  padded.set(samples.subarray(0, n));
  const mel = logMel(engine, padded, { nMels: fe.nMels, hopLength: fe.hopLength, nFft: fe.nFft });
  return { mel, validFrames: Math.ceil(n / fe.hopLength) };
}

/**
 * A clip of any length as consecutive windows of `nSamples` (the last one padded), each with its
 * features. An empty clip gives no windows.
 */
export function clipFeatures(engine: Engine, samples: Float32Array, fe: FrontendConfig): WindowFeatures[] {
  const out: WindowFeatures[] = [];
  for (let i = 0; i < samples.length; i += fe.nSamples) {
    out.push(windowFeatures(engine, samples.subarray(i, Math.min(samples.length, i + fe.nSamples)), fe));
  }
  return out;
}
