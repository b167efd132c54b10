import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArdError } from '../util/errors.js';
import { type ByteView, i64le, memoryBytes, u16le } from './bytes.js';
import { decodeWav, monoAt16k, type WavAudio } from './wav.js';

// Compressed audio: FLAC (native and in Ogg), Ogg Vorbis, Ogg Opus and MP3, decoded by the
// wasm-audio-decoders family (libFLAC, libvorbis, libopus and mpg123 compiled to WebAssembly: no
// native build, the same code in Node and in a browser). The format is chosen by the file's first
// bytes, never by its name, so a FLAC saved as .wav or an MP3 saved as .ogg still decodes; the
// extension only names what was expected when the bytes match nothing. The rules are WAV's: any
// rate and channel count (channels averaged, resampled to 16 kHz), and a file that is truncated,
// corrupt or of another kind is refused with one line naming it.
//
// The decoders are asynchronous (their WebAssembly is compiled with WebAssembly.compile), so
// readAudio is too; readWav stays synchronous for WAV files. stream.ts reads the same files a block
// at a time with the same rules: the header and container walks here take a ByteView for it.

export type AudioFormat = 'wav' | 'flac' | 'ogg-flac' | 'vorbis' | 'opus' | 'mp3';

const FORMAT_NAMES: Record<AudioFormat, string> = {
  wav: 'WAV',
  flac: 'FLAC',
  'ogg-flac': 'Ogg FLAC',
  vorbis: 'Ogg Vorbis',
  opus: 'Ogg Opus',
  mp3: 'MP3',
};

export interface DecodedAudio extends WavAudio {
  /** What the bytes held. bitDepth is the stored depth for WAV and FLAC, '32f' for lossy formats (decoded as float). */
  format: AudioFormat;
}

const READ = 'WAV, FLAC, Ogg Vorbis, Ogg Opus and MP3 are read';

function ascii(b: ByteView, at: number, text: string): boolean {
  if (at + text.length > b.length) return false;
  for (let i = 0; i < text.length; i++) if (b.byte(at + i) !== text.charCodeAt(i)) return false;
  return true;
}

function hexHead(b: ByteView): string {
  const head: string[] = [];
  for (let i = 0; i < Math.min(8, b.length); i++) head.push(b.byte(i)!.toString(16).padStart(2, '0'));
  return head.join(' ');
}

/** Bytes taken by an ID3v2 tag at the start (0 when there is none). */
function id3Length(b: ByteView): number {
  if (!ascii(b, 0, 'ID3') || b.length < 10) return 0;
  const size = ((b.byte(6)! & 0x7f) << 21) | ((b.byte(7)! & 0x7f) << 14) | ((b.byte(8)! & 0x7f) << 7) | (b.byte(9)! & 0x7f);
  const footer = b.byte(5)! & 0x10 ? 10 : 0;
  return 10 + size + footer;
}

export interface MpegHeader {
  bytes: number; // frame length
  channels: number;
  rate: number;
}

