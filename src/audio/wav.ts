import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArdError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { type ByteView, memoryBytes, u16le, u32le, viewSlice } from './bytes.js';
import { resample } from './resample.js';

// WAV input, read by the RIFF rules: chunks in any order, each padded to an even size, unknown ones
// skipped, the RIFF size ignored (streaming writers leave 0 or 0xFFFFFFFF there). The walk and the
// sample decoding are done here rather than by wavefile, which reads a LIST chunk's sub-chunks up to
// the end of the file instead of the chunk, and so throws a TypeError when a second LIST follows
// (LIST/INFO … LIST/adtl); it also decodes some damaged files silently (truncated data, a pad byte
// taken as a sample, float samples in WAVE_FORMAT_EXTENSIBLE read as integers).

export const TARGET_RATE = 16000;

export interface WavAudio {
  /** Mono samples at 16 kHz (channels averaged, resampled). */
  samples: Float32Array;
  sampleRate: 16000;
  /** Sample rate stored in the file. */
  originalRate: number;
  channels: number;
  /** Seconds: frames in the file / originalRate. */
  duration: number;
  /** Bit-depth code of the stored samples, as wavefile names them: '8', '16', '24', '32', '32f' or '64'. */
  bitDepth: string;
}

const FORMAT_PCM = 1;
const FORMAT_FLOAT = 3;
const FORMAT_EXTENSIBLE = 0xfffe;
// Tail shared by the KSDATAFORMAT_SUBTYPE_* GUIDs whose first two bytes are a plain format code.
const GUID_TAIL = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];

const FORMAT_NAMES: Record<number, string> = {
  0x0002: 'Microsoft ADPCM',
  0x0006: 'A-law',
  0x0007: 'µ-law',
  0x0011: 'IMA ADPCM',
  0x0031: 'GSM 6.10',
  0x0050: 'MPEG',
  0x0055: 'MPEG Layer 3',
  0x00ff: 'AAC',
  0x0161: 'Windows Media Audio',
  0x1610: 'HE-AAC',
  0xf1ac: 'FLAC',
};

export interface Chunk {
  id: string;
  start: number; // first byte of the payload
  size: number; // declared payload size
}

