import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArdError } from '../util/errors.js';
import { readJson } from '../util/fs.js';
import type { TensorSource } from '../io/safetensors.js';

// The Hugging Face Qwen2-Audio config.json, with the defaults transformers fills in for missing
// keys (Qwen2AudioEncoderConfig / Qwen2Config), so a real checkpoint's sparse config.json and our
// own fully-written one read the same way.

export interface Qwen2AudioEncoderConfig {
  num_mel_bins: number;
  d_model: number;
  encoder_layers: number;
  encoder_attention_heads: number;
  encoder_ffn_dim: number;
  max_source_positions: number;
  activation_function: string;
  scale_embedding: boolean;
}

export interface Qwen2TextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  /** hidden_size / num_attention_heads unless the file says otherwise. */
  head_dim: number;
  hidden_act: string;
  rms_norm_eps: number;
  rope_theta: number;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
}

export interface Qwen2AudioConfig {
  audio_config: Qwen2AudioEncoderConfig;
  text_config: Qwen2TextConfig;
  audio_token_index: number;
  /** The parsed file as it was, for keys this type does not name. */
  raw: Record<string, unknown>;
}

export const AUDIO_DEFAULTS: Readonly<Qwen2AudioEncoderConfig> = {
  num_mel_bins: 128,
  d_model: 1280,
  encoder_layers: 32,
  encoder_attention_heads: 20,
  encoder_ffn_dim: 5120,
  max_source_positions: 1500,
  activation_function: 'gelu',
  scale_embedding: false,
};

export const TEXT_DEFAULTS: Readonly<Omit<Qwen2TextConfig, 'head_dim'>> = {
  vocab_size: 151936,
  hidden_size: 4096,
  intermediate_size: 22016,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  hidden_act: 'silu',
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  max_position_embeddings: 32768,
  tie_word_embeddings: false,
  bos_token_id: null,
  eos_token_id: null,
};

export const AUDIO_TOKEN_INDEX_DEFAULT = 151646;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

class Reader {
  constructor(readonly source: string, readonly obj: Obj, readonly prefix: string) {}
  private fail(key: string, want: string, got: unknown): never {
    throw new ArdError(`${this.source}: ${this.prefix}${key} must be ${want} (got ${JSON.stringify(got)})`);
  }
  posInt(key: string, def: number): number {
    const v = this.obj[key] ?? def;
    if (!Number.isSafeInteger(v) || (v as number) <= 0) this.fail(key, 'a positive integer', v);
    return v as number;
  }
  posNum(key: string, def: number): number {
    const v = this.obj[key] ?? def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, 'a positive number', v);
    return v;
  }
  bool(key: string, def: boolean): boolean {
    const v = this.obj[key] ?? def;
    if (typeof v !== 'boolean') this.fail(key, 'true or false', v);
    return v;
  }
  str(key: string, def: string): string {
    const v = this.obj[key] ?? def;
    if (typeof v !== 'string') this.fail(key, 'a string', v);
    return v;
  }
  optInt(key: string): number | null {
    const v = this.obj[key] ?? null;
    if (v !== null && (!Number.isSafeInteger(v) || (v as number) < 0)) this.fail(key, 'a non-negative integer or null', v);
    return v as number | null;
  }
  optIntOrList(key: string): number | number[] | null {
    const v = this.obj[key] ?? null;
    if (Array.isArray(v)) {
      if (!v.every((x) => Number.isSafeInteger(x) && x >= 0)) this.fail(key, 'a list of non-negative integers', v);
      return v as number[];
    }
    return this.optInt(key);
  }
  fail2(msg: string): never {
    throw new ArdError(`${this.source}: ${msg}`);
  }
}