const MPEG_BITRATES: Record<string, number[]> = {
  // kbit/s by bitrate index, per [version 1 or 2, layer]
  '1,1': [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
  '1,2': [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
  '1,3': [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  '2,1': [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
  '2,2': [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
  '2,3': [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
};
const MPEG_RATES = [44100, 48000, 32000];

/** The MPEG audio frame header at `at`, or null when the bytes there are not one. */
export function mpegHeader(b: ByteView, at: number): MpegHeader | null {
  if (at + 4 > b.length || b.byte(at) !== 0xff || (b.byte(at + 1)! & 0xe0) !== 0xe0) return null;
  const b1 = b.byte(at + 1)!;
  const b2 = b.byte(at + 2)!;
  const versionBits = (b1 >> 3) & 3; // 0: MPEG 2.5, 2: MPEG 2, 3: MPEG 1
  const layerBits = (b1 >> 1) & 3; // 1: layer III, 2: II, 3: I
  const bitrateIndex = b2 >> 4;
  const rateIndex = (b2 >> 2) & 3;
  if (versionBits === 1 || layerBits === 0 || bitrateIndex === 0 || bitrateIndex === 15 || rateIndex === 3) return null;
  const layer = 4 - layerBits;
  const v1 = versionBits === 3;
  const kbps = MPEG_BITRATES[`${v1 ? 1 : 2},${layer}`]![bitrateIndex]!;
  const rate = MPEG_RATES[rateIndex]! / (v1 ? 1 : versionBits === 2 ? 2 : 4);
  const padding = (b2 >> 1) & 1;
  const bytes =
    layer === 1
      ? (Math.floor((12000 * kbps) / rate) + padding) * 4
      : Math.floor(((layer === 3 && !v1 ? 72000 : 144000) * kbps) / rate) + padding;
  return { bytes, channels: b.byte(at + 3)! >> 6 === 3 ? 1 : 2, rate };
}

/** Where the first of two back-to-back MPEG audio frames starts within `limit` bytes of `from`, or -1. */
function findMpegSync(b: ByteView, from: number, limit: number): number {
  const end = Math.min(b.length - 4, from + limit);
  for (let i = from; i <= end; i++) {
    const h = mpegHeader(b, i);
    if (!h) continue;
    const next = i + h.bytes;
    // A lone frame that fills the file exactly is accepted; otherwise the next frame must follow.
    if (next === b.length || mpegHeader(b, next)) return i;
  }
  return -1;
}

/** The Ogg codec of the first page's first packet, by its identification header. */
function oggCodec(b: ByteView): AudioFormat | string {
  if (b.length < 27) return 'truncated';
  const segments = b.byte(26)!;
  const packet = 27 + segments;
  if (ascii(b, packet, '\x01vorbis')) return 'vorbis';
  if (ascii(b, packet, 'OpusHead')) return 'opus';
  if (ascii(b, packet, '\x7fFLAC')) return 'ogg-flac';
  if (ascii(b, packet, 'Speex   ')) return 'Speex';
  if (ascii(b, packet, '\x80theora')) return 'Theora';
  if (packet + 8 > b.length) return 'truncated';
  return 'unknown';
}

/**
 * What the bytes hold, judged by their first bytes. `name` (a file name) is used only as a hint
 * for an MP3 with leading junk and in messages. Throws ArdError when nothing matches.
 */
export function sniffAudio(bytes: Uint8Array, name: string): { format: AudioFormat; offset: number } {
  return sniffView(memoryBytes(bytes), name);
}

/** sniffAudio over a ByteView (stream.ts reads the file through one). */
export function sniffView(b: ByteView, name: string): { format: AudioFormat; offset: number } {
  if (b.length === 0) throw new ArdError(`${name}: empty file (0 bytes)`);
  if (ascii(b, 0, 'RIFF') || ascii(b, 0, 'RIFX') || ascii(b, 0, 'RF64')) return { format: 'wav', offset: 0 };
  if (ascii(b, 0, 'fLaC')) return { format: 'flac', offset: 0 };
  if (ascii(b, 0, 'OggS')) {
    const codec = oggCodec(b);
    if (codec === 'truncated') throw new ArdError(`${name}: truncated Ogg file (${b.length} bytes, the first page is incomplete)`);
    if (codec === 'unknown') throw new ArdError(`${name}: Ogg file with an unknown codec (${READ})`);
    if (codec === 'vorbis' || codec === 'opus' || codec === 'ogg-flac') return { format: codec, offset: 0 };
    throw new ArdError(`${name}: unsupported Ogg codec ${codec} (${READ})`);
  }
  const tag = id3Length(b);
  if (tag) {
    if (tag >= b.length) throw new ArdError(`${name}: truncated file (the ID3 tag declares ${tag} bytes, the file has ${b.length})`);
    if (ascii(b, tag, 'fLaC')) return { format: 'flac', offset: tag };
    const at = findMpegSync(b, tag, 64 * 1024);
    if (at >= 0) return { format: 'mp3', offset: 0 };
    throw new ArdError(`${name}: an ID3 tag followed by no MP3 or FLAC audio (${READ})`);
  }
  // One frame header at the start is enough: a file cut inside its first frames is then refused as
  // a truncated MP3 rather than as an unknown format.
  if (mpegHeader(b, 0)) return { format: 'mp3', offset: 0 };
  // An MP3 may start with junk before its first frame; look further only when the name says MP3.
  if (path.extname(name).toLowerCase() === '.mp3' && findMpegSync(b, 0, 64 * 1024) >= 0) return { format: 'mp3', offset: 0 };
  const ext = path.extname(name).toLowerCase();
  const expected: Record<string, string> = { '.flac': 'a FLAC', '.ogg': 'an Ogg', '.oga': 'an Ogg', '.opus': 'an Ogg Opus', '.mp3': 'an MP3', '.wav': 'a RIFF/WAVE' };
  const what = expected[ext] ? `not ${expected[ext]} file` : 'not an audio file ardgpu reads';
  throw new ArdError(`${name}: ${what} (starts with ${hexHead(b)}; ${READ})`);
}

export interface Decoded {
  channelData: Float32Array[];
  samplesDecoded: number;
  sampleRate: number;
  bitDepth?: number;
  errors: { message: string }[];
}

export interface Decoder {
  ready: Promise<void>;
  decodeFile?: (data: Uint8Array) => Promise<Decoded>;
  /** mpg123's is synchronous; the others return a promise. */
  decode: (data: Uint8Array) => Decoded | Promise<Decoded>;
  /** Decode what the parser still holds (not mpg123's, which holds nothing back). */
  flush?: () => Promise<Decoded>;
  free: () => void;
}

// Loaded on first use, so that reading WAV files never compiles a decoder.
export async function newDecoder(format: Exclude<AudioFormat, 'wav'>): Promise<Decoder> {
  switch (format) {
    case 'flac':
    case 'ogg-flac':
      return new (await import('@wasm-audio-decoders/flac')).FLACDecoder() as unknown as Decoder;
    case 'vorbis':
      return new (await import('@wasm-audio-decoders/ogg-vorbis')).OggVorbisDecoder() as unknown as Decoder;
    case 'opus':
      return new (await import('ogg-opus-decoder')).OggOpusDecoder() as unknown as Decoder;
    case 'mp3':
      return new (await import('mpg123-decoder')).MPEGDecoder() as unknown as Decoder;
  }
}

/**
 * Run a decoder with console.error and console.warn held back: libFLAC and mpg123 print each
 * decoding error there, and ardgpu reports the first one in its own one-line message instead.
 * Anything else printed through console.error while a file decodes is held back too.
 */
export async function quietly<T>(f: () => Promise<T>): Promise<{ value: T; printed: string[] }> {
  const printed: string[] = [];
  const { error, warn } = console;
  console.error = console.warn = (...a: unknown[]) => void printed.push(a.map(String).join(' '));
  try {
    return { value: await f(), printed };
  } finally {
    console.error = error;
    console.warn = warn;
  }
}

/** Frame count the STREAMINFO block of a FLAC stream declares (0: unknown). */
export function flacDeclaredFrames(b: ByteView, at: number): number {
  // fLaC, then a metadata block header (4 bytes); STREAMINFO's total samples are 36 bits at byte 13.
  const s = at + 8;
  if (s + 18 > b.length || (b.byte(at + 4)! & 0x7f) !== 0) return 0;
  return (b.byte(s + 13)! & 0x0f) * 2 ** 32 + ((b.byte(s + 14)! << 24) >>> 0) + (b.byte(s + 15)! << 16) + (b.byte(s + 16)! << 8) + b.byte(s + 17)!;
}

/** True when the last Ogg page in the file is complete and carries the end-of-stream flag. */
function oggEnds(b: ByteView): boolean {
  let pos = 0;
  let last = false;
  while (pos + 27 <= b.length && ascii(b, pos, 'OggS')) {
    const segments = b.byte(pos + 26)!;
    if (pos + 27 + segments > b.length) return false;
    let body = 0;
    for (let i = 0; i < segments; i++) body += b.byte(pos + 27 + i)!;
    const end = pos + 27 + segments + body;
    if (end > b.length) return false;
    last = (b.byte(pos + 5)! & 4) !== 0;
    pos = end;
  }
  return last && pos === b.length;
}

/** Samples (at 48 kHz) an Ogg Opus stream holds: last granule position − pre-skip (0: unknown). */
export function opusEndSamples(b: ByteView): number {
  const head = 27 + b.byte(26)!;
  if (head + 12 > b.length) return 0;
  const preSkip = u16le(b, head + 10);
  let pos = 0;
  let granule = -1;
  while (pos + 27 <= b.length && ascii(b, pos, 'OggS')) {
    const segments = b.byte(pos + 26)!;
    let body = 0;
    for (let i = 0; i < segments; i++) body += b.byte(pos + 27 + i)!;
    granule = i64le(b, pos + 6);
    pos += 27 + segments + body;
  }
  return granule > preSkip ? granule - preSkip : 0;
}

/** MPEG frames the Xing/Info header of the first frame declares (0: none), and that frame's offset. */
export function mp3DeclaredFrames(b: ByteView): { frames: number; first: number } {
  const tag = id3Length(b);
  const first = mpegHeader(b, tag) ? tag : findMpegSync(b, tag, 64 * 1024);
  if (first < 0) return { frames: 0, first };
  for (const at of [first + 36, first + 21, first + 13]) {
    if ((ascii(b, at, 'Xing') || ascii(b, at, 'Info')) && at + 12 <= b.length && b.byte(at + 7)! & 1) {
      return { frames: ((b.byte(at + 8)! << 24) >>> 0) + (b.byte(at + 9)! << 16) + (b.byte(at + 10)! << 8) + b.byte(at + 11)!, first };
    }
  }
  return { frames: 0, first };
}

/** Count the MPEG frames from `first` to the end; `cut` is true when the last one is incomplete. */
function mp3Frames(b: ByteView, first: number): { count: number; cut: boolean } {
  let pos = first;
  let count = 0;
  while (pos < b.length) {
    const h = mpegHeader(b, pos);
    if (!h) break; // an ID3v1 tag or other trailer
    if (pos + h.bytes > b.length) return { count, cut: true };
    count++;
    pos += h.bytes;
  }
  return { count, cut: false };
}

export function refuse(name: string, format: AudioFormat, problem: string): never {
  throw new ArdError(`${name}: ${FORMAT_NAMES[format]}: ${problem}`);
}

/** Check the container for a cut-off end before decoding (the decoders stop quietly there). */
export function checkComplete(b: ByteView, format: AudioFormat, offset: number, name: string): void {
  if (format === 'vorbis' || format === 'opus' || format === 'ogg-flac') {
    if (!oggEnds(b)) refuse(name, format, 'truncated or corrupt (the last Ogg page is incomplete or is not the end of the stream)');
  } else if (format === 'mp3') {
    const { frames, first } = mp3DeclaredFrames(b);
    const found = mp3Frames(b, first);
    if (found.cut) refuse(name, format, `truncated (the file ends inside frame ${found.count + 1})`);
    // The Xing/Info frame itself is silent and not counted in `frames` by some writers.
    if (frames && found.count < frames) refuse(name, format, `truncated (the header declares ${frames} frames, the file has ${found.count})`);
  } else if (format === 'flac') {
    if (b.length < offset + 42) refuse(name, format, `truncated header (${b.length - offset} bytes)`);
  }
}

/** Frees a decoder; one that failed to start has nothing to free. */
export function freeDecoder(decoder: Decoder | undefined): void {
  try {
    decoder?.free();
  } catch {
    // a decoder that failed to start has nothing to free
  }
}

/**
 * The mean of a decoded block's channels over its first `frames` frames, in float32 (decodeAudio and the
 * stream give the same bits this way). Stops at the first non-finite sample and returns its frame
 * (−1 when there is none).
 */
export function mixToMono(format: AudioFormat, out: Decoded, frames: number): { mono: Float32Array; nonFinite: number } {
  const mono = new Float32Array(frames);
  if ((format === 'flac' || format === 'ogg-flac') && out.bitDepth) {
    // libFLAC's integers come out divided by 2^(bits−1) − 1; WAV reading divides by 2^(bits−1).
    // Put them back on the integer grid and scale as WAV does, so a FLAC and its WAV give the same samples.
    const full = 2 ** (out.bitDepth - 1);
    for (const ch of out.channelData) for (let i = 0; i < frames; i++) mono[i]! += Math.round(ch[i]! * (full - 1)) / full;
  } else {
    for (const ch of out.channelData) for (let i = 0; i < frames; i++) mono[i]! += ch[i]!;
  }
  const inv = 1 / out.channelData.length;
  for (let i = 0; i < frames; i++) {
    const v = mono[i]! * inv;
    if (!Number.isFinite(v)) return { mono, nonFinite: i };
    mono[i] = v;
  }
  return { mono, nonFinite: -1 };
}

/** Decode audio held in memory to mono 16 kHz. `name` is used in error messages. */
export async function decodeAudio(bytes: Uint8Array, name: string): Promise<DecodedAudio> {
  const view = memoryBytes(bytes);
  const { format, offset } = sniffView(view, name);
  if (format === 'wav') return { ...decodeWav(bytes, name), format };
  let data = bytes.subarray(offset);
  checkComplete(view, format, offset, name);
  if (format === 'flac') {
    // @wasm-audio-decoders/flac 0.2 drops a short last frame that ends exactly at the end of its input
    // (seen on a silent 1,703-sample frame; test/fixtures/audio/short-last-frame.flac). One byte after
    // it, which can never start a frame (sync is 0xFFF8), makes the decoder emit it.
    const padded = new Uint8Array(data.length + 1);
    padded.set(data);
    data = padded;
  }
  let decoder: Decoder | undefined;
  let out: Decoded;
  let printed: string[];
  try {
    ({ value: out, printed } = await quietly(async () => {
      decoder = await newDecoder(format);
      await decoder.ready;
      // mpg123's decoder takes the whole stream through decode(); the others have decodeFile.
      return decoder.decodeFile ? decoder.decodeFile(data) : decoder.decode(data);
    }));
  } catch (e) {
    if (e instanceof ArdError) throw e;
    // What the decoder throws on bad input is a WebAssembly trap or its own internal message
    // ("memory access out of bounds"): neither says anything to the user.
    refuse(name, format, 'corrupt data (the decoder could not read it)');
  } finally {
    freeDecoder(decoder);
  }
  const firstError = out.errors[0]?.message ?? printed.find((p) => p.trim());
  if (out.errors.length) refuse(name, format, `corrupt data (${out.errors.length} frame(s) failed to decode; first: ${firstError})`);
  let frames = out.samplesDecoded;
  if (format === 'opus') {
    // The decoder drops the pre-skip at the start but keeps the encoder's padding at the end; the
    // last page's granule position says where the stream really ends (RFC 7845, 4.4).
    const end = opusEndSamples(view);
    if (end > 0 && frames > end) frames = end;
  }
  const channels = out.channelData.length;
  if (!frames || !channels || !out.sampleRate) refuse(name, format, 'no samples decoded');
  if (format === 'flac') {
    const declared = flacDeclaredFrames(view, offset);
    if (declared && frames < declared) refuse(name, format, `truncated (STREAMINFO declares ${declared} samples, ${frames} decoded)`);
    if (declared) frames = Math.min(frames, declared);
  }
  const { mono, nonFinite } = mixToMono(format, out, frames);
  if (nonFinite >= 0) refuse(name, format, `non-finite sample at frame ${nonFinite}`);
  const stored = format === 'mp3' ? mpegHeader(view, mp3DeclaredFrames(view).first)?.channels ?? channels : channels;
  return {
    samples: monoAt16k(mono, out.sampleRate, name),
    sampleRate: 16000,
    originalRate: out.sampleRate,
    channels: stored,
    duration: frames / out.sampleRate,
    bitDepth: format === 'flac' || format === 'ogg-flac' ? String(out.bitDepth ?? 16) : '32f',
    format,
  };
}

/**
 * Read an audio file (WAV, FLAC, Ogg Vorbis, Ogg Opus or MP3, told apart by content): mono,
 * 16 kHz, float samples. Throws ArdError naming the file on any problem.
 */
export async function readAudio(file: string): Promise<DecodedAudio> {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (e: any) {
    throw new ArdError(`${file}: cannot read (${e.code ?? e.message})`);
  }
  return decodeAudio(bytes, file);
}