function fourcc(b: ByteView, at: number): string {
  let s = '';
  for (let i = 0; i < 4 && at + i < b.length; i++) {
    const c = b.byte(at + i)!;
    s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return s;
}

function startsWith(b: ByteView, text: string): boolean {
  if (b.length < text.length) return false;
  for (let i = 0; i < text.length; i++) if (b.byte(i) !== text.charCodeAt(i)) return false;
  return true;
}

export interface Layout {
  fmt: Chunk;
  data: Chunk;
  dataBytes: number; // usable payload bytes of the data chunk
}

/** Walk the RIFF chunks; find `fmt ` and `data`, or say precisely what is wrong. */
export function scanRiff(b: ByteView, name: string): Layout {
  const fail = (problem: string): never => {
    throw new ArdError(`${name}: ${problem}`);
  };
  if (b.length === 0) fail('empty file (0 bytes)');
  const head = fourcc(b, 0);
  if (head === 'RIFX' || head === 'RF64') fail(`unsupported container ${head} (only little-endian RIFF/WAVE is read)`);
  if (!startsWith(b, 'RIFF'.slice(0, Math.min(4, b.length)))) fail(`not a RIFF/WAVE file (starts with "${head}")`);
  if (b.length < 12) fail(`truncated header (${b.length} bytes)`);
  const form = fourcc(b, 8);
  if (form !== 'WAVE') fail(`not a RIFF/WAVE file (RIFF form type "${form}")`);

  // A chunk header at `at`: a printable four-character id and a payload that fits in the file
  // (or a data chunk of unknown length). Used only to choose between two readings of the bytes.
  const chunkHeaderAt = (at: number): boolean => {
    if (at + 8 > b.length) return false;
    for (let i = 0; i < 4; i++) if (b.byte(at + i)! < 0x20 || b.byte(at + i)! > 0x7e) return false;
    const size = u32le(b, at + 4);
    return at + 8 + size <= b.length || (size === 0xffffffff && fourcc(b, at) === 'data');
  };
  let fmt: Chunk | undefined;
  let data: Chunk | undefined;
  let brokenAt: string | undefined; // why the walk stopped before the end of the file
  let pos = 12;
  while (pos < b.length) {
    if (pos + 8 > b.length) {
      brokenAt = `file ends inside a chunk header at byte ${pos}`;
      break;
    }
    const id = fourcc(b, pos);
    let size = u32le(b, pos + 4);
    const start = pos + 8;
    // Writers that cannot seek back to fill in the size leave 0xFFFFFFFF or 0: the data then runs
    // to the end of the file. A 0 is taken that way only when no chunk header follows it, so an
    // empty data chunk followed by other chunks stays empty.
    if (id === 'data' && (size === 0xffffffff || (size === 0 && start < b.length && !chunkHeaderAt(start)))) {
      size = b.length - start;
    }
    if (id === 'fmt ' && !fmt) fmt = { id, start, size };
    if (id === 'data' && !data) data = { id, start, size };
    if (start + size > b.length) {
      brokenAt = `chunk "${id}" declares ${size} bytes but only ${b.length - start} remain`;
      break;
    }
    pos = start + size;
    // An odd-sized chunk is followed by a pad byte; some writers leave it out.
    if (size & 1 && (chunkHeaderAt(pos + 1) || !chunkHeaderAt(pos))) pos += 1;
  }

  if (!fmt) fail(brokenAt ? `truncated header (no complete fmt chunk: ${brokenAt})` : 'missing fmt chunk');
  if (fmt!.start + Math.max(16, fmt!.size) > b.length || fmt!.size < 16) {
    fail(`truncated header (fmt chunk has ${Math.min(fmt!.size, b.length - fmt!.start)} bytes, need at least 16)`);
  }
  if (!data) fail(brokenAt ? `missing data chunk (${brokenAt})` : 'missing data chunk');
  const available = b.length - data!.start;
  if (data!.size > available) {
    fail(`truncated data: header says ${data!.size} bytes, file has ${available}`);
  }
  return { fmt: fmt!, data: data!, dataBytes: data!.size };
}

export interface Format {
  code: number; // resolved format code (the subformat for WAVE_FORMAT_EXTENSIBLE)
  extensible: boolean;
  channels: number;
  rate: number;
  blockAlign: number;
  bits: number;
  bitDepth: string; // '8', '16', '24', '32', '32f' or '64'
}

export function parseFmt(b: ByteView, fmt: Chunk, name: string): Format {
  const fail = (problem: string): never => {
    throw new ArdError(`${name}: ${problem}`);
  };
  const s = fmt.start;
  let code = u16le(b, s);
  const channels = u16le(b, s + 2);
  const rate = u32le(b, s + 4);
  const blockAlign = u16le(b, s + 12);
  const bits = u16le(b, s + 14);
  const extensible = code === FORMAT_EXTENSIBLE;
  if (extensible) {
    if (fmt.size < 40) fail(`truncated header (WAVE_FORMAT_EXTENSIBLE fmt chunk has ${fmt.size} bytes, need 40)`);
    const guid = viewSlice(b, s + 24, s + 40);
    const tailOk = GUID_TAIL.every((v, i) => guid[2 + i] === v);
    if (!tailOk) {
      const hex = Array.from(guid, (v) => v.toString(16).padStart(2, '0')).join('');
      fail(`unsupported encoding (WAVE_FORMAT_EXTENSIBLE subformat GUID ${hex})`);
    }
    code = u16le(b, s + 24);
  }
  if (code !== FORMAT_PCM && code !== FORMAT_FLOAT) {
    const what = FORMAT_NAMES[code] ? `${FORMAT_NAMES[code]} ` : '';
    const hex = `0x${code.toString(16).padStart(4, '0')}`;
    fail(`unsupported encoding ${what}(format code ${code} = ${hex}${extensible ? ' in WAVE_FORMAT_EXTENSIBLE' : ''}); convert to PCM or float WAV first`);
  }
  let bitDepth: string;
  if (code === FORMAT_PCM) {
    if (![8, 16, 24, 32].includes(bits)) fail(`unsupported encoding: ${bits}-bit PCM (8, 16, 24 and 32 are read)`);
    bitDepth = String(bits);
  } else {
    if (bits !== 32 && bits !== 64) fail(`unsupported encoding: ${bits}-bit float (32 and 64 are read)`);
    bitDepth = bits === 32 ? '32f' : '64';
  }
  if (channels === 0) fail('invalid fmt chunk: 0 channels');
  if (rate === 0) fail('invalid fmt chunk: sample rate 0');
  const expectAlign = (channels * bits) / 8;
  if (blockAlign !== expectAlign) {
    fail(`invalid fmt chunk: block align ${blockAlign}, expected ${expectAlign} for ${channels} channel(s) of ${bits} bits`);
  }
  return { code, extensible, channels, rate, blockAlign, bits, bitDepth };
}

/**
 * Decode `frames` whole frames from the start of `data` and average the channels, in one pass.
 * (wavefile's getSamples does the same job 50–300× slower: ~5 s per 5 min of 16-bit stereo and
 * ~30 s for float32, with an f64 copy of every channel.) Integers scale to k / 2^(bits−1);
 * 8-bit PCM is unsigned. Float samples must be finite. `first` is the clip frame of data's first
 * frame (stream.ts decodes the data chunk a block at a time), for messages.
 */
export function decodeMonoFrames(data: Uint8Array, f: Format, frames: number, first: number, name: string): Float32Array {
  const dv = new DataView(data.buffer, data.byteOffset, frames * f.blockAlign);
  const c = f.channels;
  const out = new Float32Array(frames);
  const inv = 1 / c;
  let p = 0;
  switch (f.bitDepth) {
    case '8':
      for (let i = 0; i < frames; i++) {
        let s = 0;
        for (let k = 0; k < c; k++) s += dv.getUint8(p++) - 128;
        out[i] = (s / 128) * inv;
      }
      break;
    case '16':
      for (let i = 0; i < frames; i++, p += 2 * c) {
        let s = 0;
        for (let k = 0; k < c; k++) s += dv.getInt16(p + 2 * k, true);
        out[i] = (s / 32768) * inv;
      }
      break;
    case '24':
      for (let i = 0; i < frames; i++) {
        let s = 0;
        for (let k = 0; k < c; k++, p += 3) {
          // low 16 bits unsigned + high byte signed
          s += dv.getUint16(p, true) + (dv.getInt8(p + 2) << 16);
        }
        out[i] = (s / 8388608) * inv;
      }
      break;
    case '32':
      for (let i = 0; i < frames; i++, p += 4 * c) {
        let s = 0;
        for (let k = 0; k < c; k++) s += dv.getInt32(p + 4 * k, true);
        out[i] = (s / 2147483648) * inv;
      }
      break;
    case '32f':
    case '64': {
      const is64 = f.bitDepth === '64';
      const size = is64 ? 8 : 4;
      for (let i = 0; i < frames; i++) {
        let s = 0;
        for (let k = 0; k < c; k++, p += size) {
          const v = is64 ? dv.getFloat64(p, true) : dv.getFloat32(p, true);
          if (!Number.isFinite(v)) {
            const what = Number.isNaN(v) ? 'NaN sample' : 'infinite sample';
            throw new ArdError(`${name}: ${what} at frame ${first + i} (channel ${k}, t=${((first + i) / f.rate).toFixed(4)} s)`);
          }
          s += v;
        }
        out[i] = s * inv;
      }
      break;
    }
    default:
      throw new Error(`decodeMono: unexpected bit depth ${f.bitDepth}`);
  }
  return out;
}

/** The chunk layout, the format and the whole frames of a WAV; throws ArdError when it has none. */
export function wavLayout(b: ByteView, name: string): { layout: Layout; format: Format; frames: number } {
  const layout = scanRiff(b, name);
  const format = parseFmt(b, layout.fmt, name);
  const frames = Math.floor(layout.dataBytes / format.blockAlign);
  if (frames === 0) {
    throw new ArdError(`${name}: no samples (data chunk has ${layout.dataBytes} bytes, one frame is ${format.blockAlign})`);
  }
  return { layout, format, frames };
}

export interface WavMono {
  /** Mono samples at the file's own rate (channels averaged). */
  samples: Float32Array;
  sampleRate: number;
  channels: number;
  frames: number;
  duration: number;
  bitDepth: string;
}

/** Decode a WAV held in memory to mono at its own sample rate (no resampling). */
export function decodeWavMono(bytes: Uint8Array, name: string): WavMono {
  const { layout, format: f, frames } = wavLayout(memoryBytes(bytes), name);
  const samples = decodeMonoFrames(bytes.subarray(layout.data.start), f, frames, 0, name);
  return { samples, sampleRate: f.rate, channels: f.channels, frames, duration: frames / f.rate, bitDepth: f.bitDepth };
}

/** Resample mono samples at `rate` to 16 kHz; `name` is used in error messages. */
export function monoAt16k(samples: Float32Array, rate: number, name: string): Float32Array {
  try {
    return resample(samples, rate, TARGET_RATE);
  } catch (e) {
    // An absurd rate in the header (e.g. 4294967295 Hz) asks for a filter or an output too large
    // for a typed array.
    if (!(e instanceof RangeError)) throw e;
    throw resampleRefusal(name, rate);
  }
}

/** The refusal of a rate that cannot be resampled to 16 kHz. */
export function resampleRefusal(name: string, rate: number): ArdError {
  return new ArdError(`${name}: sample rate ${rate} Hz cannot be resampled to ${TARGET_RATE} Hz (the filter or the output would not fit in memory)`);
}

/** Decode a WAV file held in memory: mono, 16 kHz. `name` is used in error messages. */
export function decodeWav(bytes: Uint8Array, name: string): WavAudio {
  const m = decodeWavMono(bytes, name);
  return {
    samples: monoAt16k(m.samples, m.sampleRate, name),
    sampleRate: TARGET_RATE,
    originalRate: m.sampleRate,
    channels: m.channels,
    duration: m.duration,
    bitDepth: m.bitDepth,
  };
}

/** Read a WAV file: mono, 16 kHz, float samples. Throws ArdError naming the file on any problem. */
export function readWav(file: string): WavAudio {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (e: any) {
    throw new ArdError(`${file}: cannot read (${e.code ?? e.message})`);
  }
  return decodeWav(bytes, file);
}

/** Encode mono samples as a 16-bit PCM WAV (values clipped to [-1, 1]). */
export function encodeWav(samples: Float32Array | Float64Array, sampleRate = TARGET_RATE, name = 'wav'): Uint8Array {
  if (!Number.isInteger(sampleRate) || sampleRate <= 0) throw new ArdError(`${name}: invalid sample rate ${sampleRate}`);
  const n = samples.length;
  const out = new Uint8Array(44 + 2 * n);
  const dv = new DataView(out.buffer);
  const ascii = (at: number, s: string) => {
    for (let i = 0; i < 4; i++) out[at + i] = s.charCodeAt(i);
  };
  ascii(0, 'RIFF');
  dv.setUint32(4, 36 + 2 * n, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  dv.setUint32(16, 16, true);
  dv.setUint16(20, FORMAT_PCM, true);
  dv.setUint16(22, 1, true);
  dv.setUint32(24, sampleRate, true);
  dv.setUint32(28, sampleRate * 2, true);
  dv.setUint16(32, 2, true);
  dv.setUint16(34, 16, true);
  ascii(36, 'data');
  dv.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) {
    const v = samples[i];
    if (!Number.isFinite(v)) throw new ArdError(`${name}: cannot write non-finite sample at index ${i}`);
    // Same scale as decoding (k/32768), so values on the 16-bit grid round-trip exactly.
    const q = Math.max(-32768, Math.min(32767, Math.round(v * 32768)));
    dv.setInt16(44 + 2 * i, q, true);
  }
  return out;
}

/** Write mono samples as a 16-bit PCM WAV, atomically. */
export function writeWav(file: string, samples: Float32Array | Float64Array, sampleRate = TARGET_RATE): void {
  writeFileAtomic(file, encodeWav(samples, sampleRate, file));
}

/** Extensions of the audio files ardgpu lists in folders (readAudio decodes each by its content). */
export const AUDIO_EXTENSIONS = ['.wav', '.flac', '.ogg', '.oga', '.opus', '.mp3'] as const;

/** The audio extension at the end of a path, for stripping it (case-insensitive). */
export const AUDIO_EXT = /\.(wav|flac|ogg|oga|opus|mp3)$/i;

/** True when the name ends in one of AUDIO_EXTENSIONS (case-insensitive). */
export function isAudioFile(name: string): boolean {
  return AUDIO_EXT.test(name);
}

/**
 * All .wav files under `dir` (any depth, case-insensitive extension), sorted by path.
 * Hidden entries (names starting with '.', e.g. macOS "._x.wav" resource forks) are skipped.
 */
export function listWavs(dir: string): string[] {
  return listFiles(dir, (name) => name.toLowerCase().endsWith('.wav'));
}

/** All audio files (AUDIO_EXTENSIONS) under `dir`, as listWavs lists WAVs. */
export function listAudio(dir: string): string[] {
  return listFiles(dir, isAudioFile);
}

function listFiles(dir: string, keep: (name: string) => boolean): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const walk = (d: string) => {
    let real: string;
    try {
      real = fs.realpathSync(d);
    } catch (e: any) {
      throw new ArdError(`${d}: cannot read directory (${e.code ?? e.message})`);
    }
    if (seen.has(real)) return; // symlink loop
    seen.add(real);
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch (e: any) {
      throw new ArdError(`${d}: cannot read directory (${e.code ?? e.message})`);
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = path.join(d, e.name);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        try {
          const st = fs.statSync(p);
          isDir = st.isDirectory();
          isFile = st.isFile();
        } catch {
          continue; // dangling link
        }
      }
      if (isDir) walk(p);
      else if (isFile && keep(e.name)) out.push(p);
    }
  };
  walk(dir);
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Split a clip into consecutive windows of at most `windowSeconds` (Qwen2-Audio's encoder sees
 * 30 s at a time). The last window holds the remainder; an empty clip gives no windows.
 * Windows are views into `samples`, not copies.
 */
export function windows(samples: Float32Array, windowSeconds = 30, sampleRate = TARGET_RATE): Float32Array[] {
  const size = Math.round(windowSeconds * sampleRate);
  if (!(size > 0)) throw new RangeError(`windows: window of ${windowSeconds} s at ${sampleRate} Hz is empty`);
  const out: Float32Array[] = [];
  for (let i = 0; i < samples.length; i += size) out.push(samples.subarray(i, Math.min(samples.length, i + size)));
  return out;
}