/** Validates a parsed config.json; `source` names it in errors. */
export function parseQwen2AudioConfig(json: unknown, source = 'config.json'): Qwen2AudioConfig {
  if (!isObj(json)) throw new ArdError(`${source}: not a JSON object`);
  const top = new Reader(source, json, '');
  if (json.model_type !== undefined && json.model_type !== 'qwen2_audio') {
    top.fail2(`model_type is ${JSON.stringify(json.model_type)}, expected "qwen2_audio"`);
  }
  for (const k of ['audio_config', 'text_config'] as const) {
    if (json[k] !== undefined && json[k] !== null && !isObj(json[k])) top.fail2(`${k} must be an object`);
  }
  const a = new Reader(source, (json.audio_config as Obj) ?? {}, 'audio_config.');
  const t = new Reader(source, (json.text_config as Obj) ?? {}, 'text_config.');
  if (t.obj.model_type !== undefined && t.obj.model_type !== 'qwen2') {
    t.fail2(`text_config.model_type is ${JSON.stringify(t.obj.model_type)}; only "qwen2" is supported`);
  }

  const audio: Qwen2AudioEncoderConfig = {
    num_mel_bins: a.posInt('num_mel_bins', AUDIO_DEFAULTS.num_mel_bins),
    d_model: a.posInt('d_model', AUDIO_DEFAULTS.d_model),
    encoder_layers: a.posInt('encoder_layers', AUDIO_DEFAULTS.encoder_layers),
    encoder_attention_heads: a.posInt('encoder_attention_heads', AUDIO_DEFAULTS.encoder_attention_heads),
    encoder_ffn_dim: a.posInt('encoder_ffn_dim', AUDIO_DEFAULTS.encoder_ffn_dim),
    max_source_positions: a.posInt('max_source_positions', AUDIO_DEFAULTS.max_source_positions),
    activation_function: a.str('activation_function', AUDIO_DEFAULTS.activation_function),
    scale_embedding: a.bool('scale_embedding', AUDIO_DEFAULTS.scale_embedding),
  };
  if (audio.d_model % audio.encoder_attention_heads !== 0) {
    a.fail2(`audio_config.d_model (${audio.d_model}) is not divisible by audio_config.encoder_attention_heads (${audio.encoder_attention_heads})`);
  }

  const hidden = t.posInt('hidden_size', TEXT_DEFAULTS.hidden_size);
  const heads = t.posInt('num_attention_heads', TEXT_DEFAULTS.num_attention_heads);
  // Like transformers: num_key_value_heads defaults to num_attention_heads.
  const kvHeads = t.posInt('num_key_value_heads', heads);
  if (t.obj.head_dim === undefined && hidden % heads !== 0) {
    t.fail2(`text_config.hidden_size (${hidden}) is not divisible by text_config.num_attention_heads (${heads})`);
  }
  const headDim = t.posInt('head_dim', Math.floor(hidden / heads));
  if (heads % kvHeads !== 0) {
    t.fail2(`text_config.num_attention_heads (${heads}) is not divisible by text_config.num_key_value_heads (${kvHeads})`);
  }
  if (headDim % 2 !== 0) t.fail2(`text_config.head_dim (${headDim}) must be even for rotary embeddings`);
  const text: Qwen2TextConfig = {
    vocab_size: t.posInt('vocab_size', TEXT_DEFAULTS.vocab_size),
    hidden_size: hidden,
    intermediate_size: t.posInt('intermediate_size', TEXT_DEFAULTS.intermediate_size),
    num_hidden_layers: t.posInt('num_hidden_layers', TEXT_DEFAULTS.num_hidden_layers),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    hidden_act: t.str('hidden_act', TEXT_DEFAULTS.hidden_act),
    rms_norm_eps: t.posNum('rms_norm_eps', TEXT_DEFAULTS.rms_norm_eps),
    rope_theta: t.posNum('rope_theta', TEXT_DEFAULTS.rope_theta),
    max_position_embeddings: t.posInt('max_position_embeddings', TEXT_DEFAULTS.max_position_embeddings),
    tie_word_embeddings: t.bool('tie_word_embeddings', TEXT_DEFAULTS.tie_word_embeddings),
    bos_token_id: t.optInt('bos_token_id'),
    eos_token_id: t.optIntOrList('eos_token_id'),
  };
  const audioTok = json.audio_token_index ?? json.audio_token_id ?? AUDIO_TOKEN_INDEX_DEFAULT;
  if (!Number.isSafeInteger(audioTok) || (audioTok as number) < 0) {
    top.fail2(`audio_token_index must be a non-negative integer (got ${JSON.stringify(audioTok)})`);
  }
  if ((audioTok as number) >= text.vocab_size) {
    top.fail2(`audio_token_index (${audioTok}) is outside text_config.vocab_size (${text.vocab_size})`);
  }
  return { audio_config: audio, text_config: text, audio_token_index: audioTok as number, raw: json };
}

/** Reads `config.json` from a model directory (or the given file). */
export function loadQwen2AudioConfig(dirOrFile: string): Qwen2AudioConfig {
  const file =
    fs.existsSync(dirOrFile) && fs.statSync(dirOrFile).isDirectory() ? path.join(dirOrFile, 'config.json') : dirOrFile;
  return parseQwen2AudioConfig(readJson(file), file);
}

/** The config as Hugging Face would write it (every key this module reads, explicit). */
export function qwen2AudioConfigToJson(c: Qwen2AudioConfig): Record<string, unknown> {
  return {
    architectures: ['Qwen2AudioForConditionalGeneration'],
    model_type: 'qwen2_audio',
    audio_token_index: c.audio_token_index,
    audio_config: { model_type: 'qwen2_audio_encoder', ...c.audio_config },
    text_config: { model_type: 'qwen2', ...c.text_config },
  };
}

