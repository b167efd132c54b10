// Compressed audio (src/audio/decode.ts): FLAC, Ogg Vorbis, Ogg Opus and MP3 at 8–48 kHz, mono and
// stereo, from the committed fixtures of tools/make-audio-fixtures.sh; listing in folders and
// corpora; damaged files refused in one line; `ardgpu ask` on compressed files.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeAudio, readAudio } from '../src/audio/decode.js';
import { isAudioFile, listAudio, readWav } from '../src/audio/wav.js';
import { openClipSource } from '../src/corpus/clips.js';
import { ArdError } from '../src/util/errors.js';
import { tinyModelDir } from './tiny-model.js';
import { runCli } from './helpers.js';

const DIR = path.join(import.meta.dirname, 'fixtures', 'audio');
const fixture = (f: string) => path.join(DIR, f);

const SOURCES: { base: string; rate: number; channels: number; seconds: number }[] = [
  ...[8000, 22050, 44100, 48000].map((rate) => ({ base: `chirp-mono-${rate}`, rate, channels: 1, seconds: 0.3 })),
  ...[8000, 44100, 48000].map((rate) => ({ base: `chirp-stereo-${rate}`, rate, channels: 2, seconds: 0.3 })),
  { base: 'speech-mono-22050', rate: 22050, channels: 1, seconds: 0.6 },
];
const LOSSY = [
  { ext: 'ogg', format: 'vorbis' },
  { ext: 'opus', format: 'opus' },
  { ext: 'mp3', format: 'mp3' },
] as const;

/** Best alignment of b against a within ±maxLag samples: the lag, correlation and SNR (dB) there. */
function compare(a: Float32Array, b: Float32Array, maxLag = 8) {
  let best = { lag: 0, corr: -2, snr: -Infinity };
  for (let lag = -maxLag; lag <= maxLag; lag++) {
    let ab = 0, aa = 0, bb = 0, err = 0;
    for (let i = 0; i < a.length; i++) {
      const j = i + lag;
      const v = j >= 0 && j < b.length ? b[j]! : 0;
      ab += a[i]! * v;
      aa += a[i]! * a[i]!;
      bb += v * v;
      err += (a[i]! - v) ** 2;
    }
    const corr = ab / Math.sqrt(aa * bb);
    if (corr > best.corr) best = { lag, corr, snr: 10 * Math.log10(aa / err) };
  }
  return best;
}

describe('compressed audio: decoding', () => {
  it('FLAC decodes exactly to its source WAV (lossless: every 16-bit sample, so the 16 kHz output is identical)', async () => {
    for (const base of ['chirp-mono-8000', 'chirp-mono-22050', 'chirp-stereo-8000', 'speech-mono-22050']) {
      const wav = readWav(fixture(`${base}.wav`));
      const flac = await readAudio(fixture(`${base}.flac`));
      expect(flac.format).toBe('flac');
      expect(flac.originalRate).toBe(wav.originalRate);
      expect(flac.channels).toBe(wav.channels);
      expect(flac.bitDepth).toBe('16');
      expect(flac.samples.length).toBe(wav.samples.length);
      expect(Array.from(flac.samples)).toEqual(Array.from(wav.samples));
    }
  });

  it('FLAC whose last frame is short and silent decodes whole (the decoder dropped it at the end of its input)', async () => {
    const wav = readWav(fixture('short-last-frame.wav'));
    const flac = await readAudio(fixture('short-last-frame.flac'));
    expect(wav.samples.length).toBe(9895);
    expect(flac.samples.length).toBe(wav.samples.length);
    expect(Array.from(flac.samples)).toEqual(Array.from(wav.samples));
  });

  it('every source at every rate and channel count: rate, channels and duration as written', async () => {
    for (const s of SOURCES) {
      for (const ext of ['flac', 'ogg', 'opus', 'mp3']) {
        const a = await readAudio(fixture(`${s.base}.${ext}`));
        expect(a.sampleRate, `${s.base}.${ext}`).toBe(16000);
        // Ogg Opus always decodes at 48 kHz (the input rate is only a note in its header)
        expect(a.originalRate, `${s.base}.${ext}`).toBe(ext === 'opus' ? 48000 : s.rate);
        expect(a.channels, `${s.base}.${ext}`).toBe(s.channels);
        // Encoder delay and padding are removed (Ogg granule positions, the LAME tag), so the length is the source's.
        expect(a.samples.length, `${s.base}.${ext}`).toBe(Math.round(s.seconds * 16000));
      }
    }
  });

  // Lossy codecs keep the waveform, not the bits. The bounds are set below what these files give
  // (measured: correlation ≥ 0.983, SNR ≥ 14.7 dB at ≥ 24 kbit/s per channel) and far above what
  // a mistake gives: one channel dropped, a wrong rate (the chirp is then at other frequencies), or
  // an offset of a few milliseconds each drop the correlation of a 200–3000 Hz chirp or of speech
  // to near 0.
  it('Ogg Vorbis, Ogg Opus and MP3 match the lossless decode of the same source (aligned, correlation ≥ 0.97, SNR ≥ 12 dB)', async () => {
    for (const s of SOURCES) {
      const ref = (await readAudio(fixture(`${s.base}.flac`))).samples;
      for (const { ext, format } of LOSSY) {
        const a = await readAudio(fixture(`${s.base}.${ext}`));
        expect(a.format).toBe(format);
        const c = compare(ref, a.samples);
        const what = `${s.base}.${ext}: lag ${c.lag}, correlation ${c.corr.toFixed(4)}, SNR ${c.snr.toFixed(1)} dB`;
        expect(Math.abs(c.lag), what).toBeLessThanOrEqual(2);
        expect(c.corr, what).toBeGreaterThanOrEqual(0.97);
        expect(c.snr, what).toBeGreaterThanOrEqual(12);
      }
    }
  });

  it('stereo is averaged to mono: the right channel\'s 440 Hz tone is in the mono signal', async () => {
    const mono = (await readAudio(fixture('chirp-mono-44100.flac'))).samples;
    const stereo = (await readAudio(fixture('chirp-stereo-44100.flac'))).samples;
    // (L + R) / 2 with L the mono chirp: the difference is R / 2 minus half the chirp
    const c = compare(mono, stereo, 0);
    expect(c.corr).toBeGreaterThan(0.3);
    expect(c.corr).toBeLessThan(0.9);
  });

  it('the format comes from the content: a FLAC named .wav, an MP3 behind an ID3v2 tag', async () => {
    const named = await readAudio(fixture('flac-named.wav'));
    expect(named.format).toBe('flac');
    expect(Array.from(named.samples)).toEqual(Array.from(readWav(fixture('chirp-mono-22050.wav')).samples));
    const tagged = await readAudio(fixture('id3-chirp-22050.mp3'));
    expect(tagged.format).toBe('mp3');
    expect(fs.readFileSync(fixture('id3-chirp-22050.mp3')).subarray(0, 3).toString()).toBe('ID3');
    expect(compare(named.samples, tagged.samples).corr).toBeGreaterThanOrEqual(0.97);
    const wav = await readAudio(fixture('chirp-mono-8000.wav'));
    expect(wav.format).toBe('wav');
  });
});

