// WAV files as real writers produce them, read by the RIFF rules: chunks in any order, odd sizes and
// their pad bytes, unknown chunks, streaming sizes (0 / 0xFFFFFFFF), wrong RIFF sizes,
// WAVE_FORMAT_EXTENSIBLE with every sub-format ardgpu decodes. And every refusal is one ArdError
// line naming the file, never an internal JavaScript message. The files are assembled byte by byte
// by tools/make-wav-fixtures.ts, independently of src/audio/wav.ts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeWav, decodeWavMono, readWav } from '../src/audio/wav.js';
import { ArdError } from '../src/util/errors.js';
import { mulberry32 } from '../src/util/random.js';
import {
  ISSUE_FIXTURE,
  type WavSpec,
  ascii,
  buildWav,
  chunk,
  concat,
  issueWav,
  listChunk,
  sineFrames,
} from '../tools/make-wav-fixtures.js';

const WAV_DIR = path.join(import.meta.dirname, 'fixtures', 'wav');

/** What an internal JavaScript error looks like when it leaks into a message. */
const INTERNAL = /undefined|Cannot read|is not a|Invalid typed array|out of bounds|Offset is outside|RangeError|TypeError|NaN\b(?! sample)/;

function expectRefusal(fn: () => unknown, name: string, ...phrases: (string | RegExp)[]): string {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `${name}: expected an ArdError`).toBeInstanceOf(ArdError);
  const msg = (caught as ArdError).message;
  expect(msg.startsWith(`${name}: `), msg).toBe(true);
  expect(msg).not.toContain('\n');
  expect(msg).not.toMatch(INTERNAL);
  for (const p of phrases) {
    if (typeof p === 'string') expect(msg).toContain(p);
    else expect(msg).toMatch(p);
  }
  return msg;
}

// 16 kHz mono 16-bit, 800 frames: the reference every rearranged file must decode to.
const TONE = sineFrames(440, 16000, 800, [0.5]);
const pcm16 = (extra: Partial<WavSpec> = {}) => buildWav({ format: 1, bits: 16, channels: 1, rate: 16000, samples: TONE, ...extra });
const REF = Array.from(decodeWavMono(pcm16(), 'ref.wav').samples);

/** The file's chunks after the 12-byte RIFF header, as [id, whole chunk bytes incl. pad]. */
function chunksOf(b: Uint8Array): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let p = 12; p + 8 <= b.length; ) {
    const size = dv.getUint32(p + 4, true);
    const end = p + 8 + size + (size & 1);
    out.push([String.fromCharCode(...b.subarray(p, p + 4)), b.subarray(p, end)]);
    p = end;
  }
  return out;
}

function riff(parts: Uint8Array[], riffSize?: number): Uint8Array {
  const body = concat(parts);
  const head = concat([ascii('RIFF'), new Uint8Array(4), ascii('WAVE')]);
  new DataView(head.buffer).setUint32(4, riffSize ?? 4 + body.length, true);
  return concat([head, body]);
}

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}

