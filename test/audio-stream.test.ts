// Streaming audio (src/audio/stream.ts): a file read and decoded a block at a time gives exactly
// what readAudio gives (every sample bit for bit, the same metadata, the same one-line refusal),
// for every format and fixture, block boundaries anywhere (inside FLAC and MP3 frames, inside WAV
// frames), any window size; StreamResampler equals resample(); files are read in bounded blocks.
import fsDefault, * as fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { decodeAudio, readAudio } from '../src/audio/decode.js';
import { StreamResampler, resample } from '../src/audio/resample.js';
import { type AudioStreamInput, measureAudio, openAudioStream, openClip } from '../src/audio/stream.js';
import { ArdError } from '../src/util/errors.js';
import { buildWav, concat, sineFrames, wavFixtures } from '../tools/make-wav-fixtures.js';

const AUDIO = path.join(import.meta.dirname, 'fixtures', 'audio');
const WAVS = path.join(import.meta.dirname, 'fixtures', 'wav');

type Outcome = { error: string } | { samples: Float32Array; meta: Record<string, unknown> };

/** readAudio's result (decodeAudio for bytes), or its message. */
async function whole(input: AudioStreamInput): Promise<Outcome> {
  try {
    const { samples, ...meta } = typeof input === 'string' ? await readAudio(input) : await decodeAudio(input.bytes, input.name);
    return { samples, meta };
  } catch (e) {
    if (!(e instanceof ArdError)) throw e;
    return { error: e.message };
  }
}

/** The stream's windows of `win` samples, concatenated, and its metadata, or its message. */
async function streamed(input: AudioStreamInput, blockBytes: number, win: number): Promise<Outcome & { reads?: number[] }> {
  try {
    const s = await openAudioStream(input, { blockBytes });
    const parts: Float32Array[] = [];
    const reads: number[] = [];
    try {
      for (let b = await s.read(win); b; b = await s.read(win)) {
        parts.push(b);
        reads.push(b.length);
      }
    } finally {
      s.close();
    }
    const { length, ...meta } = s.info();
    const samples = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      samples.set(p, at);
      at += p.length;
    }
    expect(length).toBe(samples.length);
    return { samples, meta, reads };
  } catch (e) {
    if (!(e instanceof ArdError)) throw e;
    return { error: e.message };
  }
}

