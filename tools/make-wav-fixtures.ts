// Writes the small WAV fixtures in test/fixtures/wav/ (good files in every supported encoding, and
// damaged ones). The bytes are assembled here by hand, independently of src/audio/wav.ts and of
// wavefile, so the tests do not check the reader against itself.
//
//   npx tsx tools/make-wav-fixtures.ts [outDir]
//
// test/audio.test.ts also imports `wavFixtures()` to check the committed files are current.

import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeFileAtomic } from '../src/util/fs.js';

export interface WavSpec {
  /** Format code written in fmt (1 PCM, 3 float, 6 A-law, ...). */
  format: number;
  bits: number;
  channels: number;
  rate: number;
  /** Interleaved samples in [-1, 1] for PCM/float; raw byte values for other codes. */
  samples: ArrayLike<number>;
  /** Write WAVE_FORMAT_EXTENSIBLE (0xFFFE) with `format` as the subformat. */
  extensible?: boolean;
  /** Extra chunks before / after the data chunk. */
  before?: { id: string; payload: Uint8Array }[];
  after?: { id: string; payload: Uint8Array }[];
  /** Override the data chunk's declared size. */
  declaredDataSize?: number;
  /** Override the RIFF header's size field (streaming writers leave 0 or 0xFFFFFFFF). */
  riffSize?: number;
  /** Leave out the pad byte after odd-sized chunks, as some writers do. */
  noPad?: boolean;
  /** Omit the fmt or data chunk. */
  noFmt?: boolean;
  noData?: boolean;
}

const GUID_TAIL = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];

export function ascii(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

/** One RIFF chunk: id, declared size, payload, and the pad byte after an odd-sized payload. */
export function chunk(id: string, payload: Uint8Array, declared = payload.length, pad = true): Uint8Array {
  const padBytes = pad ? payload.length & 1 : 0;
  const out = new Uint8Array(8 + payload.length + padBytes);
  out.set(ascii(id), 0);
  new DataView(out.buffer).setUint32(4, declared, true);
  out.set(payload, 8);
  return out;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function encodeSamples(spec: WavSpec): Uint8Array {
  const { format, bits, samples } = spec;
  const bytes = bits / 8;
  const out = new Uint8Array(samples.length * bytes);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i];
    const at = i * bytes;
    if (format === 3 && (bits === 32 || bits === 64)) {
      if (bits === 32) dv.setFloat32(at, v, true);
      else dv.setFloat64(at, v, true);
    } else if (format === 1 && [8, 16, 24, 32].includes(bits)) {
      const full = 2 ** (bits - 1);
      const q = Math.max(-full, Math.min(full - 1, Math.round(v * full)));
      if (bits === 8) dv.setUint8(at, q + 128);
      else if (bits === 16) dv.setInt16(at, q, true);
      else if (bits === 24) {
        const u = q & 0xffffff;
        out[at] = u & 0xff;
        out[at + 1] = (u >> 8) & 0xff;
        out[at + 2] = (u >> 16) & 0xff;
      } else dv.setInt32(at, q, true);
    } else {
      out[Math.floor(at)] = v & 0xff; // other encodings: raw bytes (only the header matters)
    }
  }
  return out;
}

export function buildWav(spec: WavSpec): Uint8Array {
  const { format, bits, channels, rate } = spec;
  const blockAlign = (channels * bits) / 8;
  const fmtBody = new Uint8Array(spec.extensible ? 40 : 16);
  const f = new DataView(fmtBody.buffer);
  f.setUint16(0, spec.extensible ? 0xfffe : format, true);
  f.setUint16(2, channels, true);
  f.setUint32(4, rate, true);
  f.setUint32(8, rate * blockAlign, true);
  f.setUint16(12, blockAlign, true);
  f.setUint16(14, bits, true);
  if (spec.extensible) {
    f.setUint16(16, 22, true); // cbSize
    f.setUint16(18, bits, true); // valid bits
    f.setUint32(20, (1 << channels) - 1, true); // channel mask: the first `channels` speakers
    f.setUint16(24, format, true);
    fmtBody.set(GUID_TAIL, 26);
  }
  const data = encodeSamples(spec);
  const pad = !spec.noPad;
  const parts: Uint8Array[] = [];
  if (!spec.noFmt) parts.push(chunk('fmt ', fmtBody));
  for (const c of spec.before ?? []) parts.push(chunk(c.id, c.payload, c.payload.length, pad));
  if (!spec.noData) parts.push(chunk('data', data, spec.declaredDataSize ?? data.length, pad));
  for (const c of spec.after ?? []) parts.push(chunk(c.id, c.payload, c.payload.length, pad));
  const body = concat(parts);
  const head = new Uint8Array(12);
  head.set(ascii('RIFF'), 0);
  new DataView(head.buffer).setUint32(4, spec.riffSize ?? 4 + body.length, true);
  head.set(ascii('WAVE'), 8);
  return concat([head, body]);
}

