import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArdError } from '../src/util/errors.js';
import * as wavefileNs from 'wavefile';
import { decodeWav, decodeWavMono, encodeWav, listWavs, readWav, windows, writeWav } from '../src/audio/wav.js';
import { resample, resampledLength } from '../src/audio/resample.js';
import { hannWindow, hzToMel, melFilters, melToHz, N_FREQS } from '../src/audio/mel-filters.js';
import { hannWindow64, logMelFrames, logMelRef, powerSpectrogramRef } from '../reference/logmel.js';
import { GOOD, buildWav, sineFrames, wavFixtures } from '../tools/make-wav-fixtures.js';

const WAV_DIR = path.join(import.meta.dirname, 'fixtures', 'wav');
const TINY_FIXTURE = path.join(import.meta.dirname, 'fixtures', 'tiny-audiollm', 'fixtures.safetensors');

function sine(f: number, sr: number, n: number, amp = 1, phase = 0): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = amp * Math.sin((2 * Math.PI * f * i) / sr + phase);
  return x;
}

/** Amplitude of the `f` Hz component over [a, b) by projection onto sin and cos. */
function toneAmp(y: ArrayLike<number>, f: number, sr: number, a: number, b: number): number {
  let s = 0;
  let c = 0;
  for (let i = a; i < b; i++) {
    s += y[i] * Math.sin((2 * Math.PI * f * i) / sr);
    c += y[i] * Math.cos((2 * Math.PI * f * i) / sr);
  }
  return (2 * Math.hypot(s, c)) / (b - a);
}

function rms(y: ArrayLike<number>, a: number, b: number): number {
  let s = 0;
  for (let i = a; i < b; i++) s += y[i] * y[i];
  return Math.sqrt(s / (b - a));
}

/** Frequency from the span between the first and last upward zero crossings (interpolated). */
function zeroCrossingFreq(y: ArrayLike<number>, sr: number, a: number, b: number): number {
  const ups: number[] = [];
  for (let i = a; i + 1 < b; i++) {
    if (y[i] < 0 && y[i + 1] >= 0) ups.push(i + y[i] / (y[i] - y[i + 1]));
  }
  if (ups.length < 2) return NaN;
  return ((ups.length - 1) * sr) / (ups[ups.length - 1] - ups[0]);
}

function expectArdError(fn: () => unknown, ...phrases: (string | RegExp)[]): ArdError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected an ArdError').toBeInstanceOf(ArdError);
  const msg = (caught as ArdError).message;
  expect(msg).not.toContain('\n');
  for (const p of phrases) {
    if (typeof p === 'string') expect(msg).toContain(p);
    else expect(msg).toMatch(p);
  }
  return caught as ArdError;
}

describe('WAV fixtures', () => {
  it('committed files match tools/make-wav-fixtures.ts and stay tiny', () => {
    const files = wavFixtures();
    expect(Object.keys(files).length).toBeGreaterThanOrEqual(18);
    for (const [name, bytes] of Object.entries(files)) {
      const onDisk = fs.readFileSync(path.join(WAV_DIR, name));
      expect(Buffer.compare(onDisk, Buffer.from(bytes)), name).toBe(0);
      expect(onDisk.length, name).toBeLessThan(8 * 1024);
    }
  });
});

