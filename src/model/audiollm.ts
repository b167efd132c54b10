// Qwen2AudioForConditionalGeneration on ardgpu: the audio tower and projector (audio-encoder.ts),
// splicing of audio features at the <|AUDIO|> placeholders, and the Qwen2 decoder (decoder.ts).
//
//   samples ─ window by window ─ log-mel (GPU) ─ encodeWindow ─┐ features of all windows, concatenated
//   ids ─ embed_tokens ─ rows at audio_token_index ← features ─┴─ decoderStep (KV cache) ─ logits
//
// Every public method returns tensors the caller owns (dispose them, or call inside tidy()).
import { FrontendConfig, windowFeatures } from '../audio/logmel.js';
import type { Engine } from '../gpu/engine.js';
import { tidy } from '../tensor/scope.js';
import { Tensor, tensor } from '../tensor/tensor.js';
import { cast, where } from '../tensor/ops/elementwise.js';
import { concat } from '../tensor/ops/layout.js';
import { embedding, indexSelect } from '../tensor/ops/index.js';
import { ArdError } from '../util/errors.js';
import { EncodeResult, EncoderWeights, audioTokenCount, encodeWindow } from './audio-encoder.js';
import type { Qwen2AudioConfig } from './config.js';
import { DecoderStepOptions, DecoderWeights, KVCache, decoderStep, decoderStepBatch } from './decoder.js';
import { Hooks } from './hooks.js';
import type { Tokenizer } from './tokenizer.js';
import type { LoadStats } from './load.js';

export interface GenerationDefaults {
  /** Tokens that end generation (generation_config.json eos_token_id, config eos, <|im_end|>, <|endoftext|>). */
  eosTokenIds: number[];
  /** generation_config.json's sampling settings (ardgpu generates greedily unless asked). */
  doSample: boolean;
  temperature?: number;
  topP?: number;
  topK?: number;
}

export interface AudioLLMParts {
  config: Qwen2AudioConfig;
  frontend: FrontendConfig;
  encoder: EncoderWeights;
  decoder: DecoderWeights;
  tokenizer: Tokenizer | null;
  generation: GenerationDefaults;
  dtype: 'f32' | 'f16';
  /** KV cache dtype (default: dtype). */
  kvDtype?: 'f32' | 'f16';
  /** Where the weights came from (for messages). */
  source: string;
  /** What loading held on the host and read (loadAudioLLM). */
  loadStats?: LoadStats;
}

export interface ForwardOptions {
  /** Rows of the sequence whose logits are wanted (default 'last'; 'none' returns null). */
  logits?: DecoderStepOptions['logits'];
  /** Run decoder layers 0..lastLayer only (for capture; needs logits 'none'). */
  lastLayer?: number;
}

/** One encoder window of a clip (see AudioLLM.windows). */
export interface AudioWindow {
  /** Position of the window in the clip (0 = the first). */
  index: number;
  /** Samples [from, to) of the clip. */
  from: number;
  to: number;
  /** The same range in seconds. */
  start: number;
  end: number;
  /** Audio tokens (prompt placeholders) the window gives. */
  tokens: number;
}

export class AudioLLM {
  readonly config: Qwen2AudioConfig;
  readonly frontend: FrontendConfig;
  readonly encoder: EncoderWeights;
  readonly decoder: DecoderWeights;
  readonly tokenizer: Tokenizer | null;
  readonly generation: GenerationDefaults;
  readonly dtype: 'f32' | 'f16';
  /**
   * Dtype of the KV caches newCache() makes: the weight dtype unless chosen at load (kvDtype). An
   * f16 cache halves its memory; keys and values are computed in f32 and rounded once when stored.
   */
  kvDtype: 'f32' | 'f16';
  readonly source: string;
  readonly loadStats?: LoadStats;
  /** Residual-stream hooks for capture and steering (see hooks.ts). */
  readonly hooks: Hooks;
  private disposed = false;

  constructor(readonly engine: Engine, parts: AudioLLMParts) {
    this.config = parts.config;
    this.frontend = parts.frontend;
    this.encoder = parts.encoder;
    this.decoder = parts.decoder;
    this.tokenizer = parts.tokenizer;
    this.generation = parts.generation;
    this.dtype = parts.dtype;
    this.kvDtype = parts.kvDtype ?? parts.dtype;
    this.source = parts.source;
    if (parts.loadStats) this.loadStats = parts.loadStats;
    this.hooks = new Hooks({ decoder: parts.decoder.layers.length, encoder: parts.encoder.layers.length });
  }

  get audioTokenIndex(): number {
    return this.config.audio_token_index;
  }