describe('WAV by the RIFF rules: files that must be read', () => {
  it('the file from the bug report (LIST/INFO, 27-byte JUNK + pad, LIST/adtl between fmt and data)', () => {
    const bytes = issueWav();
    const ids = chunksOf(bytes).map(([id]) => id);
    expect(ids).toEqual(['fmt ', 'LIST', 'JUNK', 'LIST', 'data']);
    const junk = chunksOf(bytes)[2][1];
    expect(new DataView(junk.buffer, junk.byteOffset).getUint32(4, true)).toBe(27);
    expect(junk.length).toBe(8 + 27 + 1); // the pad byte is there

    // The committed fixture is this file, and readWav reads it.
    const file = path.join(WAV_DIR, ISSUE_FIXTURE.name);
    expect(Buffer.compare(fs.readFileSync(file), Buffer.from(bytes))).toBe(0);
    const a = readWav(file);
    expect(a.channels).toBe(1);
    expect(a.originalRate).toBe(16000);
    expect(a.bitDepth).toBe('16');
    expect(a.samples.length).toBe(ISSUE_FIXTURE.frames);
    const z = ISSUE_FIXTURE;
    for (let i = 0; i < z.frames; i++) {
      expect(Math.abs(a.samples[i] - z.amp * Math.sin((2 * Math.PI * z.freq * i) / z.rate + 0.3))).toBeLessThan(1 / 32768);
    }
  });

  it('any order of fmt, data, LIST/INFO, LIST/adtl and odd-sized unknown chunks', () => {
    const base = chunksOf(pcm16());
    const fmt = base.find(([id]) => id === 'fmt ')![1];
    const data = base.find(([id]) => id === 'data')![1];
    const others = [
      chunk('LIST', listChunk('INFO', [{ id: 'ICMT', payload: ascii('odd comment') }]).payload),
      chunk('LIST', listChunk('adtl', [{ id: 'note', payload: concat([Uint8Array.of(2, 0, 0, 0), ascii('n\0')]) }]).payload),
      chunk('JUNK', new Uint8Array(27)),
      chunk('bext', new Uint8Array(13).fill(0x41)), // an unknown chunk to ardgpu, odd size
    ];
    let n = 0;
    for (const order of permutations([fmt, data, ...others.slice(0, 2)])) {
      expect(Array.from(decodeWavMono(riff(order), 'p.wav').samples)).toEqual(REF);
      n++;
    }
    for (const order of permutations([fmt, data, ...others.slice(2)])) {
      expect(Array.from(decodeWavMono(riff(order), 'p.wav').samples)).toEqual(REF);
      n++;
    }
    expect(n).toBe(48);
    // Two data or fmt chunks: the first is used.
    const other = chunksOf(pcm16({ samples: TONE.map((v) => -v) })).find(([id]) => id === 'data')![1];
    expect(Array.from(decodeWavMono(riff([fmt, data, other]), 'two.wav').samples)).toEqual(REF);
  });

  it('odd-sized data (8-bit, odd frame count) with its pad byte, then more chunks', () => {
    const x = sineFrames(500, 8000, 801, [0.5]);
    const w = buildWav({ format: 1, bits: 8, channels: 1, rate: 8000, samples: x, after: [{ id: 'id3 ', payload: new Uint8Array(9) }] });
    expect(chunksOf(w).map(([id]) => id)).toEqual(['fmt ', 'data', 'id3 ']);
    const m = decodeWavMono(w, 'odd.wav');
    expect(m.frames).toBe(801); // the pad byte is not a sample
  });

  it('odd-sized chunks whose writer left out the pad byte', () => {
    const before = [
      { id: 'JUNK', payload: new Uint8Array(27) },
      listChunk('INFO', [{ id: 'ISFT', payload: ascii('abc\0') }]),
      { id: 'odd1', payload: new Uint8Array(5).fill(0x7a) },
    ];
    const w = pcm16({ before, noPad: true });
    expect(w.length).toBe(pcm16({ before }).length - 2); // two odd chunks, no pad bytes
    expect(Array.from(decodeWavMono(w, 'nopad.wav').samples)).toEqual(REF);
  });

  it('streaming writers: data size 0 or 0xFFFFFFFF means "to the end of the file"; RIFF size 0 or 0xFFFFFFFF', () => {
    for (const declared of [0, 0xffffffff]) {
      for (const riffSize of [0, 0xffffffff]) {
        const w = pcm16({ declaredDataSize: declared, riffSize, before: [listChunk('INFO', [{ id: 'ISFT', payload: ascii('ffmpeg\0') }])] });
        expect(Array.from(decodeWavMono(w, 's.wav').samples), `${declared} ${riffSize}`).toEqual(REF);
      }
    }
    // A data chunk that really is empty stays empty: one followed by another chunk, or at the end.
    const empty = buildWav({ format: 1, bits: 16, channels: 1, rate: 16000, samples: [], after: [listChunk('INFO', [{ id: 'ICMT', payload: ascii('x\0') }])] });
    expectRefusal(() => decodeWav(empty, 'e.wav'), 'e.wav', 'no samples (data chunk has 0 bytes');
    const atEnd = buildWav({ format: 1, bits: 16, channels: 1, rate: 16000, samples: [] });
    expectRefusal(() => decodeWav(atEnd, 'e.wav'), 'e.wav', 'no samples (data chunk has 0 bytes');
  });

  it('RIFF sizes that disagree with the file are tolerated', () => {
    const good = pcm16({ after: [{ id: 'LIST', payload: listChunk('INFO', [{ id: 'ICMT', payload: ascii('tail\0') }]).payload }] });
    const real = good.length - 8;
    for (const riffSize of [0, 4, 36, real - 1, real + 1, real * 3, 0x7fffffff]) {
      const w = good.slice();
      new DataView(w.buffer).setUint32(4, riffSize, true);
      expect(Array.from(decodeWavMono(w, 'r.wav').samples), String(riffSize)).toEqual(REF);
    }
    // Bytes after the RIFF chunk (an appended tag, a stray byte) do not matter either.
    const trailing = concat([good, ascii('TAG'), new Uint8Array(125)]);
    expect(Array.from(decodeWavMono(trailing, 't.wav').samples)).toEqual(REF);
  });

  it('WAVE_FORMAT_EXTENSIBLE with every sub-format decodes exactly like the plain format tag', () => {
    const subFormats: [number, number, string][] = [
      [1, 8, '8'],
      [1, 16, '16'],
      [1, 24, '24'],
      [1, 32, '32'],
      [3, 32, '32f'],
      [3, 64, '64'],
    ];
    const x = sineFrames(700, 22050, 441, [0.6, 0.2, 0.4], [0.05, -0.05, 0]); // 3 channels, odd frame count
    for (const [format, bits, code] of subFormats) {
      const spec = { format, bits, channels: 3, rate: 22050, samples: x, before: [{ id: 'fact', payload: Uint8Array.of(0xb9, 1, 0, 0) }] };
      const plain = decodeWav(buildWav(spec), 'plain.wav');
      const ext = decodeWav(buildWav({ ...spec, extensible: true }), 'ext.wav');
      expect(ext.bitDepth, code).toBe(code);
      expect(ext.channels).toBe(3);
      expect(ext.originalRate).toBe(22050);
      expect(Array.from(ext.samples), code).toEqual(Array.from(plain.samples));
      const m = decodeWavMono(buildWav({ ...spec, extensible: true }), 'ext.wav');
      const tol = bits === 8 ? 1 / 128 : 1e-4;
      for (let i = 0; i < 441; i++) {
        const want = (x[3 * i] + x[3 * i + 1] + x[3 * i + 2]) / 3;
        expect(Math.abs(m.samples[i] - want), `${code} frame ${i}`).toBeLessThan(tol);
      }
    }
  });

  it('a data chunk cut short is refused as before, with the sizes', () => {
    const cut = pcm16({ samples: sineFrames(440, 16000, 1600, [0.5]) }).slice(0, 44 + 1000);
    expectRefusal(() => decodeWav(cut, 'clip.wav'), 'clip.wav', 'truncated data: header says 3200 bytes, file has 1000');
    // The same behind metadata chunks.
    const z = issueWav();
    expectRefusal(() => decodeWav(z.slice(0, z.length - 100), 'clip.wav'), 'clip.wav', `truncated data: header says 3200 bytes, file has 3100`);
  });
});