describe('readWav: good files', () => {
  for (const [name, g] of Object.entries(GOOD)) {
    it(`${name}: ${g.bitDepth}, ${g.channels} ch, ${g.rate} Hz → mono 16 kHz sine`, () => {
      const file = path.join(WAV_DIR, name);
      const a = readWav(file);
      expect(a.sampleRate).toBe(16000);
      expect(a.originalRate).toBe(g.rate);
      expect(a.channels).toBe(g.channels);
      expect(a.bitDepth).toBe(g.bitDepth);
      expect(a.duration).toBeCloseTo(g.frames / g.rate, 12);
      expect(a.samples).toBeInstanceOf(Float32Array);
      expect(a.samples.length).toBe(Math.ceil((g.frames * 16000) / g.rate));

      // Away from the clip edges (where the resampler sees zeros beyond the clip) the samples are
      // the mono mix amp·sin(2πft + 0.3) at t = n/16000: amplitude, frequency, phase, channel mix.
      const trim = 128; // 8 ms, more than the widest resampling filter's half-width
      const y = a.samples;
      const tol = g.bitDepth === '8' ? 6e-3 : 1e-4; // 8-bit quantisation step is 1/128
      let maxErr = 0;
      for (let i = trim; i < y.length - trim; i++) {
        const want = g.amp * Math.sin((2 * Math.PI * g.freq * i) / 16000 + 0.3);
        maxErr = Math.max(maxErr, Math.abs(y[i] - want));
      }
      expect(maxErr).toBeLessThan(tol);
      const f = zeroCrossingFreq(y, 16000, trim, y.length - trim);
      expect(Math.abs(f - g.freq) / g.freq).toBeLessThan(0.005);
    });
  }

  it('decodeWavMono agrees with wavefile.getSamples (channels averaged) on every good fixture', () => {
    const WaveFile = (wavefileNs as any).WaveFile ?? (wavefileNs as any).default.WaveFile;
    for (const [name, g] of Object.entries(GOOD)) {
      const bytes = new Uint8Array(fs.readFileSync(path.join(WAV_DIR, name)));
      const m = decodeWavMono(bytes, name);
      expect(m.sampleRate).toBe(g.rate);
      expect(m.frames).toBe(g.frames);
      expect(m.samples.length).toBe(g.frames);
      // wavefile as the reference decoder: it needs the subformat code for EXTENSIBLE files and
      // the data cut to whole frames (it keeps the pad byte of odd-sized chunks).
      const copy = bytes.slice();
      const dv = new DataView(copy.buffer);
      if (dv.getUint16(20, true) === 0xfffe) dv.setUint16(20, dv.getUint16(44, true), true);
      const wav = new WaveFile();
      wav.fromBuffer(copy);
      wav.data.samples = wav.data.samples.subarray(0, g.frames * g.channels * (wav.fmt.bitsPerSample / 8));
      const raw = wav.getSamples(true, Float64Array) as Float64Array;
      const bits = wav.fmt.bitsPerSample;
      const scale = (v: number) =>
        g.bitDepth === '8' ? (v - 128) / 128 : g.bitDepth === '32f' || g.bitDepth === '64' ? v : v / 2 ** (bits - 1);
      let maxErr = 0;
      for (let i = 0; i < g.frames; i++) {
        let sum = 0;
        for (let k = 0; k < g.channels; k++) sum += scale(raw[i * g.channels + k]);
        maxErr = Math.max(maxErr, Math.abs(m.samples[i] - sum / g.channels));
      }
      expect(maxErr, name).toBeLessThan(1e-7); // f32 storage of the mix
    }
  });

  it('decodeWav reads the same bytes from memory, naming the given name in errors', () => {
    const bytes = fs.readFileSync(path.join(WAV_DIR, 'pcm24-22k.wav'));
    const a = decodeWav(bytes, 'mem.wav');
    const b = readWav(path.join(WAV_DIR, 'pcm24-22k.wav'));
    expect(Array.from(a.samples)).toEqual(Array.from(b.samples));
    // A view into a larger buffer (byteOffset != 0) decodes the same.
    const big = new Uint8Array(bytes.length + 7);
    big.set(bytes, 7);
    expect(Array.from(decodeWav(big.subarray(7), 'view.wav').samples)).toEqual(Array.from(b.samples));
    expectArdError(() => decodeWav(bytes.subarray(0, 20), 'mem.wav'), 'mem.wav: ', 'truncated header');
  });

  it('reads a data chunk placed before fmt, a streaming 0xFFFFFFFF data size and trailing junk', () => {
    const x = sineFrames(440, 16000, 800, [0.5]);
    const normal = buildWav({ format: 1, bits: 16, channels: 1, rate: 16000, samples: x });
    const ref = decodeWav(normal, 'ref.wav').samples;
    expect(ref.length).toBe(800);
    expect(ref[10]).toBeCloseTo(0.5 * Math.sin((2 * Math.PI * 440 * 10) / 16000 + 0.3), 4);

    // data first, then fmt
    const fmtChunk = normal.subarray(12, 36);
    const dataChunk = normal.subarray(36);
    const swapped = new Uint8Array(normal.length);
    swapped.set(normal.subarray(0, 12));
    swapped.set(dataChunk, 12);
    swapped.set(fmtChunk, 12 + dataChunk.length);
    expect(Array.from(decodeWav(swapped, 'swapped.wav').samples)).toEqual(Array.from(ref));

    // streaming writers leave 0xFFFFFFFF in the data size; plus 3 stray bytes at the end
    const streamed = buildWav({ format: 1, bits: 16, channels: 1, rate: 16000, samples: x, declaredDataSize: 0xffffffff });
    const withJunk = new Uint8Array(streamed.length + 3);
    withJunk.set(streamed);
    withJunk.set([1, 2, 3], streamed.length);
    // 3 stray bytes = 1 extra whole 16-bit frame + 1 partial byte (dropped)
    const s = decodeWav(withJunk, 'streamed.wav').samples;
    expect(s.length).toBe(801);
    expect(Array.from(s.subarray(0, 800))).toEqual(Array.from(ref));

    // a damaged chunk after the data does not matter
    const tail = new Uint8Array(normal.length + 8);
    tail.set(normal);
    tail.set([0x4c, 0x49, 0x53, 0x54, 0xff, 0xff, 0x00, 0x00], normal.length); // 'LIST' claiming 65535 bytes
    expect(Array.from(decodeWav(tail, 'tail.wav').samples)).toEqual(Array.from(ref));
  });

  it('maps integer full scale as k / 2^(bits-1) and 8-bit as unsigned', () => {
    const vals = [-1, -0.5, 0, 0.25, 0.5];
    for (const bits of [8, 16, 24, 32]) {
      const a = decodeWav(buildWav({ format: 1, bits, channels: 1, rate: 16000, samples: vals }), `b${bits}.wav`);
      expect(Array.from(a.samples)).toEqual(vals);
    }
  });
});