  private alive(): void {
    if (this.disposed) throw new ArdError(`model ${this.source}: used after dispose()`);
  }

  /**
   * Samples in one encoder window: the preprocessor config's n_samples (480000 = 30 s for
   * Qwen2-Audio, 64000 = 4 s for the embedded model). One prompt carries at most one window of a
   * clip, as Qwen2-Audio's processor does; longer clips are taken window by window (windows()).
   */
  get windowSamples(): number {
    return this.frontend.nSamples;
  }

  /** Seconds of audio per audio token: the mel hop × the conv stem's stride 2 × the pool's 2. */
  get frameSeconds(): number {
    return (this.frontend.hopLength / this.frontend.samplingRate) * 4;
  }

  /** Seconds in one encoder window. */
  get windowSeconds(): number {
    return this.frontend.nSamples / this.frontend.samplingRate;
  }

  /**
   * A clip of `n` samples cut into the model's windows [from, to) in order, the last one shorter;
   * a tail too short to give an audio token (under three mel frames) is dropped. A full window
   * gives windowSeconds / frameSeconds tokens, so the rows of consecutive windows are consecutive
   * in time: row r of the clip's windows, concatenated, starts at r × frameSeconds.
   */
  windows(n: number): AudioWindow[] {
    const out: AudioWindow[] = [];
    const sr = this.frontend.samplingRate;
    for (let from = 0, index = 0; from < n; from += this.windowSamples, index++) {
      const to = Math.min(n, from + this.windowSamples);
      const tokens = audioTokenCount(Math.ceil((to - from) / this.frontend.hopLength));
      if (tokens > 0) out.push({ index, from, to, start: from / sr, end: to / sr, tokens });
    }
    return out;
  }

  /** Audio tokens each window of a clip of `n` samples gives (windows with none are dropped). */
  audioTokenCounts(n: number): number[] {
    return this.windows(n).map((w) => w.tokens);
  }

  /** Total audio tokens (placeholders in the prompt) for a clip of `n` samples. */
  audioTokens(n: number): number {
    return this.audioTokenCounts(n).reduce((a, b) => a + b, 0);
  }

  /**
   * One padded window's log-mel [n_mels, 2·max_source_positions] with `validFrames` real frames
   * through the audio tower and projector.
   */
  encodeMel(mel: Tensor, validFrames: number, opts: { window?: number; intermediate?: boolean } = {}): EncodeResult {
    this.alive();
    return this.engine.noGradScope(() =>
      tidy(() => encodeWindow(this.encoder, this.config.audio_config, mel, validFrames, { hooks: this.hooks, ...opts })),
    );
  }

  /**
   * Audio features [audioTokens(samples.length), hidden] of a 16 kHz mono clip: cut into windows,
   * each padded and encoded, features concatenated in order.
   */
  encodeAudio(samples: Float32Array): Tensor {
    this.alive();
    if (samples.length === 0) throw new ArdError('encodeAudio: empty clip');
    const parts: Tensor[] = [];
    try {
      for (const w of this.windows(samples.length)) {
        const chunk = samples.subarray(w.from, w.to);
        const f = tidy(() => {
          const wf = windowFeatures(this.engine, chunk, this.frontend);
          return this.encodeMel(wf.mel, wf.validFrames, { window: w.index }).features;
        });
        parts.push(f);
      }
      if (parts.length === 0) throw new ArdError(`encodeAudio: a clip of ${samples.length} samples is too short to give an audio token`);
      if (parts.length === 1) return parts.pop()!;
      return tidy(() => concat(parts, 0));
    } finally {
      for (const p of parts) p.dispose();
    }
  }