/**
 * `channels` × `frames` interleaved samples: channel c is amps[c]·sin(2πft) + dc[c].
 * Phase offset 0.3 rad so no sample sits on a zero crossing.
 */
export function sineFrames(freq: number, rate: number, frames: number, amps: number[], dc: number[] = []): Float64Array {
  const c = amps.length;
  const out = new Float64Array(frames * c);
  for (let i = 0; i < frames; i++) {
    const s = Math.sin((2 * Math.PI * freq * i) / rate + 0.3);
    for (let k = 0; k < c; k++) out[i * c + k] = amps[k] * s + (dc[k] ?? 0);
  }
  return out;
}

/** What each good fixture holds: the mono mix is `amp`·sin(2π·freq·t + 0.3). */
export interface GoodFixture {
  rate: number;
  channels: number;
  frames: number;
  freq: number;
  amp: number;
  bitDepth: string;
}

export const GOOD: Record<string, GoodFixture> = {
  'pcm8.wav': { rate: 8000, channels: 1, frames: 2001, freq: 500, amp: 0.5, bitDepth: '8' },
  'pcm16-stereo-44k.wav': { rate: 44100, channels: 2, frames: 1764, freq: 1000, amp: 0.4, bitDepth: '16' },
  'pcm24-22k.wav': { rate: 22050, channels: 1, frames: 2205, freq: 1500, amp: 0.7, bitDepth: '24' },
  'pcm32.wav': { rate: 16000, channels: 1, frames: 1600, freq: 2000, amp: 0.9, bitDepth: '32' },
  'float32-48k.wav': { rate: 48000, channels: 1, frames: 1440, freq: 3000, amp: 0.5, bitDepth: '32f' },
  'float64.wav': { rate: 32000, channels: 1, frames: 640, freq: 2500, amp: 1.0, bitDepth: '64' },
  'extensible-6ch.wav': { rate: 16000, channels: 6, frames: 320, freq: 1000, amp: 0.3, bitDepth: '32f' },
  'extensible-pcm24-4ch.wav': { rate: 8000, channels: 4, frames: 480, freq: 700, amp: 0.25, bitDepth: '24' },
};

/** A LIST chunk of the given form type ('INFO', 'adtl') holding the given sub-chunks. */
export function listChunk(form: string, subChunks: { id: string; payload: Uint8Array }[]): { id: string; payload: Uint8Array } {
  return { id: 'LIST', payload: concat([ascii(form), ...subChunks.map((c) => chunk(c.id, c.payload))]) };
}

/**
 * The file from the bug report that wavefile could not read: 16 kHz mono 16-bit PCM with, between
 * fmt and data, a LIST/INFO chunk, a 27-byte JUNK chunk (plus its pad byte) and a LIST/adtl chunk
 * (a cue label). Its mono mix is ISSUE_FIXTURE.amp·sin(2π·freq·t + 0.3).
 */
export const ISSUE_FIXTURE = { name: 'riff-list-junk-adtl.wav', rate: 16000, frames: 1600, freq: 440, amp: 0.5 };

export function issueWav(): Uint8Array {
  const z = ISSUE_FIXTURE;
  const label = concat([Uint8Array.of(1, 0, 0, 0), ascii('first word\0')]); // cue point id 1, then a C string
  return buildWav({
    format: 1,
    bits: 16,
    channels: 1,
    rate: z.rate,
    samples: sineFrames(z.freq, z.rate, z.frames, [z.amp]),
    before: [
      listChunk('INFO', [
        { id: 'INAM', payload: ascii('Test clip\0') },
        { id: 'ISFT', payload: ascii('Lavf60.16.100\0') }, // 14 bytes
      ]),
      { id: 'JUNK', payload: new Uint8Array(27) },
      listChunk('adtl', [{ id: 'labl', payload: label }]),
    ],
  });
}

