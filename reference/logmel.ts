// Plain TypeScript reference of Whisper's log-mel spectrogram (kernels/logmel.wgsl, audio/logmel.ts;
// tests check the GPU kernel against it). f64 throughout, direct DFT: slow but obviously right.
//
//   stft(center=True, reflect pad n_fft/2, periodic Hann, hop 160) → |X|² over 201 bins
//   → drop the last frame (Whisper's stft[..., :-1]: N samples give floor(N/160) frames)
//   → mel = filters @ power → log10(max(mel, 1e-10)) → max(x, max(x) − 8) → (x + 4) / 4
//
// The caller decides on padding to 30 s (Whisper's feature extractor pads to 480000 samples).

import { HOP_LENGTH, N_FFT, N_FREQS, melFilters } from '../src/audio/mel-filters.js';

/** Periodic Hann window in f64 (torch.hann_window(n), periodic=True; hannWindow's f32 twin). */
export function hannWindow64(n = N_FFT): Float64Array {
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) w[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n);
  return w;
}

/** Frames produced for `n` samples. */
export function logMelFrames(n: number): number {
  return Math.floor(n / HOP_LENGTH);
}

/** Index into a signal of length n after reflect padding (no edge repeat), folding as often as needed. */
function reflectIndex(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let j = ((i % period) + period) % period;
  if (j >= n) j = period - j;
  return j;
}

/** Power spectrum |DFT|² of every frame: Float64Array [frames, 201] (last stft frame dropped). */
export function powerSpectrogramRef(samples: Float32Array | Float64Array): Float64Array {
  const n = samples.length;
  const frames = logMelFrames(n);
  const win = hannWindow64(N_FFT);
  const cos = new Float64Array(N_FFT);
  const sin = new Float64Array(N_FFT);
  for (let i = 0; i < N_FFT; i++) {
    cos[i] = Math.cos((2 * Math.PI * i) / N_FFT);
    sin[i] = Math.sin((2 * Math.PI * i) / N_FFT);
  }
  const pad = N_FFT / 2;
  const frame = new Float64Array(N_FFT);
  const out = new Float64Array(frames * N_FREQS);
  for (let t = 0; t < frames; t++) {
    const start = t * HOP_LENGTH - pad;
    for (let i = 0; i < N_FFT; i++) frame[i] = samples[reflectIndex(start + i, n)] * win[i];
    for (let k = 0; k < N_FREQS; k++) {
      // e^{-2πi·k·j/N}: the angle index k·j mod N advances by k per sample.
      let re = 0;
      let im = 0;
      let idx = 0;
      for (let j = 0; j < N_FFT; j++) {
        re += frame[j] * cos[idx];
        im -= frame[j] * sin[idx];
        idx += k;
        if (idx >= N_FFT) idx -= N_FFT;
      }
      out[t * N_FREQS + k] = re * re + im * im;
    }
  }
  return out;
}

/**
 * Whisper log-mel features of 16 kHz mono samples: Float32Array [nMels, floor(N/160)], row-major.
 * `filters` defaults to melFilters(nMels).
 */
export function logMelRef(samples: Float32Array | Float64Array, nMels = 80, filters?: Float32Array): Float32Array {
  if (samples.length === 0) throw new RangeError('logMelRef: empty input');
  const fb = filters ?? melFilters(nMels);
  if (fb.length !== nMels * N_FREQS) throw new RangeError(`logMelRef: filters have ${fb.length} values, expected ${nMels}×${N_FREQS}`);
  const power = powerSpectrogramRef(samples);
  const frames = logMelFrames(samples.length);
  const logspec = new Float64Array(nMels * frames);
  let max = -Infinity;
  for (let m = 0; m < nMels; m++) {
    for (let t = 0; t < frames; t++) {
      let s = 0;
      for (let k = 0; k < N_FREQS; k++) s += fb[m * N_FREQS + k] * power[t * N_FREQS + k];
      const v = Math.log10(Math.max(s, 1e-10));
      logspec[m * frames + t] = v;
      if (v > max) max = v;
    }
  }
  const floor = max - 8;
  const out = new Float32Array(nMels * frames);
  for (let i = 0; i < out.length; i++) out[i] = (Math.max(logspec[i], floor) + 4) / 4;
  return out;
}
