// Whisper's audio front end constants and its mel filterbank: librosa.filters.mel with the Slaney
// mel scale (htk=False) and Slaney area normalisation, fmin 0, fmax sr/2. Computed in f64.

export const SAMPLE_RATE = 16000;
export const N_FFT = 400;
export const HOP_LENGTH = 160;
export const N_FREQS = N_FFT / 2 + 1; // 201

// Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above.
const F_SP = 200 / 3;
const MIN_LOG_HZ = 1000;
const MIN_LOG_MEL = MIN_LOG_HZ / F_SP; // 15
const LOG_STEP = Math.log(6.4) / 27;

export function hzToMel(hz: number): number {
  return hz >= MIN_LOG_HZ ? MIN_LOG_MEL + Math.log(hz / MIN_LOG_HZ) / LOG_STEP : hz / F_SP;
}

export function melToHz(mel: number): number {
  return mel >= MIN_LOG_MEL ? MIN_LOG_HZ * Math.exp(LOG_STEP * (mel - MIN_LOG_MEL)) : F_SP * mel;
}

/**
 * Mel filterbank as a row-major Float32Array [nMels, nFft/2 + 1] (defaults: 16 kHz, n_fft 400 →
 * 201 bins, fmin 0, fmax sr/2). Triangles between consecutive mel-spaced edges, each scaled by
 * 2 / (bandwidth in Hz) (norm='slaney').
 */
export function melFilters(
  nMels: number,
  opts: { sampleRate?: number; nFft?: number; fmin?: number; fmax?: number } = {},
): Float32Array {
  const sr = opts.sampleRate ?? SAMPLE_RATE;
  const nFft = opts.nFft ?? N_FFT;
  const fmin = opts.fmin ?? 0;
  const fmax = opts.fmax ?? sr / 2;
  if (!Number.isInteger(nMels) || nMels <= 0) throw new RangeError(`melFilters: nMels must be a positive integer (got ${nMels})`);
  const nBins = Math.floor(nFft / 2) + 1;
  // FFT bin centre frequencies.
  const fft = new Float64Array(nBins);
  for (let k = 0; k < nBins; k++) fft[k] = (k * sr) / nFft; // np.fft.rfftfreq
  // nMels + 2 edges, equally spaced in mel.
  const lo = hzToMel(fmin);
  const hi = hzToMel(fmax);
  const edges = new Float64Array(nMels + 2);
  for (let i = 0; i < nMels + 2; i++) edges[i] = melToHz(lo + ((hi - lo) * i) / (nMels + 1));

  const out = new Float32Array(nMels * nBins);
  for (let m = 0; m < nMels; m++) {
    const f0 = edges[m];
    const f1 = edges[m + 1];
    const f2 = edges[m + 2];
    const enorm = 2 / (f2 - f0);
    for (let k = 0; k < nBins; k++) {
      const lower = (fft[k] - f0) / (f1 - f0);
      const upper = (f2 - fft[k]) / (f2 - f1);
      const w = Math.max(0, Math.min(lower, upper));
      out[m * nBins + k] = w * enorm;
    }
  }
  return out;
}

/** Periodic Hann window (torch.hann_window(n), periodic=True): 0.5 − 0.5·cos(2πi/n). */
export function hannWindow(n = N_FFT): Float32Array {
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n);
  return w;
}