describe('readWav: bad files', () => {
  const cases: [string, (string | RegExp)[]][] = [
    ['not-riff.wav', ['not a RIFF/WAVE file']],
    ['truncated-header.wav', ['truncated header']],
    ['truncated-data.wav', ['truncated data: header says 3200 bytes, file has 1000']],
    ['zero-samples.wav', ['no samples']],
    ['nan-samples.wav', ['NaN sample at frame 100']],
    ['inf-samples.wav', ['infinite sample at frame 50 (channel 1']],
    ['alaw.wav', ['unsupported encoding A-law', 'format code 6']],
    ['empty.wav', ['empty file (0 bytes)']],
    ['no-fmt.wav', ['missing fmt chunk']],
    ['no-data.wav', ['missing data chunk']],
  ];
  for (const [name, phrases] of cases) {
    it(`${name} → ${phrases.join(', ')}`, () => {
      const file = path.join(WAV_DIR, name);
      expectArdError(() => readWav(file), `${file}: `, ...phrases);
    });
  }

  it('a missing file is an ArdError naming it', () => {
    const file = path.join(WAV_DIR, 'does-not-exist.wav');
    expectArdError(() => readWav(file), file, 'cannot read', 'ENOENT');
  });

  it('rejects other encodings and inconsistent headers with specific messages', () => {
    const raw = (format: number, bits: number, extra: object = {}) =>
      buildWav({ format, bits, channels: 1, rate: 8000, samples: [1, 2, 3, 4], ...extra });
    expectArdError(() => decodeWav(raw(7, 8), 'u.wav'), 'u.wav: unsupported encoding µ-law', 'format code 7');
    expectArdError(() => decodeWav(raw(0x11, 4), 'i.wav'), 'unsupported encoding IMA ADPCM', 'format code 17 = 0x0011');
    expectArdError(() => decodeWav(raw(2, 4), 'm.wav'), 'Microsoft ADPCM', 'format code 2');
    expectArdError(() => decodeWav(raw(0x1234, 16), 'x.wav'), 'unsupported encoding (format code 4660 = 0x1234)');
    expectArdError(() => decodeWav(raw(6, 8, { extensible: true }), 'e.wav'), 'A-law', 'WAVE_FORMAT_EXTENSIBLE');
    expectArdError(() => decodeWav(raw(1, 12), 'p.wav'), 'unsupported encoding: 12-bit PCM');
    expectArdError(() => decodeWav(raw(1, 64), 'p.wav'), 'unsupported encoding: 64-bit PCM');
    expectArdError(() => decodeWav(raw(3, 16), 'f.wav'), 'unsupported encoding: 16-bit float');

    const good = raw(1, 16);
    const riffx = good.slice();
    riffx.set([0x52, 0x49, 0x46, 0x58], 0); // 'RIFX'
    expectArdError(() => decodeWav(riffx, 'r.wav'), 'unsupported container RIFX');
    const avi = good.slice();
    avi.set([0x41, 0x56, 0x49, 0x20], 8); // 'AVI '
    expectArdError(() => decodeWav(avi, 'a.wav'), 'not a RIFF/WAVE file (RIFF form type "AVI ")');
    const noChannels = good.slice();
    new DataView(noChannels.buffer).setUint16(22, 0, true);
    expectArdError(() => decodeWav(noChannels, 'c.wav'), 'invalid fmt chunk: 0 channels');
    const noRate = good.slice();
    new DataView(noRate.buffer).setUint32(24, 0, true);
    expectArdError(() => decodeWav(noRate, 'z.wav'), 'invalid fmt chunk: sample rate 0');
    const badAlign = good.slice();
    new DataView(badAlign.buffer).setUint16(32, 4, true);
    expectArdError(() => decodeWav(badAlign, 'b.wav'), 'invalid fmt chunk: block align 4, expected 2');
    const guid = raw(3, 32, { extensible: true });
    guid[20 + 24 + 10] ^= 0xff; // corrupt the subformat GUID tail
    expectArdError(() => decodeWav(guid, 'g.wav'), 'unsupported encoding (WAVE_FORMAT_EXTENSIBLE subformat GUID');
    const short = buildWav({ format: 3, bits: 32, channels: 2, rate: 8000, samples: [0.5] }); // 4 bytes, frame is 8
    expectArdError(() => decodeWav(short, 'short.wav'), 'no samples (data chunk has 4 bytes, one frame is 8)');
    expectArdError(() => decodeWav(Uint8Array.from([0x52, 0x49, 0x46]), 't.wav'), 'truncated header (3 bytes)');
    expectArdError(() => decodeWav(good.slice(0, 40), 't.wav'), 'missing data chunk', 'file ends inside a chunk header');
  });
});