describe('compressed audio: damaged files are refused in one line naming the file', () => {
  const expectRefused = async (bytes: Uint8Array, name: string, why?: RegExp) => {
    const before = console.error;
    let err: unknown;
    try {
      await decodeAudio(bytes, name);
    } catch (e) {
      err = e;
    }
    expect(console.error).toBe(before); // the decoders' own printing is put back
    expect(err, `${name} (${bytes.length} bytes) was decoded`).toBeInstanceOf(ArdError);
    const msg = (err as Error).message;
    expect(msg.startsWith(`${name}: `), msg).toBe(true);
    expect(msg).not.toMatch(/\n/);
    expect(msg).not.toMatch(/undefined|TypeError|RangeError|memory access|out of bounds|Cannot read/);
    if (why) expect(msg).toMatch(why);
  };

  it('truncated at many points, in each format', async () => {
    for (const f of ['chirp-stereo-44100.flac', 'chirp-stereo-44100.ogg', 'chirp-stereo-44100.opus', 'chirp-stereo-44100.mp3', 'speech-mono-22050.flac', 'speech-mono-22050.ogg', 'speech-mono-22050.opus', 'speech-mono-22050.mp3', 'chirp-mono-8000.mp3']) {
      const b = fs.readFileSync(fixture(f));
      const cuts = new Set([1, 3, 11, 40, 100, ...[0.05, 0.3, 0.5, 0.9].map((x) => Math.floor(b.length * x)), b.length - 1]);
      for (const n of cuts) await expectRefused(b.subarray(0, n), `cut-${n}-${f}`);
    }
  });

  it('a truncated file says so', async () => {
    const cut = (f: string) => {
      const b = fs.readFileSync(fixture(f));
      return b.subarray(0, Math.floor(b.length * 0.6));
    };
    await expectRefused(cut('chirp-mono-48000.flac'), 'a.flac', /FLAC: truncated/);
    await expectRefused(cut('chirp-mono-48000.ogg'), 'a.ogg', /Ogg Vorbis: truncated/);
    await expectRefused(cut('chirp-mono-48000.opus'), 'a.opus', /Ogg Opus: truncated/);
    await expectRefused(cut('chirp-mono-48000.mp3'), 'a.mp3', /MP3: truncated/);
  });

  it('bytes garbled in the middle, in each format', async () => {
    let seed = 7;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    for (const ext of ['flac', 'ogg', 'opus', 'mp3']) {
      const b = Uint8Array.from(fs.readFileSync(fixture(`chirp-stereo-44100.${ext}`)));
      for (let i = Math.floor(b.length * 0.4); i < Math.floor(b.length * 0.6); i++) b[i] = Math.floor(rnd() * 256);
      await expectRefused(b, `garbled.${ext}`);
    }
  });

  it('random bytes and empty files under each extension', async () => {
    let seed = 11;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    for (const ext of ['wav', 'flac', 'ogg', 'oga', 'opus', 'mp3']) {
      await expectRefused(new Uint8Array(4000).map(() => Math.floor(rnd() * 256)), `random.${ext}`, /not (a|an) |unknown codec/);
      await expectRefused(new Uint8Array(0), `empty.${ext}`, /empty file/);
    }
    // an Ogg stream of a codec ardgpu does not decode
    const speex = Uint8Array.from(fs.readFileSync(fixture('chirp-mono-8000.ogg')));
    const at = 27 + speex[26]!;
    speex.set(Buffer.from('Speex   '), at);
    await expectRefused(speex, 'speex.ogg', /unsupported Ogg codec Speex/);
  });

  it('a missing file', async () => {
    await expect(readAudio(path.join(DIR, 'nope.flac'))).rejects.toThrow(/nope\.flac: cannot read \(ENOENT\)/);
  });
});

