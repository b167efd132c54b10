// Audio read as a stream: a file of any length becomes 16 kHz mono windows, read and decoded a block
// at a time, so host memory does not grow with the clip's length. The windows, concatenated, are
// exactly readAudio(file).samples: the same header and container rules (wav.ts and decode.ts read
// through a ByteView, here a file read in blocks), the same decoders fed the same bytes in blocks
// (their parsers are streaming ones; decodeFile is parse-all-then-decode), the same mono mixdown
// per frame, and StreamResampler, which gives resample()'s output bit for bit.
//
// A damaged file is refused with readAudio's message. Some problems only show at the end (a FLAC
// shorter than its STREAMINFO says, a decoding error's count in "N frame(s) failed"): the stream
// then fails when it reaches them, with windows already handed out. measureAudio reads the whole file
// first (decoding without resampling; a PCM WAV needs only its header) and says what readAudio would,
// so callers that must not act on part of a bad file (capture, ask --windows all) measure first.
//
// File I/O is positioned reads on a descriptor (fs.openSync/readSync), which the browser build's
// fs shim also provides; the browser itself decodes whole files (decodeAudio).

import * as fs from 'node:fs';
import { ArdError } from '../util/errors.js';
import type { ByteView } from './bytes.js';
import {
  type AudioFormat,
  checkComplete,
  type Decoded,
  type Decoder,
  flacDeclaredFrames,
  freeDecoder,
  mixToMono,
  mp3DeclaredFrames,
  mpegHeader,
  newDecoder,
  opusEndSamples,
  quietly,
  refuse,
  sniffView,
} from './decode.js';
import { StreamResampler, resampledLength } from './resample.js';
import { decodeMonoFrames, type Format, type Layout, resampleRefusal, TARGET_RATE, wavLayout } from './wav.js';

/** A file path, or bytes in memory with the name messages use. */
export type AudioStreamInput = string | { bytes: Uint8Array; name: string };

export interface AudioStreamOptions {
  /** Bytes read from the file at a time (at least 16; default 256 KiB of WAV, 64 KiB of compressed audio). */
  blockBytes?: number;
}

/** What readAudio returns, less the samples: their count instead. */
export interface AudioInfo {
  format: AudioFormat;
  /** 16 kHz samples the clip gives (readAudio(file).samples.length). */
  length: number;
  sampleRate: 16000;
  originalRate: number;
  channels: number;
  duration: number;
  bitDepth: string;
}

const WAV_BLOCK = 256 * 1024;
// 64 KiB of Opus at 6 kbit/s is 87 s, 17 MB decoded at 48 kHz: keep compressed blocks small
const CODEC_BLOCK = 64 * 1024;
const VIEW_BLOCK = 64 * 1024;

/** Positioned reads of a file or of bytes in memory. */
interface ByteSource {
  readonly name: string;
  readonly size: number;
  /** Read up to `length` bytes at `position` into dest[0 …]; returns the bytes read (fewer only at the end). */
  read(dest: Uint8Array, position: number, length: number): number;
  close(): void;
}

function cannotRead(file: string, e: any): ArdError {
  return new ArdError(`${file}: cannot read (${e?.code ?? e?.message})`);
}

function fileSource(file: string): ByteSource {
  let fd: number;
  let size: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw cannotRead(file, e);
  }
  try {
    const st = fs.fstatSync(fd);
    // readFileSync's refusal of a folder, in its words
    if (st.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    size = st.size;
  } catch (e) {
    fs.closeSync(fd);
    throw cannotRead(file, e);
  }
  let open = true;
  return {
    name: file,
    size,
    read(dest, position, length) {
      let got = 0;
      try {
        while (got < length) {
          const k = fs.readSync(fd, dest, got, length - got, position + got);
          if (k === 0) break;
          got += k;
        }
      } catch (e) {
        throw cannotRead(file, e);
      }
      return got;
    },
    close() {
      if (open) fs.closeSync(fd);
      open = false;
    },
  };
}