describe('writeWav / listWavs / windows', () => {
  it('writeWav round-trips 16-bit values exactly, clips, and leaves no temporary file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-wav-'));
    try {
      const x = new Float32Array(1000);
      for (let i = 0; i < x.length; i++) x[i] = Math.round(Math.sin(i * 0.05) * 20000) / 32768;
      x[5] = 1.5; // clips to 32767/32768
      x[6] = -2; // clips to -1
      const file = path.join(dir, 'sub', 'out.wav');
      writeWav(file, x);
      expect(fs.readdirSync(path.dirname(file))).toEqual(['out.wav']);
      const a = readWav(file);
      expect(a.originalRate).toBe(16000);
      expect(a.bitDepth).toBe('16');
      expect(a.samples[5]).toBe(32767 / 32768);
      expect(a.samples[6]).toBe(-1);
      x[5] = 32767 / 32768;
      x[6] = -1;
      expect(Array.from(a.samples)).toEqual(Array.from(x));
      // Another rate is stored as is and resampled on read.
      writeWav(file, sine(1000, 44100, 4410, 0.5), 44100);
      const b = readWav(file);
      expect(b.originalRate).toBe(44100);
      expect(b.samples.length).toBe(1600);
      expect(toneAmp(b.samples, 1000, 16000, 200, 1400)).toBeCloseTo(0.5, 3);
      expectArdError(() => encodeWav(Float32Array.of(0, NaN), 16000, 'n.wav'), 'n.wav: cannot write non-finite sample at index 1');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('listWavs returns .wav files at any depth, sorted, skipping hidden entries', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-list-'));
    try {
      const touch = (rel: string) => {
        fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
        fs.writeFileSync(path.join(dir, rel), '');
      };
      for (const f of ['b.wav', 'a.WAV', 'z/c.wav', 'z/y/d.wav', 'm/notes.txt', 'm/x.wave', '._b.wav', '.hidden/e.wav', 'a0.wav']) touch(f);
      fs.symlinkSync(dir, path.join(dir, 'z', 'loop')); // a cycle must not hang
      const got = listWavs(dir).map((p) => path.relative(dir, p));
      expect(got).toEqual(['a.WAV', 'a0.wav', 'b.wav', 'z/c.wav', 'z/y/d.wav']);
      expectArdError(() => listWavs(path.join(dir, 'nope')), 'nope', 'cannot read directory');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('windows splits into ≤ 30 s views', () => {
    const x = new Float32Array(16000 * 65);
    x[480000] = 7;
    const w = windows(x);
    expect(w.map((v) => v.length)).toEqual([480000, 480000, 80000]);
    expect(w[1][0]).toBe(7);
    expect(w[1].buffer).toBe(x.buffer);
    expect(windows(new Float32Array(70), 3, 10).map((v) => v.length)).toEqual([30, 30, 10]);
    expect(windows(new Float32Array(60), 3, 10).map((v) => v.length)).toEqual([30, 30]);
    expect(windows(new Float32Array(0))).toEqual([]);
  });
});

describe('resample', () => {
  it('16k → 16k is an identity copy', () => {
    const x = sine(440, 16000, 1000, 0.3);
    const y = resample(x, 16000, 16000);
    expect(y).not.toBe(x);
    expect(Array.from(y)).toEqual(Array.from(x));
  });

  it('output lengths are ceil(n · fout / fin)', () => {
    expect(resampledLength(44100, 44100, 16000)).toBe(16000);
    expect(resampledLength(44101, 44100, 16000)).toBe(16001);
    expect(resampledLength(1, 44100, 16000)).toBe(1);
    expect(resampledLength(0, 44100, 16000)).toBe(0);
    expect(resampledLength(8000, 8000, 16000)).toBe(16000);
    for (const [n, fin] of [[1000, 44100], [12345, 48000], [7, 22050], [999, 8000], [5000, 44099]] as const) {
      expect(resample(new Float32Array(n), fin, 16000).length).toBe(Math.ceil((n * 16000) / fin));
    }
    expect(resample(new Float32Array(0), 44100, 16000).length).toBe(0);
  });

  it('keeps a tone below the new Nyquist within 0.5% and the phase aligned', () => {
    for (const [fin, f] of [[44100, 1000], [48000, 6500], [22050, 3000], [8000, 1000], [8000, 3300], [44099, 2000], [11025, 4500]] as const) {
      const x = sine(f, fin, fin, 0.8, 0.3); // 1 s
      const y = resample(x, fin, 16000);
      const a = toneAmp(y, f, 16000, 1600, 14400);
      expect(Math.abs(a - 0.8) / 0.8, `${fin} Hz, ${f} Hz tone`).toBeLessThan(0.005);
      // zero delay: output n is the input at t = n/16000
      expect(y[8000]).toBeCloseTo(0.8 * Math.sin((2 * Math.PI * f * 8000) / 16000 + 0.3), 3);
    }
  });

  it('attenuates a tone above the new Nyquist by more than 40 dB', () => {
    for (const [fin, f] of [[44100, 9000], [44100, 12000], [44100, 20000], [48000, 8500], [22050, 10000], [44099, 11000]] as const) {
      const y = resample(sine(f, fin, fin), fin, 16000);
      const db = 20 * Math.log10(rms(y, 1600, 14400) * Math.SQRT2);
      expect(db, `${fin} Hz, ${f} Hz tone`).toBeLessThan(-40);
    }
  });

  it('upsampling leaves no spectral image', () => {
    const y = resample(sine(3000, 8000, 8000), 8000, 16000);
    expect(toneAmp(y, 3000, 16000, 1600, 14400)).toBeGreaterThan(0.995);
    expect(toneAmp(y, 5000, 16000, 1600, 14400)).toBeLessThan(1e-3); // image at 8000 − 3000 Hz
  });

  it('a constant stays constant', () => {
    const y = resample(new Float32Array(5000).fill(0.25), 44100, 16000);
    for (let i = 200; i < y.length - 200; i++) expect(Math.abs(y[i] - 0.25)).toBeLessThan(1e-6);
  });
});

describe('mel filters', () => {
  it('Slaney mel scale: linear to 1 kHz, logarithmic above, inverses agree', () => {
    expect(hzToMel(1000)).toBeCloseTo(15, 12);
    expect(hzToMel(200)).toBeCloseTo(3, 12);
    expect(hzToMel(6400)).toBeCloseTo(42, 12); // 27 mels per factor 6.4
    for (const hz of [0, 50, 999, 1000, 1001, 4000, 8000]) expect(melToHz(hzToMel(hz))).toBeCloseTo(hz, 9);
  });

  it('matches published Slaney-normalised values (sr 4000, 16 bins, 4 mels)', () => {
    // Expected values from Hugging Face transformers' audio_utils test for
    // mel_filter_bank(num_frequency_bins=16, num_mel_filters=4, 0..2000 Hz, sr 4000, slaney/slaney),
    // stored there as [bins, mels]; 16 bins correspond to n_fft 30.
    const expected: number[][] = [
      [0, 0, 0, 0],
      [1.19217795e-3, 0, 0, 0],
      [2.38435591e-3, 0, 0, 0],
      [2.40387905e-3, 5.86232616e-4, 0, 0],
      [1.2117011e-3, 1.77821783e-3, 0, 0],
      [1.95231437e-5, 2.97020305e-3, 0, 0],
      [0, 1.81763684e-3, 1.04857612e-3, 0],
      [0, 6.26036972e-4, 2.11460963e-3, 0],
      [0, 0, 2.26505954e-3, 3.07332945e-4],
      [0, 0, 1.40202503e-3, 9.54861093e-4],
      [0, 0, 5.38990521e-4, 1.60238924e-3],
      [0, 0, 0, 1.83458185e-3],
      [0, 0, 0, 1.37593638e-3],
      [0, 0, 0, 9.17290923e-4],
      [0, 0, 0, 4.58645462e-4],
      [0, 0, 0, 0],
    ];
    const fb = melFilters(4, { sampleRate: 4000, nFft: 30 });
    expect(fb.length).toBe(4 * 16);
    for (let k = 0; k < 16; k++) {
      for (let m = 0; m < 4; m++) expect(fb[m * 16 + k]).toBeCloseTo(expected[k][m], 9);
    }
  });

  for (const nMels of [80, 128]) {
    it(`${nMels} mels × 201 bins: triangles at mel-spaced centres with unit area`, () => {
      const fb = melFilters(nMels);
      expect(fb).toBeInstanceOf(Float32Array);
      expect(fb.length).toBe(nMels * N_FREQS);
      expect(fb.every((v) => v >= 0)).toBe(true);
      const top = hzToMel(8000);
      let prevPeak = -1;
      let areaChecked = 0;
      for (let m = 0; m < nMels; m++) {
        const row = fb.subarray(m * N_FREQS, (m + 1) * N_FREQS);
        const lo = melToHz((top * m) / (nMels + 1));
        const centre = melToHz((top * (m + 1)) / (nMels + 1));
        const hi = melToHz((top * (m + 2)) / (nMels + 1));
        // Nothing outside (lo, hi); peak bin no further than one bin from the centre.
        for (let k = 0; k < N_FREQS; k++) if (k * 40 <= lo || k * 40 >= hi) expect(row[k]).toBe(0);
        let peak = 0;
        for (let k = 1; k < N_FREQS; k++) if (row[k] > row[peak]) peak = k;
        if (row[peak] > 0) {
          expect(Math.abs(peak * 40 - centre)).toBeLessThanOrEqual(40);
          expect(peak).toBeGreaterThanOrEqual(prevPeak);
          prevPeak = peak;
        }
        // Slaney norm: ∫ w df = 1 for each triangle; sampled every 40 Hz that holds only for wide ones.
        if (hi - lo > 200) {
          let area = 0;
          for (let k = 0; k < N_FREQS; k++) area += row[k] * 40;
          expect(Math.abs(area - 1), `mel ${m} area ${area}`).toBeLessThan(0.03);
          areaChecked++;
        }
      }
      expect(areaChecked).toBeGreaterThan(15);
    });
  }

  it('periodic Hann window of 400', () => {
    const w = hannWindow(400);
    expect(w.length).toBe(400);
    expect(w[0]).toBe(0);
    expect(w[200]).toBe(1);
    expect(w[100]).toBeCloseTo(0.5, 7);
    for (let i = 1; i < 400; i++) expect(w[i]).toBeCloseTo(w[400 - i], 7);
  });
});

describe('log-mel reference', () => {
  it('N samples give floor(N/160) frames; shape [nMels, frames]', () => {
    for (const n of [16000, 16159, 400, 1000]) {
      expect(logMelFrames(n)).toBe(Math.floor(n / 160));
      expect(logMelRef(sine(500, 16000, n), 80).length).toBe(80 * Math.floor(n / 160));
    }
    expect(logMelRef(sine(500, 16000, 3200), 128).length).toBe(128 * 20);
  });

  it('power spectrum satisfies Parseval for each windowed frame', () => {
    const x = sine(700, 16000, 4000, 0.6, 0.1);
    for (let i = 0; i < x.length; i++) x[i] += 0.05 * Math.sin(i * i * 0.001); // something broadband
    const p = powerSpectrogramRef(x);
    const w = hannWindow64(400);
    for (const t of [3, 10]) {
      let energy = 0;
      for (let j = 0; j < 400; j++) energy += (x[t * 160 - 200 + j] * w[j]) ** 2;
      let spec = 0;
      for (let k = 0; k <= 200; k++) spec += (k === 0 || k === 200 ? 1 : 2) * p[t * N_FREQS + k];
      expect(spec / 400).toBeCloseTo(energy, 9);
    }
    // frame 0 is centred on sample 0, reflect-padded: x[-i] = x[i]
    let e0 = 0;
    for (let j = 0; j < 400; j++) e0 += (x[Math.abs(j - 200)] * w[j]) ** 2;
    let s0 = 0;
    for (let k = 0; k <= 200; k++) s0 += (k === 0 || k === 200 ? 1 : 2) * p[k];
    expect(s0 / 400).toBeCloseTo(e0, 9);
  });

  it('a 1 kHz tone peaks in the mel band that contains 1 kHz; floor is max − 8 in log10', () => {
    const n = 16000;
    const x = new Float32Array(n);
    x.set(sine(1000, 16000, 8000, 0.5)); // second half silent
    const nMels = 80;
    const frames = n / 160;
    const lm = logMelRef(x, nMels);
    const fb = melFilters(nMels);
    let best = 0;
    for (let m = 0; m < nMels; m++) if (fb[m * N_FREQS + 25] > fb[best * N_FREQS + 25]) best = m;
    for (const t of [10, 25, 40]) {
      let arg = 0;
      for (let m = 0; m < nMels; m++) if (lm[m * frames + t] > lm[arg * frames + t]) arg = m;
      expect(arg).toBe(best);
    }
    const max = Math.max(...lm);
    const min = Math.min(...lm);
    expect(max - min).toBeCloseTo(2, 5); // 8 decades / 4
    expect(lm[0 * frames + 90]).toBeCloseTo(min, 6); // silence sits on the floor
  });

  it.runIf(fs.existsSync(TINY_FIXTURE))('matches the reference fixture (tiny-audiollm/fixtures.safetensors)', () => {
    const buf = fs.readFileSync(TINY_FIXTURE);
    const hlen = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
    const tensor = (name: string): { shape: number[]; data: Float32Array } => {
      const h = header[name];
      expect(h, `tensor ${name}`).toBeDefined();
      expect(h.dtype).toBe('F32');
      const [s, e] = h.data_offsets as [number, number];
      const bytes = buf.subarray(8 + hlen + s, 8 + hlen + e);
      const data = new Float32Array(new Uint8Array(bytes).buffer); // copy: alignment
      return { shape: h.shape, data };
    };
    // The fixture's log-mels come from tools/reference/logmel.py (numpy f64, np.fft.rfft); ours
    // is f64 too, so the only difference expected is f32 storage (~1e-7).
    const tonePadded = new Float32Array(32000);
    tonePadded.set(tensor('tone').data);
    const cases: [string, Float32Array, string, number, number][] = [
      ['audio', tensor('audio').data, 'logmel_audio', 80, 200],
      ['tone', tensor('tone').data, 'logmel_tone', 80, 100],
      ['tone zero-padded to 32000', tonePadded, 'logmel_tone_padded', 80, 200],
      ['tone, 128 mels', tensor('tone').data, 'logmel_tone_128', 128, 100],
    ];
    for (const [what, x, want, nMels, frames] of cases) {
      const ref = tensor(want);
      expect(ref.shape).toEqual([nMels, frames]);
      const got = logMelRef(x, nMels);
      expect(got.length).toBe(ref.data.length);
      let maxErr = 0;
      for (let i = 0; i < got.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - ref.data[i]));
      expect(maxErr, `${what} vs ${want}: max |ours − fixture|`).toBeLessThan(1e-5);
    }
  });
});