/** measureAudio's metadata and length, or its message. */
async function measured(input: AudioStreamInput): Promise<{ error: string } | { length: number; meta: Record<string, unknown> }> {
  try {
    const { length, ...meta } = await measureAudio(input);
    return { length, meta };
  } catch (e) {
    if (!(e instanceof ArdError)) throw e;
    return { error: e.message };
  }
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** The stream (at each block and window size) and measureAudio against readAudio: equal in everything. */
async function expectSame(input: AudioStreamInput, sizes: [blockBytes: number, win: number][]): Promise<Outcome> {
  const name = typeof input === 'string' ? input : input.name;
  const ref = await whole(input);
  for (const [blockBytes, win] of sizes) {
    const got = await streamed(input, blockBytes, win);
    const what = `${path.basename(name)} (blocks of ${blockBytes} bytes, windows of ${win})`;
    if ('error' in ref) {
      expect('error' in got ? got.error : 'decoded', what).toBe(ref.error);
      continue;
    }
    if ('error' in got) throw new Error(`${what}: ${got.error}`);
    expect(got.meta, what).toEqual(ref.meta);
    expect(got.samples.length, what).toBe(ref.samples.length);
    expect(bits(got.samples).equals(bits(ref.samples)), `${what}: samples differ`).toBe(true);
    // every window full but the last
    expect(got.reads!.slice(0, -1).every((n) => n === win), what).toBe(true);
  }
  const m = await measured(input);
  if ('error' in ref) expect('error' in m ? m.error : 'measured', `measureAudio ${name}`).toBe(ref.error);
  else expect(m, `measureAudio ${name}`).toEqual({ length: ref.samples.length, meta: ref.meta });
  return ref;
}

describe('StreamResampler', () => {
  it('gives resample() bit for bit, for any blocks: exact polyphase and interpolated phases, up and down, short and long signals', () => {
    let seed = 5;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    // 44057 Hz and 7 Hz: L = 16000 phases, the interpolated grid (whose 4097-row table is slow to
    // build: fewer cases); at 7 Hz each input sample gives 2286 outputs
    const cases: [number, number[], number[]][] = [
      ...[8000, 11025, 22050, 44100, 48000, 96000, 16000].map((fin): [number, number[], number[]] => [fin, [0, 1, 5, 40, 333, 20011], [1, 13, 4096]]),
      [44057, [5, 20011], [13, 4096]],
      [7, [1, 40], [1, 13]],
    ];
    for (const [fin, lengths, blocks] of cases) {
      for (const n of lengths) {
        const x = new Float32Array(n).map(() => rnd());
        const ref = resample(x, fin, 16000);
        for (const blk of blocks) {
          if (blk === 1 && n > 400) continue;
          const r = new StreamResampler(fin, 16000);
          const parts: Buffer[] = [];
          for (let i = 0; i < n; i += blk) parts.push(bits(r.push(x.subarray(i, Math.min(n, i + blk)))));
          parts.push(bits(r.end()));
          expect(r.outputs, `${fin} Hz, ${n} samples, blocks of ${blk}`).toBe(ref.length);
          expect(Buffer.concat(parts).equals(bits(ref)), `${fin} Hz, ${n} samples, blocks of ${blk}`).toBe(true);
        }
      }
    }
  });

  it('refuses bad rates as resample() does and push after end', () => {
    expect(() => new StreamResampler(0, 16000)).toThrow(RangeError);
    expect(() => new StreamResampler(44100.5, 16000)).toThrow(RangeError);
    const r = new StreamResampler(8000, 16000);
    r.end();
    expect(() => r.push(new Float32Array(3))).toThrow(/after end/);
  });
});

describe('streamed == readAudio', () => {
  const fixtures = fs.readdirSync(AUDIO).sort();

  it('every compressed and WAV fixture (FLAC, Ogg Vorbis/Opus, MP3 at 8–48 kHz, mono and stereo, ID3, a FLAC named .wav): blocks of 509 bytes (boundaries inside frames) and 256 KiB', async () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(40);
    for (const f of fixtures) {
      const ref = await expectSame(path.join(AUDIO, f), [
        [509, 999],
        [256 * 1024, 64000],
      ]);
      expect('samples' in ref, f).toBe(true);
    }
  });

  it('FLAC whose short last frame needs the pad byte, and MP3/Vorbis/Opus, fed in blocks of 61 bytes', async () => {
    for (const f of ['short-last-frame.flac', 'chirp-stereo-44100.flac', 'chirp-mono-8000.mp3', 'id3-chirp-22050.mp3', 'chirp-mono-22050.ogg', 'chirp-mono-48000.opus']) {
      await expectSame(path.join(AUDIO, f), [[61, 4096]]);
    }
  });

  it('every WAV fixture and every WAV case wav.ts reads (chunk orders, pad bytes, data size 0/0xFFFFFFFF, extensible), and their refusals', async () => {
    for (const f of fs.readdirSync(WAVS).sort()) await expectSame(path.join(WAVS, f), [[37, 777]]);
    for (const [name, bytes] of Object.entries(wavFixtures())) await expectSame({ bytes, name }, [[37, 777], [4096, 16000]]);
  });

  it('generated WAVs of several seconds at 8, 16, 22.05, 44.1 and 48 kHz, mono and stereo, 8–32-bit PCM and float, lengths that are no multiple of anything', async () => {
    let seed = 9;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 1.6 - 0.8;
    const cases: [number, number, number, number][] = [
      // rate, channels, format, bits
      [8000, 1, 1, 16],
      [16000, 1, 1, 16],
      [22050, 2, 1, 24],
      [44100, 2, 1, 16],
      [48000, 1, 3, 32],
      [44100, 1, 1, 8],
      [16000, 2, 1, 32],
      [22050, 1, 3, 64],
    ];
    for (const [rate, channels, format, b] of cases) {
      const frames = Math.round(rate * 2.37) + 3;
      const samples = new Float64Array(frames * channels).map(() => rnd());
      const bytes = buildWav({ format, bits: b, channels, rate, samples, extensible: b === 24 });
      await expectSame({ bytes, name: `gen-${rate}-${channels}ch-${b}.wav` }, [
        [1001, 16000],
        [65536, 4093],
      ]);
    }
  });

  it('tiny files: one frame, one frame at 48 kHz, an empty data chunk, a data chunk shorter than one frame', async () => {
    const one = buildWav({ format: 1, bits: 16, channels: 1, rate: 16000, samples: [0.25] });
    const one48 = buildWav({ format: 1, bits: 16, channels: 2, rate: 48000, samples: [0.25, -0.5] });
    const empty = buildWav({ format: 1, bits: 16, channels: 1, rate: 16000, samples: [], after: [{ id: 'LIST', payload: new Uint8Array(4) }] });
    const half = buildWav({ format: 1, bits: 16, channels: 2, rate: 16000, samples: [], declaredDataSize: 0 });
    const partial = concat([half, new Uint8Array([1, 2, 3])]);
    const r1 = await expectSame({ bytes: one, name: 'one.wav' }, [[16, 1], [16, 5]]);
    expect('samples' in r1 && r1.samples.length).toBe(1);
    const r48 = await expectSame({ bytes: one48, name: 'one48.wav' }, [[16, 1]]);
    expect('samples' in r48 && r48.samples.length).toBe(1);
    expect(await expectSame({ bytes: empty, name: 'empty-data.wav' }, [[16, 10]])).toEqual({ error: 'empty-data.wav: no samples (data chunk has 0 bytes, one frame is 2)' });
    expect(await expectSame({ bytes: partial, name: 'partial.wav' }, [[16, 10]])).toMatchObject({ error: expect.stringMatching(/^partial\.wav: no samples/) });
  });
});