function memorySource(bytes: Uint8Array, name: string): ByteSource {
  return {
    name,
    size: bytes.length,
    read(dest, position, length) {
      const part = bytes.subarray(position, Math.min(bytes.length, position + length));
      dest.set(part);
      return part.length;
    },
    close() {},
  };
}

function openSource(input: AudioStreamInput): ByteSource {
  return typeof input === 'string' ? fileSource(input) : memorySource(input.bytes, input.name);
}

/** A ByteView of a source: two cached blocks (header and container walks move forward). */
function sourceView(src: ByteSource): ByteView {
  const blocks: { at: number; bytes: Uint8Array }[] = [];
  return {
    length: src.size,
    byte(i: number) {
      if (!(i >= 0 && i < src.size)) return undefined;
      const at = i - (i % VIEW_BLOCK);
      let b = blocks.find((x) => x.at === at);
      if (!b) {
        const bytes = new Uint8Array(Math.min(VIEW_BLOCK, src.size - at));
        if (src.read(bytes, at, bytes.length) !== bytes.length) throw new ArdError(`${src.name}: the file changed while it was read`);
        b = { at, bytes };
        blocks.unshift(b);
        if (blocks.length > 2) blocks.pop();
      }
      return b.bytes[i - at];
    },
  };
}

/** Mono frames at the file's own rate, a block at a time. */
interface MonoSource {
  /** The next frames (possibly none); null at the end. Throws ArdError naming the file. */
  next(): Promise<Float32Array | null>;
  /** The file's rate (0 until the first frames). */
  readonly rate: number;
  /** readAudio's metadata and the frames at the file's rate, once next() has returned null. */
  info(): Omit<AudioInfo, 'length'> & { frames: number };
  close(): void;
}

class WavFrames implements MonoSource {
  private readonly layout: Layout;
  private readonly f: Format;
  private readonly frames: number;
  private readonly perBlock: number;
  private readonly buf: Uint8Array;
  private done = 0;

  constructor(
    private readonly src: ByteSource,
    view: ByteView,
    blockBytes: number,
  ) {
    ({ layout: this.layout, format: this.f, frames: this.frames } = wavLayout(view, src.name));
    this.perBlock = Math.max(1, Math.floor(blockBytes / this.f.blockAlign));
    this.buf = new Uint8Array(Math.min(this.perBlock, this.frames) * this.f.blockAlign);
  }

  get rate(): number {
    return this.f.rate;
  }

  async next(): Promise<Float32Array | null> {
    return this.nextSync();
  }

  /** next(), synchronously (WAV data needs no decoder). */
  nextSync(): Float32Array | null {
    if (this.done >= this.frames) return null;
    const k = Math.min(this.perBlock, this.frames - this.done);
    const bytes = k * this.f.blockAlign;
    const got = this.src.read(this.buf, this.layout.data.start + this.done * this.f.blockAlign, bytes);
    if (got !== bytes) throw new ArdError(`${this.src.name}: the file changed while it was read (it is shorter than its header said)`);
    const out = decodeMonoFrames(this.buf, this.f, k, this.done, this.src.name);
    this.done += k;
    return out;
  }

  /** Float samples must be read to be checked (NaN, infinities); integers cannot be wrong. */
  get isFloat(): boolean {
    return this.f.bitDepth === '32f' || this.f.bitDepth === '64';
  }

  info(): Omit<AudioInfo, 'length'> & { frames: number } {
    return { format: 'wav', sampleRate: TARGET_RATE, originalRate: this.f.rate, channels: this.f.channels, duration: this.frames / this.f.rate, bitDepth: this.f.bitDepth, frames: this.frames };
  }

  close(): void {
    this.src.close();
  }
}

/**
 * FLAC, Ogg Vorbis/Opus/FLAC and MP3 through their decoders' chunked decode(), with decodeAudio's
 * checks, trims and mixdown, in its order of precedence when a file has several problems.
 */