describe('compressed audio: listing', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-codecs-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('isAudioFile and listAudio take every supported extension, any case, and nothing else', () => {
    const dir = path.join(tmp, 'plain');
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    const names = ['a.wav', 'b.FLAC', 'c.ogg', 'd.oga', 'sub/e.opus', 'f.Mp3'];
    for (const n of names) fs.writeFileSync(path.join(dir, n), '');
    for (const n of ['notes.txt', 'x.m4a', '.hidden.flac']) fs.writeFileSync(path.join(dir, n), '');
    expect(listAudio(dir).map((f) => path.relative(dir, f)).sort()).toEqual([...names].sort());
    expect(isAudioFile('x.opus')).toBe(true);
    expect(isAudioFile('x.aac')).toBe(false);
  });

  it('a folder of compressed clips and a folder per class are read as corpora, ids without the extension', async () => {
    const plain = path.join(tmp, 'corpus');
    fs.mkdirSync(plain);
    for (const f of ['chirp-mono-8000.flac', 'chirp-mono-8000.opus', 'speech-mono-22050.mp3']) fs.copyFileSync(fixture(f), path.join(plain, f.replace('chirp-mono-8000.opus', 'other.opus')));
    const src = openClipSource(plain);
    expect(src.layout).toBe('wav-folder');
    const clips = src.clips();
    expect(clips.map((c) => c.id).sort()).toEqual(['chirp-mono-8000', 'other', 'speech-mono-22050']);
    for (const c of clips) expect((await readAudio(c.file)).samples.length).toBeGreaterThan(0);

    const classes = path.join(tmp, 'classes');
    for (const [cls, f] of [['chirp', 'chirp-stereo-48000.ogg'], ['speech', 'speech-mono-22050.opus']]) {
      fs.mkdirSync(path.join(classes, cls!), { recursive: true });
      fs.copyFileSync(fixture(f!), path.join(classes, cls!, f!));
    }
    const cs = openClipSource(classes);
    expect(cs.layout).toBe('class-folders');
    expect(cs.clips().map((c) => [c.id, c.labels]).sort()).toEqual([
      ['chirp/chirp-stereo-48000', ['chirp']],
      ['speech/speech-mono-22050', ['speech']],
    ]);
  });
});


describe('compressed audio: the CLI', () => {
  let model: string;
  let tmp: string;
  beforeAll(() => {
    model = tinyModelDir();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-codecs-cli-'));
  });
  afterAll(() => {
    fs.rmSync(model, { recursive: true, force: true });
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('ardgpu ask answers about a FLAC and an Ogg Opus file', () => {
    for (const f of ['speech-mono-22050.flac', 'chirp-stereo-48000.opus']) {
      const r = runCli(['ask', fixture(f), '--model', model, '--max-tokens', '3', '--json']);
      expect(r.code, r.stderr.join('\n')).toBe(0);
      expect(r.stderr).toEqual([]);
      const j = JSON.parse(r.stdout);
      expect(typeof j.answer).toBe('string');
      expect(j.tokens).toBeGreaterThan(0);
    }
  });

  it('ardgpu ask on a truncated MP3: exit 1, one line naming the file', () => {
    const b = fs.readFileSync(fixture('chirp-mono-44100.mp3'));
    const bad = path.join(tmp, 'cut.mp3');
    fs.writeFileSync(bad, b.subarray(0, Math.floor(b.length / 2)));
    const r = runCli(['ask', bad, '--model', model]);
    expect(r.code).toBe(1);
    expect(r.stderr).toHaveLength(1);
    expect(r.stderr[0]).toMatch(/^error: .*cut\.mp3: MP3: truncated/);
  });
});