/** Every tensor of Qwen2AudioForConditionalGeneration (HF checkpoint names) and its shape. */
export function expectedTensorShapes(config: Qwen2AudioConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const a = config.audio_config;
  const t = config.text_config;
  const D = a.d_model;
  const A = 'audio_tower.';
  m.set(`${A}conv1.weight`, [D, a.num_mel_bins, 3]);
  m.set(`${A}conv1.bias`, [D]);
  m.set(`${A}conv2.weight`, [D, D, 3]);
  m.set(`${A}conv2.bias`, [D]);
  m.set(`${A}embed_positions.weight`, [a.max_source_positions, D]);
  for (let i = 0; i < a.encoder_layers; i++) {
    const L = `${A}layers.${i}.`;
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      m.set(`${L}self_attn.${p}.weight`, [D, D]);
      // Whisper's key projection has no bias.
      if (p !== 'k_proj') m.set(`${L}self_attn.${p}.bias`, [D]);
    }
    m.set(`${L}self_attn_layer_norm.weight`, [D]);
    m.set(`${L}self_attn_layer_norm.bias`, [D]);
    m.set(`${L}fc1.weight`, [a.encoder_ffn_dim, D]);
    m.set(`${L}fc1.bias`, [a.encoder_ffn_dim]);
    m.set(`${L}fc2.weight`, [D, a.encoder_ffn_dim]);
    m.set(`${L}fc2.bias`, [D]);
    m.set(`${L}final_layer_norm.weight`, [D]);
    m.set(`${L}final_layer_norm.bias`, [D]);
  }
  m.set(`${A}layer_norm.weight`, [D]);
  m.set(`${A}layer_norm.bias`, [D]);

  const H = t.hidden_size;
  m.set('multi_modal_projector.linear.weight', [H, D]);
  m.set('multi_modal_projector.linear.bias', [H]);

  const T = 'language_model.';
  const q = t.num_attention_heads * t.head_dim;
  const kv = t.num_key_value_heads * t.head_dim;
  m.set(`${T}model.embed_tokens.weight`, [t.vocab_size, H]);
  for (let i = 0; i < t.num_hidden_layers; i++) {
    const L = `${T}model.layers.${i}.`;
    m.set(`${L}self_attn.q_proj.weight`, [q, H]);
    m.set(`${L}self_attn.q_proj.bias`, [q]);
    m.set(`${L}self_attn.k_proj.weight`, [kv, H]);
    m.set(`${L}self_attn.k_proj.bias`, [kv]);
    m.set(`${L}self_attn.v_proj.weight`, [kv, H]);
    m.set(`${L}self_attn.v_proj.bias`, [kv]);
    m.set(`${L}self_attn.o_proj.weight`, [H, q]);
    m.set(`${L}mlp.gate_proj.weight`, [t.intermediate_size, H]);
    m.set(`${L}mlp.up_proj.weight`, [t.intermediate_size, H]);
    m.set(`${L}mlp.down_proj.weight`, [H, t.intermediate_size]);
    m.set(`${L}input_layernorm.weight`, [H]);
    m.set(`${L}post_attention_layernorm.weight`, [H]);
  }
  m.set(`${T}model.norm.weight`, [H]);
  if (!t.tie_word_embeddings) m.set(`${T}lm_head.weight`, [t.vocab_size, H]);
  return m;
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);
// How many names one error message lists per category before summarising.
const LIST_LIMIT = 40;

export interface TensorCheck {
  /** Tensors in the checkpoint that the model does not use (ignored, e.g. a tied lm_head). */
  unexpected: string[];
}

/**
 * Compares a checkpoint with the config: throws one ArdError naming every missing, mis-shaped or
 * non-float tensor; otherwise returns the names the model will ignore.
 */
export function checkTensors(
  checkpoint: Pick<TensorSource, 'tensors'> & { source?: string; file?: string },
  config: Qwen2AudioConfig,
): TensorCheck {
  const expected = expectedTensorShapes(config);
  const missing: string[] = [];
  const misShaped: string[] = [];
  const badDtype: string[] = [];
  for (const [name, shape] of expected) {
    const t = checkpoint.tensors.get(name);
    if (!t) missing.push(name);
    else {
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        misShaped.push(`${name} is [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
      }
      if (!FLOAT_DTYPES.has(t.dtype)) badDtype.push(`${name} is ${t.dtype}`);
    }
  }
  const unexpected = [...checkpoint.tensors.keys()].filter((n) => !expected.has(n)).sort();
  if (missing.length + misShaped.length + badDtype.length > 0) {
    const list = (what: string, items: string[]) => {
      if (items.length === 0) return [];
      const shown = items.slice(0, LIST_LIMIT).join(', ');
      const more = items.length > LIST_LIMIT ? `, and ${items.length - LIST_LIMIT} more` : '';
      return [`${items.length} ${what}: ${shown}${more}`];
    };
    const parts = [
      ...list('missing', missing),
      ...list('mis-shaped', misShaped),
      ...list('not F32/F16/BF16', badDtype),
    ];
    const src = checkpoint.source ?? checkpoint.file ?? 'checkpoint';
    throw new ArdError(`${src}: tensors do not match the config; ${parts.join('; ')}`);
  }
  return { unexpected };
}