class CodecFrames implements MonoSource {
  private pos: number;
  private closed = false;
  private padFed = false;
  private flushed = false;
  private finished = false;
  /** A problem seen: nothing more is handed out; the rest is decoded for the message readAudio gives. */
  private failing = false;
  private readonly errors: { message: string }[] = [];
  private readonly printed: string[] = [];
  private nonFinite = -1;
  private decodedTotal = 0;
  private emitted = 0;
  private rate_ = 0;
  private bitDepth: number | undefined;
  private channels = 0;

  private constructor(
    private readonly src: ByteSource,
    private readonly format: Exclude<AudioFormat, 'wav'>,
    offset: number,
    private readonly decoder: Decoder,
    private readonly blockBytes: number,
    /** FLAC: STREAMINFO's sample count (0: unknown). */
    private readonly declared: number,
    /** Frames handed out at most: FLAC's declared count, an Opus stream's end (RFC 7845, 4.4). */
    private readonly cap: number,
    /** MP3: the channels the first frame header says (mpg123 always gives two). */
    private readonly stored: number | undefined,
  ) {
    this.pos = offset;
  }

  static async open(src: ByteSource, format: Exclude<AudioFormat, 'wav'>, offset: number, view: ByteView, blockBytes: number): Promise<CodecFrames> {
    checkComplete(view, format, offset, src.name);
    // what decodeAudio reads from the whole file, here from the container walked in blocks
    const declared = format === 'flac' ? flacDeclaredFrames(view, offset) : 0;
    const end = format === 'opus' ? opusEndSamples(view) : 0;
    const cap = declared > 0 ? declared : end > 0 ? end : Infinity;
    const stored = format === 'mp3' ? mpegHeader(view, mp3DeclaredFrames(view).first)?.channels : undefined;
    let decoder: Decoder | undefined;
    try {
      await quietly(async () => {
        decoder = await newDecoder(format);
        await decoder.ready;
      });
    } catch (e) {
      freeDecoder(decoder);
      if (e instanceof ArdError) throw e;
      refuse(src.name, format, 'corrupt data (the decoder could not read it)');
    }
    return new CodecFrames(src, format, offset, decoder!, blockBytes, declared, cap, stored);
  }

  get rate(): number {
    return this.rate_;
  }

  /** The next decoder call: a block of the file, FLAC's pad byte, the flush; null when all are done. */
  private async step(): Promise<Decoded | null> {
    let call: (() => Decoded | Promise<Decoded>) | null = null;
    if (this.pos < this.src.size) {
      // A new array each time: the parsers may keep a view of a block's tail for the next frame.
      // (FLACDecoder tells native from Ogg FLAC by its first call's first 4 bytes: blocks are ≥ 16.)
      const len = Math.min(this.src.size - this.pos, this.blockBytes);
      const block = new Uint8Array(len);
      if (this.src.read(block, this.pos, len) !== len) throw new ArdError(`${this.src.name}: the file changed while it was read`);
      this.pos += len;
      call = () => this.decoder.decode(block);
    } else if (this.format === 'flac' && !this.padFed) {
      // decodeAudio's fix for a short last frame: one byte after it (see there)
      this.padFed = true;
      call = () => this.decoder.decode(new Uint8Array(1));
    } else if (this.decoder.flush && !this.flushed) {
      this.flushed = true;
      call = () => this.decoder.flush!();
    }
    if (!call) return null;
    try {
      const { value, printed } = await quietly(async () => call());
      this.printed.push(...printed);
      return value;
    } catch (e) {
      this.close();
      if (e instanceof ArdError) throw e;
      // a WebAssembly trap or the decoder's internal message: neither says anything to the user
      refuse(this.src.name, this.format, 'corrupt data (the decoder could not read it)');
    }
  }