describe('WAV by the RIFF rules: refusals name the file and the problem', () => {
  const good = pcm16();
  const patch = (b: Uint8Array, at: number, bytes: number[]) => {
    const c = b.slice();
    c.set(bytes, at);
    return c;
  };
  const u16 = (v: number) => [v & 0xff, v >> 8];
  const u32 = (v: number) => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24];
  const cases: [string, Uint8Array, (string | RegExp)[]][] = [
    ['not RIFF', ascii('ID3\x04\x00\x00\x00\x00\x00\x00 an mp3'), ['not a RIFF/WAVE file (starts with "ID3']],
    ['RIFX', patch(good, 0, [0x52, 0x49, 0x46, 0x58]), ['unsupported container RIFX']],
    ['RF64', patch(good, 0, [0x52, 0x46, 0x36, 0x34]), ['unsupported container RF64']],
    ['not WAVE', patch(good, 8, [0x41, 0x56, 0x49, 0x20]), ['RIFF form type "AVI "']],
    ['no fmt', pcm16({ noFmt: true }), ['missing fmt chunk']],
    ['no data', pcm16({ noData: true, after: [listChunk('INFO', [{ id: 'ICMT', payload: ascii('c\0') }])] }), ['missing data chunk']],
    ['short fmt', riff([chunk('fmt ', good.subarray(20, 34)), chunksOf(good)[1][1]]), ['truncated header (fmt chunk has 14 bytes, need at least 16)']],
    ['short extensible fmt', patch(riff([chunk('fmt ', good.subarray(20, 38)), chunksOf(good)[1][1]]), 20, u16(0xfffe)), ['WAVE_FORMAT_EXTENSIBLE fmt chunk has 18 bytes, need 40']],
    ['format tag', patch(good, 20, u16(0x55)), ['unsupported encoding MPEG Layer 3 (format code 85 = 0x0055)']],
    ['bit depth', patch(patch(good, 34, u16(12)), 32, u16(2)), ['unsupported encoding: 12-bit PCM (8, 16, 24 and 32 are read)']],
    ['float depth', patch(patch(good, 20, u16(3)), 34, u16(16)), ['unsupported encoding: 16-bit float (32 and 64 are read)']],
    ['extensible GUID', (() => { const e = buildWav({ format: 1, bits: 16, channels: 1, rate: 16000, samples: TONE, extensible: true }); e[44 + 8] ^= 0xff; return e; })(), ['WAVE_FORMAT_EXTENSIBLE subformat GUID']],
    ['extensible A-law', buildWav({ format: 6, bits: 8, channels: 1, rate: 8000, samples: [1, 2, 3], extensible: true }), ['unsupported encoding A-law', 'in WAVE_FORMAT_EXTENSIBLE']],
    ['zero channels', patch(good, 22, u16(0)), ['invalid fmt chunk: 0 channels']],
    ['zero rate', patch(good, 24, u32(0)), ['invalid fmt chunk: sample rate 0']],
    ['block align', patch(good, 32, u16(3)), ['invalid fmt chunk: block align 3, expected 2 for 1 channel(s) of 16 bits']],
    ['absurd rate', patch(good, 24, u32(0xffffffff)), ['sample rate 4294967295 Hz cannot be resampled to 16000 Hz']],
    ['chunk past the end before data', riff([chunksOf(good)[0][1], concat([ascii('LIST'), Uint8Array.from(u32(5000)), ascii('INFO')]), chunksOf(good)[1][1]]), ['missing data chunk (chunk "LIST" declares 5000 bytes but only']],
    ['cut in a chunk header', good.slice(0, 40), ['missing data chunk (file ends inside a chunk header at byte 36)']],
    ['non-finite sample', buildWav({ format: 3, bits: 32, channels: 1, rate: 16000, samples: [0, NaN, 0] }), ['NaN sample at frame 1']],
  ];
  for (const [what, bytes, phrases] of cases) {
    it(what, () => {
      expectRefusal(() => decodeWav(bytes, `${what}.wav`), `${what}.wav`, ...phrases);
    });
  }

  it('readWav names the path it was given', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-riff-'));
    try {
      const file = path.join(dir, 'bad fmt.wav');
      fs.writeFileSync(file, patch(good, 22, u16(0)));
      expectRefusal(() => readWav(file), file, 'invalid fmt chunk: 0 channels');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('every truncation and random header damage of the bug-report file: decoded, or one ArdError line', () => {
    const base = issueWav();
    const outcome = (b: Uint8Array, what: string) => {
      try {
        decodeWavMono(b, 'f.wav'); // no resampling: a damaged rate must not make this slow
      } catch (e) {
        expect(e, what).toBeInstanceOf(ArdError);
        const msg = (e as Error).message;
        expect(msg.startsWith('f.wav: '), `${what}: ${msg}`).toBe(true);
        expect(msg, what).not.toContain('\n');
        expect(msg, what).not.toMatch(INTERNAL);
        return 'refused';
      }
      return 'read';
    };
    const seen = { read: 0, refused: 0 };
    for (let n = 0; n <= 200; n++) seen[outcome(base.subarray(0, n), `cut at ${n}`)]++;
    const r = mulberry32(22);
    for (let t = 0; t < 3000; t++) {
      const b = base.slice();
      const flips = 1 + Math.floor(r() * 4);
      for (let k = 0; k < flips; k++) b[Math.floor(r() * 176)] = Math.floor(r() * 256); // inside the header chunks
      seen[outcome(b, `trial ${t}`)]++;
    }
    // Both outcomes occur, so the loop exercised the decoder and the refusals.
    expect(seen.read).toBeGreaterThan(100);
    expect(seen.refused).toBeGreaterThan(100);
  });
});