describe('damaged files: the stream refuses them with readAudio\'s one line', () => {
  it('truncated at many points, garbled in the middle, in each format', async () => {
    let seed = 7;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    for (const f of ['chirp-stereo-44100.flac', 'chirp-stereo-44100.ogg', 'chirp-stereo-44100.opus', 'chirp-stereo-44100.mp3', 'speech-mono-22050.flac', 'short-last-frame.flac', 'speech-mono-22050.wav']) {
      const b = fs.readFileSync(path.join(AUDIO, f));
      for (const n of new Set([1, 11, 40, 100, ...[0.05, 0.5, 0.9].map((x) => Math.floor(b.length * x)), b.length - 1])) {
        const ref = await expectSame({ bytes: b.subarray(0, n), name: `cut-${n}-${f}` }, [[509, 999]]);
        expect(ref, `cut-${n}-${f}`).toHaveProperty('error');
      }
      const g = Uint8Array.from(b);
      for (let i = Math.floor(b.length * 0.4); i < Math.floor(b.length * 0.6); i++) g[i] = Math.floor(rnd() * 256);
      await expectSame({ bytes: g, name: `garbled-${f}` }, [[509, 999]]);
    }
  });

  it('a NaN late in a long float WAV: the same message, frame counted from the start of the clip', async () => {
    const frames = 50_000;
    const samples = new Float64Array(sineFrames(300, 16000, frames, [0.5]));
    samples[frames - 7] = NaN;
    const bytes = buildWav({ format: 3, bits: 32, channels: 1, rate: 16000, samples });
    const ref = await expectSame({ bytes, name: 'nan-late.wav' }, [[1000, 4000]]);
    expect(ref).toEqual({ error: `nan-late.wav: NaN sample at frame ${frames - 7} (channel 0, t=${((frames - 7) / 16000).toFixed(4)} s)` });
  });

  it('a missing file and a folder, as readAudio says', async () => {
    const missing = path.join(AUDIO, 'nope.flac');
    expect(await streamed(missing, 4096, 100)).toEqual(await whole(missing));
    expect(await streamed(AUDIO, 4096, 100)).toEqual(await whole(AUDIO));
    expect((await whole(AUDIO) as { error: string }).error).toMatch(/cannot read \(EISDIR\)/);
  });
});