  async next(): Promise<Float32Array | null> {
    for (;;) {
      if (this.finished) return null;
      const out = await this.step();
      if (!out) {
        this.finish();
        return null;
      }
      this.errors.push(...out.errors);
      if (this.errors.length) this.failing = true;
      const got = out.samplesDecoded;
      this.decodedTotal += got;
      if (!got || this.failing) continue;
      if (!this.rate_) this.rate_ = out.sampleRate;
      else if (out.sampleRate && out.sampleRate !== this.rate_) {
        this.close();
        refuse(this.src.name, this.format, `the sample rate changes inside the file (${this.rate_} Hz, then ${out.sampleRate} Hz); convert it to one rate first`);
      }
      if (out.bitDepth) this.bitDepth = out.bitDepth;
      this.channels = out.channelData.length;
      const take = Math.min(got, this.cap - this.emitted);
      if (take <= 0) continue;
      const mono = this.mix(out, take);
      if (this.failing) continue;
      this.emitted += take;
      return mono;
    }
  }

  /** decodeAudio's mixdown of `frames` frames (mixToMono); a non-finite sample stops the stream. */
  private mix(out: Decoded, frames: number): Float32Array {
    const { mono, nonFinite } = mixToMono(this.format, out, frames);
    if (nonFinite >= 0) {
      this.nonFinite = this.emitted + nonFinite;
      this.failing = true;
    }
    return mono;
  }

  /** At the end: decodeAudio's refusals, in its order. */
  private finish(): void {
    this.close();
    const { src, format } = this;
    if (this.errors.length) {
      const first = this.errors[0]?.message ?? this.printed.find((p) => p.trim());
      refuse(src.name, format, `corrupt data (${this.errors.length} frame(s) failed to decode; first: ${first})`);
    }
    if (!this.decodedTotal || !this.rate_) refuse(src.name, format, 'no samples decoded');
    if (this.declared && this.decodedTotal < this.declared) refuse(src.name, format, `truncated (STREAMINFO declares ${this.declared} samples, ${this.decodedTotal} decoded)`);
    if (this.nonFinite >= 0) refuse(src.name, format, `non-finite sample at frame ${this.nonFinite}`);
  }

  info(): Omit<AudioInfo, 'length'> & { frames: number } {
    const isFlac = this.format === 'flac' || this.format === 'ogg-flac';
    return {
      format: this.format,
      sampleRate: TARGET_RATE,
      originalRate: this.rate_,
      channels: this.stored ?? this.channels,
      duration: this.emitted / this.rate_,
      bitDepth: isFlac ? String(this.bitDepth ?? 16) : '32f',
      frames: this.emitted,
    };
  }

  close(): void {
    if (this.closed) return;
    // a closed stream (refused, ended or closed by its reader) gives nothing more
    this.closed = this.finished = true;
    freeDecoder(this.decoder);
    this.src.close();
  }
}

async function openMono(input: AudioStreamInput, opts: AudioStreamOptions): Promise<MonoSource> {
  const src = openSource(input);
  try {
    const view = sourceView(src);
    const { format, offset } = sniffView(view, src.name);
    const blockBytes = Math.max(16, Math.floor(opts.blockBytes ?? (format === 'wav' ? WAV_BLOCK : CODEC_BLOCK)));
    if (format === 'wav') return new WavFrames(src, view, blockBytes);
    return await CodecFrames.open(src, format, offset, view, blockBytes);
  } catch (e) {
    src.close();
    throw e;
  }
}

/** An audio file as consecutive 16 kHz mono blocks; see the top of this file. */
export class AudioStream {
  private resampler: StreamResampler | null = null;
  private queue: Float32Array[] = [];
  private queued = 0;
  private ended = false;
  /** 16 kHz samples handed out so far. */
  position = 0;

  /** @internal use openAudioStream */
  constructor(
    private readonly mono: MonoSource,
    readonly name: string,
  ) {}