  /**
   * inputs_embeds [ids.length, hidden] (f32): token embeddings with the rows at
   * audio_token_index placeholders replaced, in order, by the rows of `audio`. With
   * `splice: false` every id is embedded as a token (generated tokens are never spliced).
   */
  embed(ids: readonly number[], audio: Tensor | null = null, opts: { splice?: boolean } = {}): Tensor {
    const splice = opts.splice ?? true;
    this.alive();
    const V = this.config.text_config.vocab_size;
    const slots: number[] = [];
    ids.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new ArdError(`embed: token id ${id} at position ${i} is outside the vocabulary (0–${V - 1})`);
      if (splice && id === this.audioTokenIndex) slots.push(i);
    });
    const nFeat = audio ? audio.shape[0]! : 0;
    if (!splice && audio) throw new ArdError('embed: audio features given with splice: false');
    if (slots.length !== nFeat) {
      throw new ArdError(`embed: the prompt has ${slots.length} audio placeholders but there are ${nFeat} audio feature rows`);
    }
    if (audio && (audio.rank !== 2 || audio.shape[1] !== this.config.text_config.hidden_size)) {
      throw new ArdError(`embed: audio features must be [n, ${this.config.text_config.hidden_size}], got [${audio.shape.join(', ')}]`);
    }
    return this.engine.noGradScope(() =>
      tidy(() => {
        const rows = embedding(this.decoder.embed, tensor(this.engine, ids as number[], [ids.length], 'i32'));
        const x = rows.dtype === 'f32' ? rows : cast(rows, 'f32');
        if (!audio || slots.length === 0) return x;
        // feature row for each position (placeholder k takes row k), then a row-wise select
        const src = new Int32Array(ids.length);
        const isSlot = new Float32Array(ids.length);
        slots.forEach((pos, k) => {
          src[pos] = k;
          isSlot[pos] = 1;
        });
        const spread = indexSelect(audio, 0, tensor(this.engine, src, [ids.length], 'i32'));
        return where(tensor(this.engine, isSlot, [ids.length, 1]), spread, x);
      }),
    );
  }

  /** Embeddings [n, hidden] (f32) of an i32 tensor of n token ids already on the GPU (no splicing). */
  embedTokens(ids: Tensor): Tensor {
    this.alive();
    if (ids.dtype !== 'i32' || ids.rank !== 1) throw new ArdError(`embedTokens: ids must be a 1-D i32 tensor, got ${ids.dtype}[${ids.shape.join(', ')}]`);
    return this.engine.noGradScope(() =>
      tidy(() => {
        const rows = embedding(this.decoder.embed, ids);
        return rows.dtype === 'f32' ? rows : cast(rows, 'f32');
      }),
    );
  }

  /** A KV cache of up to `capacity` positions, in kvDtype unless given. */
  newCache(capacity: number, dtype: 'f32' | 'f16' = this.kvDtype): KVCache {
    this.alive();
    const max = this.config.text_config.max_position_embeddings;
    if (capacity > max) throw new ArdError(`KV cache: ${capacity} positions exceed max_position_embeddings ${max}`);
    if (dtype === 'f16' && !this.engine.f16) throw new ArdError('KV cache: f16 needs the shader-f16 feature, which this adapter lacks');
    return new KVCache(this.engine, this.config.text_config, capacity, dtype);
  }

  /**
   * Runs embeddings [L, hidden] through the decoder at the cache's next positions (appending to
   * it) and returns the logits at the requested rows.
   */
  step(embeds: Tensor, cache: KVCache, opts: { logits?: DecoderStepOptions['logits']; step?: number; lastLayer?: number; sequence?: number } = {}): Tensor | null {
    this.alive();
    return this.engine.noGradScope(() =>
      tidy(() => {
        const r = decoderStep(this.decoder, this.config.text_config, embeds, {
          cache,
          hooks: this.hooks,
          step: opts.step ?? 0,
          logits: opts.logits ?? 'last',
          lastLayer: opts.lastLayer,
          sequence: opts.sequence,
        });
        return r.logits ?? null;
      }),
    );
  }

  /**
   * One new position for each of several sequences: embeds [B, hidden], row b continuing caches[b]
   * (see decoderStepBatch) → logits [B, vocab].
   */
  stepBatch(embeds: Tensor, caches: KVCache[], opts: { steps?: number[]; sequences?: number[] } = {}): Tensor {
    this.alive();
    return this.engine.noGradScope(() =>
      tidy(() => decoderStepBatch(this.decoder, this.config.text_config, embeds, { caches, hooks: this.hooks, steps: opts.steps, sequences: opts.sequences })),
    );
  }

  /**
   * One full forward pass from scratch: token ids with `audio` features spliced at the
   * placeholders → logits [rows, vocab] at the requested rows (hooks run at every position).
   */
  forward(ids: readonly number[], audio: Tensor | null, opts: ForwardOptions = {}): Tensor | null {
    const x = this.embed(ids, audio);
    const cache = this.newCache(ids.length);
    try {
      return this.step(x, cache, { logits: opts.logits ?? 'last', lastLayer: opts.lastLayer });
    } finally {
      cache.dispose();
      x.dispose();
    }
  }

  /** Frees every weight. The model cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.hooks.clear();
    const seen = new Set<Tensor>();
    const walk = (v: unknown) => {
      if (v instanceof Tensor) seen.add(v);
      else if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') Object.values(v).forEach(walk);
    };
    walk(this.encoder);
    walk(this.decoder);
    for (const t of seen) t.dispose();
  }
}