describe('files are read a block at a time', () => {
  let tmp: string;
  let long: string;
  let ref: Float32Array;
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-stream-'));
    long = path.join(tmp, 'long-44k-stereo.wav');
    const rate = 44100;
    const frames = rate * 12 + 17;
    fs.writeFileSync(long, buildWav({ format: 1, bits: 16, channels: 2, rate, samples: sineFrames(220, rate, frames, [0.4, 0.3]) }));
    ref = (await readAudio(long)).samples;
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('no read of more than one block, however long the file (readSync watched)', async () => {
    const spy = vi.spyOn(fsDefault, 'readSync');
    syncBuiltinESMExports();
    try {
      const got = await streamed(long, 32 * 1024, 16000);
      expect('samples' in got && bits(got.samples).equals(bits(ref))).toBe(true);
      const lengths = spy.mock.calls.map((c) => c[3] as number);
      expect(lengths.length).toBeGreaterThan(60);
      expect(Math.max(...lengths)).toBeLessThanOrEqual(64 * 1024);
      // the data once, plus the header blocks
      expect(lengths.reduce((a, b) => a + b, 0)).toBeLessThan(fs.statSync(long).size + 2 * 64 * 1024);
    } finally {
      spy.mockRestore();
      syncBuiltinESMExports();
    }
  });

  it('openClip: a short clip in one pass; a long one window by window in order, windows skipped, each exactly readAudio\'s slice', async () => {
    const short = await openClip(path.join(AUDIO, 'speech-mono-22050.mp3'), 64000);
    const shortRef = (await readAudio(path.join(AUDIO, 'speech-mono-22050.mp3'))).samples;
    expect(short.length).toBe(shortRef.length);
    expect(bits(await short.window(0, short.length)).equals(bits(shortRef))).toBe(true);
    short.close();

    const W = 40000;
    const clip = await openClip(long, W);
    expect(clip.length).toBe(ref.length);
    expect(clip.info).toMatchObject({ format: 'wav', originalRate: 44100, channels: 2, bitDepth: '16' });
    const ranges: [number, number][] = [
      [0, W],
      [W, 2 * W],
      [3 * W + 5, 4 * W],
      [4 * W, ref.length],
    ];
    for (const [from, to] of ranges) expect(bits(await clip.window(from, to)).equals(bits(ref.subarray(from, to))), `[${from}, ${to})`).toBe(true);
    await expect(clip.window(0, 10)).rejects.toThrow(RangeError);
    clip.close();
  });

  it('openClip on a long damaged file refuses it before any window, with readAudio\'s message', async () => {
    const frames = 16000 * 9;
    const samples = new Float64Array(sineFrames(300, 16000, frames, [0.5]));
    samples[frames - 3] = Infinity;
    const f = path.join(tmp, 'inf-late.wav');
    fs.writeFileSync(f, buildWav({ format: 3, bits: 32, channels: 1, rate: 16000, samples }));
    const ref = (await whole(f)) as { error: string };
    expect(ref.error).toMatch(/infinite sample at frame/);
    await expect(openClip(f, 16000)).rejects.toThrow(ref.error);
    // a compressed clip longer than the window, cut short: refused at open
    const b = fs.readFileSync(path.join(AUDIO, 'speech-mono-22050.flac'));
    const cut = path.join(tmp, 'cut.flac');
    fs.writeFileSync(cut, b.subarray(0, Math.floor(b.length * 0.7)));
    const cutRef = (await whole(cut)) as { error: string };
    expect(cutRef.error).toMatch(/FLAC: /);
    await expect(openClip(cut, 1000)).rejects.toThrow(cutRef.error);
  });
});