  /**
   * The next `n` samples (fewer only at the end of the clip); null once all have been read.
   * Throws ArdError naming the file when the file turns out to be damaged.
   */
  async read(n: number): Promise<Float32Array | null> {
    if (!(Number.isInteger(n) && n > 0)) throw new RangeError(`AudioStream.read: ${n} samples`);
    while (this.queued < n && !this.ended) await this.fill();
    if (this.queued === 0) return null;
    const k = Math.min(n, this.queued);
    let out: Float32Array;
    if (this.queue[0]!.length === k) out = this.queue.shift()!;
    else {
      out = new Float32Array(k);
      let at = 0;
      while (at < k) {
        const head = this.queue[0]!;
        const t = Math.min(head.length, k - at);
        out.set(head.subarray(0, t), at);
        at += t;
        if (t === head.length) this.queue.shift();
        else this.queue[0] = head.subarray(t);
      }
    }
    this.queued -= k;
    this.position += k;
    return out;
  }

  /** readAudio's metadata; available once read() has returned null. */
  info(): AudioInfo {
    if (!this.ended) throw new Error('AudioStream.info: the stream has not ended');
    const { frames: _, ...info } = this.mono.info();
    return { ...info, length: this.position + this.queued };
  }

  close(): void {
    this.mono.close();
  }

  private async fill(): Promise<void> {
    const m = await this.mono.next();
    if (m === null) {
      this.ended = true;
      this.mono.close();
      if (this.resampler) this.enqueue(this.resampler.end());
      return;
    }
    if (!m.length) return;
    if (!this.resampler) this.resampler = await makeResampler(this.mono, this.name);
    this.enqueue(this.resampler.push(m));
  }

  private enqueue(y: Float32Array): void {
    if (!y.length) return;
    this.queue.push(y);
    this.queued += y.length;
  }
}

/**
 * The resampler from the file's rate to 16 kHz. A rate whose filter cannot be built is refused as
 * readAudio refuses it, after the rest of the file has been checked (readAudio resamples last).
 */
async function makeResampler(mono: MonoSource, name: string): Promise<StreamResampler> {
  try {
    return new StreamResampler(mono.rate, TARGET_RATE);
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    try {
      while ((await mono.next()) !== null);
    } finally {
      mono.close();
    }
    throw resampleRefusal(name, mono.rate);
  }
}

/** Open an audio file (or bytes) as a stream of 16 kHz mono samples. The caller closes it. */
export async function openAudioStream(input: AudioStreamInput, opts: AudioStreamOptions = {}): Promise<AudioStream> {
  const mono = await openMono(input, opts);
  return new AudioStream(mono, typeof input === 'string' ? input : input.name);
}

/**
 * readAudio's metadata and sample count for a file, and its refusal if it has one, with memory flat
 * in the file's length: a PCM WAV is judged by its header, anything else decoded through (not
 * resampled).
 */
export async function measureAudio(input: AudioStreamInput, opts: AudioStreamOptions = {}): Promise<AudioInfo> {
  const name = typeof input === 'string' ? input : input.name;
  const mono = await openMono(input, opts);
  try {
    // a PCM WAV cannot fail once its header has been read
    if (!(mono instanceof WavFrames) || mono.isFloat) while ((await mono.next()) !== null);
  } finally {
    mono.close();
  }
  const { frames, ...info } = mono.info();
  try {
    void new StreamResampler(info.originalRate, TARGET_RATE);
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    throw resampleRefusal(name, info.originalRate);
  }
  return { ...info, length: resampledLength(frames, info.originalRate, TARGET_RATE) };
}

/**
 * An audio file's 16 kHz samples, `size` at a time (the last block may be shorter), in order. The
 * file is closed when the loop ends, however it ends.
 */
export async function* audioBlocks(input: AudioStreamInput, size: number, opts: AudioStreamOptions = {}): AsyncGenerator<Float32Array> {
  const s = await openAudioStream(input, opts);
  try {
    for (let b = await s.read(size); b !== null; b = await s.read(size)) yield b;
  } finally {
    s.close();
  }
}