/** Every fixture file name → bytes. */
export function wavFixtures(): Record<string, Uint8Array> {
  const g = GOOD;
  const comment = (text: string) => listChunk('INFO', [{ id: 'ICMT', payload: ascii(text) }]);
  const files: Record<string, Uint8Array> = {};
  const mono = (name: string, format: number, extra: Partial<WavSpec> = {}) => {
    const s = g[name];
    files[name] = buildWav({
      format,
      bits: s.bitDepth === '32f' ? 32 : Number(s.bitDepth),
      channels: 1,
      rate: s.rate,
      samples: sineFrames(s.freq, s.rate, s.frames, [s.amp]),
      ...extra,
    });
  };
  // Odd-sized data chunk (pad byte) followed by a LIST chunk.
  mono('pcm8.wav', 1, { after: [comment('odd data size')] });
  {
    const s = g['pcm16-stereo-44k.wav'];
    // Channels differ so that taking one channel, or summing, gives the wrong amplitude; opposite
    // DC offsets cancel only in the average. A LIST chunk sits between fmt and data.
    files['pcm16-stereo-44k.wav'] = buildWav({
      format: 1,
      bits: 16,
      channels: 2,
      rate: s.rate,
      samples: sineFrames(s.freq, s.rate, s.frames, [0.6, 0.2], [0.1, -0.1]),
      before: [comment('chunk before data')],
    });
  }
  mono('pcm24-22k.wav', 1); // 2205 × 3 bytes: odd data size again
  mono('pcm32.wav', 1);
  mono('float32-48k.wav', 3, { before: [{ id: 'fact', payload: new Uint8Array([0xa0, 0x05, 0, 0]) }] });
  mono('float64.wav', 3);
  {
    const s = g['extensible-6ch.wav'];
    files['extensible-6ch.wav'] = buildWav({
      format: 3,
      bits: 32,
      channels: 6,
      rate: s.rate,
      extensible: true,
      samples: sineFrames(s.freq, s.rate, s.frames, [0.9, 0.3, 0.3, 0.3, 0, 0], [0.2, -0.2, 0.1, -0.1, 0.05, -0.05]),
    });
  }
  {
    const s = g['extensible-pcm24-4ch.wav'];
    files['extensible-pcm24-4ch.wav'] = buildWav({
      format: 1,
      bits: 24,
      channels: 4,
      rate: s.rate,
      extensible: true,
      samples: sineFrames(s.freq, s.rate, s.frames, [0.4, 0.1, 0.5, 0.0]),
    });
  }

  // Damaged files.
  const pcm16 = (frames: number, extra: Partial<WavSpec> = {}) =>
    buildWav({ format: 1, bits: 16, channels: 1, rate: 16000, samples: sineFrames(440, 16000, frames, [0.5]), ...extra });
  files['not-riff.wav'] = ascii('this is a text file, not audio\n');
  files['truncated-header.wav'] = pcm16(100).slice(0, 30); // cut inside the fmt chunk
  files['truncated-data.wav'] = pcm16(1600).slice(0, 44 + 1000); // header says 3200 data bytes
  files['zero-samples.wav'] = pcm16(0);
  {
    const x = sineFrames(440, 16000, 400, [0.5]);
    x[100] = NaN;
    files['nan-samples.wav'] = buildWav({ format: 3, bits: 32, channels: 1, rate: 16000, samples: x });
    const y = sineFrames(440, 16000, 200, [0.5, 0.5]);
    y[50 * 2 + 1] = Infinity; // frame 50, channel 1
    files['inf-samples.wav'] = buildWav({ format: 3, bits: 32, channels: 2, rate: 16000, samples: y });
  }
  files['alaw.wav'] = buildWav({
    format: 6,
    bits: 8,
    channels: 1,
    rate: 8000,
    samples: Array.from({ length: 800 }, (_, i) => (i * 37) & 0xff),
  });
  files['empty.wav'] = new Uint8Array(0);
  files['no-fmt.wav'] = pcm16(100, { noFmt: true });
  files['no-data.wav'] = pcm16(100, { noData: true, after: [comment('no data here')] });
  files[ISSUE_FIXTURE.name] = issueWav();
  return files;
}

function main(): void {
  const outDir = process.argv[2] ?? path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'test', 'fixtures', 'wav');
  const files = wavFixtures();
  let total = 0;
  for (const [name, bytes] of Object.entries(files)) {
    writeFileAtomic(path.join(outDir, name), bytes);
    total += bytes.length;
  }
  console.log(`wrote ${Object.keys(files).length} files (${total} bytes) to ${outDir}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) main();