/** A clip to be taken window by window (openClip). */
export interface ClipReader {
  /** 16 kHz samples in the clip (readAudio(file).samples.length). */
  readonly length: number;
  /** readAudio's metadata. */
  readonly info: AudioInfo;
  /**
   * Samples [from, to) of the clip, exactly readAudio(file).samples.subarray(from, to). Ranges must
   * come in order (each from ≥ the last to); skipped samples are decoded and dropped.
   */
  window(from: number, to: number): Promise<Float32Array>;
  close(): void;
}

/**
 * Open a clip to be taken window by window with memory flat in its length. A clip of at most
 * `windowSamples` samples is read whole, in one pass. A longer one is measured first (so that a
 * damaged file is refused, with readAudio's message, before any window is used), then read a
 * window at a time; its first window is kept from the first pass.
 */
export async function openClip(input: AudioStreamInput, windowSamples: number, opts: AudioStreamOptions = {}): Promise<ClipReader> {
  const name = typeof input === 'string' ? input : input.name;
  const first = await openAudioStream(input, opts);
  let head: Float32Array;
  try {
    head = (await first.read(windowSamples + 1)) ?? new Float32Array(0);
    if (head.length <= windowSamples) {
      // the stream has ended, so every check has been made
      const info = first.info();
      return {
        length: head.length,
        info,
        window: async (from, to) => head.subarray(from, to),
        close: () => {},
      };
    }
  } finally {
    first.close();
  }
  const info = await measureAudio(input, opts);
  let rest: AudioStream | null = null;
  let last = 0;
  return {
    length: info.length,
    info,
    async window(from, to) {
      if (from < last || to < from || to > info.length) throw new RangeError(`ClipReader.window: [${from}, ${to}) after [·, ${last}) of ${info.length}`);
      last = to;
      if (to <= windowSamples) return head.slice(from, to);
      rest ??= await openAudioStream(input, opts);
      while (rest.position < from) {
        const skipped = await rest.read(Math.min(from - rest.position, windowSamples));
        if (!skipped) break;
      }
      const got = to > from ? await rest.read(to - from) : new Float32Array(0);
      if (rest.position !== to || !got) throw new ArdError(`${name}: the file changed while it was read (it gave ${rest.position} samples where ${to} were expected)`);
      return got;
    },
    close() {
      rest?.close();
    },
  };
}

/**
 * The first `n` 16 kHz samples of a WAV file, exactly readAudio(file).samples.subarray(0, n), read
 * synchronously and only as far as they need: a PCM WAV cannot fail past its header, float data is
 * read to its end (readAudio refuses a non-finite sample anywhere). Another format gives its name
 * and no samples: its decoders are asynchronous (read it with openClip).
 */
export function wavHeadSync(input: AudioStreamInput, n: number): { format: AudioFormat; samples: Float32Array | null } {
  if (!(Number.isInteger(n) && n >= 0)) throw new RangeError(`wavHeadSync: ${n} samples`);
  const src = openSource(input);
  try {
    const view = sourceView(src);
    const { format } = sniffView(view, src.name);
    if (format !== 'wav') return { format, samples: null };
    const wav = new WavFrames(src, view, WAV_BLOCK);
    const out = new Float32Array(n);
    let got = 0;
    const put = (y: Float32Array) => {
      const k = Math.min(y.length, n - got);
      out.set(y.subarray(0, k), got);
      got += k;
    };
    let rs: StreamResampler | null = null;
    let ended = true;
    for (let m = wav.nextSync(); m !== null; m = wav.nextSync()) {
      if (!m.length) continue;
      if (!rs) {
        // AudioStream's order: a rate without a filter is refused once the rest has been checked
        try {
          rs = new StreamResampler(wav.rate, TARGET_RATE);
        } catch (e) {
          if (!(e instanceof RangeError)) throw e;
          while (wav.nextSync() !== null);
          throw resampleRefusal(src.name, wav.rate);
        }
      }
      if (got < n) put(rs.push(m));
      if (got >= n && !wav.isFloat) {
        ended = false;
        break;
      }
    }
    if (ended && rs && got < n) put(rs.end());
    return { format, samples: got === n ? out : out.slice(0, got) };
  } finally {
    src.close();
  }
}
