import { mulberry32 } from '../src/util/random.js';
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { f16round, getFloat16 } from '@petamoriken/float16';
import { ArdError } from '../src/util/errors.js';
import {
  openCheckpoint,
  openSafetensors,
  toBFloat16Bits,
  toFloat16Bits,
  toFloat32,
  writeSafetensors,
  type TensorToWrite,
} from '../src/io/safetensors.js';
import {
  checkTensors,
  expectedTensorShapes,
  loadQwen2AudioConfig,
  parseQwen2AudioConfig,
  qwen2AudioConfigToJson,
} from '../src/model/config.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-st-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));


function randF32(n: number, seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

/** Hand-built file: header object + raw data bytes, with an optional forged length field. */
function rawFile(name: string, header: unknown, data: Uint8Array, forgedLen?: bigint): string {
  const hb = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const buf = new Uint8Array(8 + hb.length + data.length);
  new DataView(buf.buffer).setBigUint64(0, forgedLen ?? BigInt(hb.length), true);
  buf.set(hb, 8);
  buf.set(data, 8 + hb.length);
  const f = path.join(tmp, name);
  fs.writeFileSync(f, buf);
  return f;
}

describe('safetensors write/read', () => {
  it('round-trips F32, F16, BF16, I32, I64, U8 tensors and metadata', () => {
    const f = path.join(tmp, 'rt.safetensors');
    const a = randF32(6, 1);
    const h = toFloat16Bits(randF32(12, 2));
    const b = toBFloat16Bits(randF32(5, 3));
    const i32 = Int32Array.from([-5, 0, 7, 2147483647]);
    const i64 = BigInt64Array.from([-3n, 1n << 40n]);
    const u8 = Uint8Array.from([1, 2, 3]);
    writeSafetensors(
      f,
      {
        'w.a': { dtype: 'F32', shape: [2, 3], data: a },
        'w.h': { dtype: 'F16', shape: [3, 4], data: h },
        'w.b': { dtype: 'BF16', shape: [5], data: b },
        ids: { dtype: 'I32', shape: [4], data: i32 },
        big: { dtype: 'I64', shape: [2], data: i64 },
        mask: { dtype: 'U8', shape: [3], data: u8 },
        empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
        scalar: { dtype: 'F32', shape: [], data: Float32Array.of(2.5) },
      },
      { format: 'pt', note: 'héllo' },
    );
    expect(fs.readdirSync(tmp).filter((x) => x.endsWith('.tmp'))).toEqual([]);
    const st = openSafetensors(f);
    expect(st.metadata).toEqual({ format: 'pt', note: 'héllo' });
    expect((8 + st.headerLength) % 8).toBe(0);
    expect(st.tensors.size).toBe(8);
    const wa = st.tensors.get('w.a')!;
    expect(wa).toMatchObject({ dtype: 'F32', shape: [2, 3], byteLength: 24, file: f });
    // Largest elements first, so each tensor sits at a multiple of its element size.
    for (const t of st.tensors.values()) expect(t.byteOffset % ({ F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1 } as any)[t.dtype]).toBe(0);
    expect(Array.from(st.readFloat32('w.a'))).toEqual(Array.from(a));
    expect(Array.from(new Uint16Array(st.read('w.h').buffer))).toEqual(Array.from(h));
    expect(Array.from(new Uint16Array(st.read('w.b').buffer))).toEqual(Array.from(b));
    expect(Array.from(new Int32Array(st.read('ids').buffer))).toEqual(Array.from(i32));
    expect(Array.from(new BigInt64Array(st.read('big').buffer))).toEqual([-3n, 1n << 40n]);
    expect(Array.from(st.readFloat32('big'))).toEqual([-3, 2 ** 40]);
    expect(Array.from(st.readFloat32('mask'))).toEqual([1, 2, 3]);
    expect(st.read('empty').byteLength).toBe(0);
    expect(Array.from(st.readFloat32('scalar'))).toEqual([2.5]);
    expect(() => st.read('nope')).toThrow(/rt\.safetensors: no tensor named "nope"/);
    st.close();
    expect(() => st.read('w.a')).toThrow(ArdError);
  });

  it('writes header bytes that a by-hand parse agrees with', () => {
    const f = path.join(tmp, 'hand.safetensors');
    writeSafetensors(f, { x: { dtype: 'F32', shape: [2], data: Float32Array.of(1, -2) } });
    const buf = fs.readFileSync(f);
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
    expect(header).toEqual({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } });
    expect(buf.length).toBe(8 + n + 8);
    expect(buf.readFloatLE(8 + n + 4)).toBe(-2);
  });

  it('converts f32 data to F16/BF16 on write and back exactly where representable', () => {
    const f = path.join(tmp, 'conv.safetensors');
    const exact = Float32Array.from([0, -0, 1, -2, 0.5, 65504, 2 ** -24, -(2 ** -14), 3.140625, Infinity]);
    writeSafetensors(f, {
      h: { dtype: 'F16', shape: [exact.length], data: exact },
      b: { dtype: 'BF16', shape: [exact.length], data: exact },
    });
    const st = openSafetensors(f);
    expect(Array.from(st.readFloat32('h'))).toEqual(Array.from(exact));
    expect(Array.from(st.readFloat32('b')).slice(0, 5)).toEqual(Array.from(exact).slice(0, 5));
    st.close();
  });

  it('calls lazy data producers and checks their byte length', () => {
    const f = path.join(tmp, 'lazy.safetensors');
    let calls = 0;
    writeSafetensors(f, {
      big: { dtype: 'F32', shape: [1000, 300], data: () => (calls++, randF32(300000, 9)) },
    });
    expect(calls).toBe(1);
    const st = openSafetensors(f);
    expect(Array.from(st.readFloat32('big').subarray(0, 50))).toEqual(Array.from(randF32(300000, 9).subarray(0, 50)));
    st.close();
    expect(() => writeSafetensors(f, { x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(
      /lazy\.safetensors: tensor "x": 8 data bytes but F32 \[3\] needs 12/,
    );
    expect(fs.readdirSync(tmp).filter((x) => x.endsWith('.tmp'))).toEqual([]);
  });
});

describe('dtype conversion', () => {
  it('F16 → f32 matches the reference library for all 65536 bit patterns', () => {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const got = toFloat32(new Uint8Array(bits.buffer), 'F16');
    const dv = new DataView(bits.buffer);
    const bad: number[] = [];
    for (let i = 0; i < 65536; i++) {
      const want = getFloat16(dv, i * 2, true);
      const ok = Number.isNaN(want) ? Number.isNaN(got[i]!) : Object.is(got[i], want);
      if (!ok) bad.push(i);
    }
    expect(bad).toEqual([]);
  });

  it('f32 → F16 bits rounds to nearest even like the reference library', () => {
    const r = mulberry32(42);
    const u = new Uint32Array(200000);
    for (let i = 0; i < u.length; i++) u[i] = Math.floor(r() * 2 ** 32);
    // Plus the edges: halfway cases, overflow boundary, subnormals, specials.
    const edges = [0x3f801000, 0x3f803000, 0x477fefff, 0x477ff000, 0x477fe000, 0x33000000, 0x33000001, 0x32ffffff,
      0x387fc000, 0x38800000, 0x7f800000, 0xff800000, 0x7fc00000, 0x00000001, 0x80000000, 0x3380_0000];
    edges.forEach((e, i) => (u[i] = e));
    const f = new Float32Array(u.buffer);
    const h = toFloat16Bits(f);
    const back = toFloat32(new Uint8Array(h.buffer), 'F16');
    for (let i = 0; i < f.length; i++) {
      const want = f16round(f[i]!);
      if (Number.isNaN(want)) expect(Number.isNaN(back[i]!)).toBe(true);
      else if (!Object.is(back[i], want)) expect.fail(`bits 0x${u[i]!.toString(16)}: got ${back[i]} want ${want}`);
    }
  });

  it('BF16 is the top half of f32, rounded to nearest even', () => {
    const f = Float32Array.from([1, -1.5, 3.140625, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, NaN, -Infinity]);
    const b = toBFloat16Bits(f);
    expect(Array.from(b.slice(0, 6))).toEqual([0x3f80, 0xbfc0, 0x4049, 0x3f80, 0x3f82, 0x3f81]);
    const back = toFloat32(new Uint8Array(b.buffer), 'BF16');
    expect(Array.from(back.slice(0, 3))).toEqual([1, -1.5, 3.140625]);
    expect(Number.isNaN(back[6]!)).toBe(true);
    expect(back[7]).toBe(-Infinity);
  });

  it('reads integer and fp8 types, and unaligned F32 input', () => {
    expect(Array.from(toFloat32(new Uint8Array(Int8Array.from([-128, 5]).buffer), 'I8'))).toEqual([-128, 5]);
    expect(Array.from(toFloat32(new Uint8Array(Int16Array.from([-300, 7]).buffer), 'I16'))).toEqual([-300, 7]);
    expect(Array.from(toFloat32(Uint8Array.from([0x3c, 0x38, 0x80 | 0x40]), 'F8_E5M2'))).toEqual([1, 0.5, -2]);
    expect(Array.from(toFloat32(Uint8Array.from([0x38, 0x30, 0xc0, 0x01]), 'F8_E4M3'))).toEqual([1, 0.5, -2, 2 ** -9]);
    const raw = new Uint8Array(9);
    new DataView(raw.buffer).setFloat32(1, 1.25, true);
    new DataView(raw.buffer).setFloat32(5, -7, true);
    expect(Array.from(toFloat32(raw.subarray(1), 'F32'))).toEqual([1.25, -7]);
    expect(() => toFloat32(new Uint8Array(3), 'F16')).toThrow(ArdError);
  });
});

describe('corrupt safetensors files give an ArdError naming the file', () => {
  const good = { x: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };
  const cases: [string, () => string, RegExp][] = [
    ['shorter than 8 bytes', () => (fs.writeFileSync(path.join(tmp, 'c1.safetensors'), Buffer.from([1, 2])), path.join(tmp, 'c1.safetensors')), /too short/],
    ['header length beyond the file', () => rawFile('c2.safetensors', good, new Uint8Array(16), 1_000_000n), /header length 1000000 exceeds the file size/],
    ['header not JSON', () => rawFile('c3.safetensors', '{"x": {"dtype": "F32",', new Uint8Array(16)), /header is not valid JSON/],
    ['tensor entry not an object', () => rawFile('c4.safetensors', '{"x": 1}', new Uint8Array(0)), /tensor "x": header entry is not an object/],
    ['header an array', () => rawFile('c5.safetensors', '[1,2]', new Uint8Array(0)), /not a JSON object/],
    ['unknown dtype', () => rawFile('c6.safetensors', { x: { dtype: 'F12', shape: [1], data_offsets: [0, 2] } }, new Uint8Array(2)), /tensor "x": unknown dtype "F12"/],
    ['offsets out of range', () => rawFile('c7.safetensors', { x: { dtype: 'F32', shape: [2, 2], data_offsets: [16, 32] } }, new Uint8Array(16)), /tensor "x": data_offsets \[16, 32\] run past the end/],
    ['byte length not dtype × shape', () => rawFile('c8.safetensors', { x: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, new Uint8Array(16)), /span 16 bytes but F32 \[3\] needs 12/],
    ['overlapping tensors', () => rawFile('c9.safetensors', { x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)), /"x" \[0, 8\] and "y" \[4, 12\] overlap/],
    ['bad shape', () => rawFile('c10.safetensors', { x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)), /shape \[-1\]/],
    ['reversed offsets', () => rawFile('c11.safetensors', { x: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, new Uint8Array(4)), /end before they begin/],
    ['metadata not strings', () => rawFile('c12.safetensors', { __metadata__: { n: 3 } }, new Uint8Array(0)), /__metadata__\.n is not a string/],
    ['missing file', () => path.join(tmp, 'nope.safetensors'), /cannot open \(ENOENT\)/],
  ];
  for (const [what, make, msg] of cases) {
    it(what, () => {
      const f = make();
      let err: unknown;
      try {
        openSafetensors(f).close();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ArdError);
      expect((err as Error).message).toContain(f);
      expect((err as Error).message).toMatch(msg);
    });
  }

  it('invalid UTF-8 in the header', () => {
    const f = path.join(tmp, 'utf.safetensors');
    const hb = Uint8Array.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]); // {"\xff":1}
    const buf = new Uint8Array(8 + hb.length);
    new DataView(buf.buffer).setBigUint64(0, BigInt(hb.length), true);
    buf.set(hb, 8);
    fs.writeFileSync(f, buf);
    expect(() => openSafetensors(f)).toThrow(new RegExp(`${f.replace(/[.]/g, '\\.')}: header is not valid UTF-8`));
  });

  it('a valid file cut short', () => {
    const f = path.join(tmp, 'cut.safetensors');
    writeSafetensors(f, { a: { dtype: 'F32', shape: [64], data: randF32(64, 5) }, b: { dtype: 'F32', shape: [64], data: randF32(64, 6) } });
    fs.truncateSync(f, fs.statSync(f).size - 10);
    expect(() => openSafetensors(f)).toThrow(/cut\.safetensors: tensor "b": data_offsets \[256, 512\] run past the end of the data \(502 bytes\); file truncated\?/);
  });
});

describe('checkpoints', () => {
  it('opens model.safetensors in a directory', () => {
    const dir = path.join(tmp, 'single');
    writeSafetensors(path.join(dir, 'model.safetensors'), { w: { dtype: 'F32', shape: [2], data: Float32Array.of(3, 4) } });
    const ck = openCheckpoint(dir);
    expect(ck.files).toEqual([path.join(dir, 'model.safetensors')]);
    expect(Array.from(ck.readFloat32('w'))).toEqual([3, 4]);
    ck.close();
    expect(() => openCheckpoint(path.join(tmp, 'corrupt-empty-dir-does-not-exist'))).toThrow(ArdError);
    fs.mkdirSync(path.join(tmp, 'emptydir'));
    expect(() => openCheckpoint(path.join(tmp, 'emptydir'))).toThrow(/emptydir: neither model\.safetensors nor model\.safetensors\.index\.json/);
  });

  it('opens a sharded checkpoint through its index', () => {
    const dir = path.join(tmp, 'sharded');
    const s1 = 'model-00001-of-00002.safetensors';
    const s2 = 'model-00002-of-00002.safetensors';
    writeSafetensors(path.join(dir, s1), {
      'a.weight': { dtype: 'F32', shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) },
      'b.weight': { dtype: 'BF16', shape: [2], data: Float32Array.of(0.5, -8) },
    });
    writeSafetensors(path.join(dir, s2), { 'c.bias': { dtype: 'F16', shape: [3], data: Float32Array.of(1, 2, 3) } });
    const index = { metadata: { total_size: 30 }, weight_map: { 'a.weight': s1, 'b.weight': s1, 'c.bias': s2 } };
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    const ck = openCheckpoint(dir);
    expect([...ck.tensors.keys()].sort()).toEqual(['a.weight', 'b.weight', 'c.bias']);
    expect(ck.files.length).toBe(2);
    expect(ck.tensors.get('c.bias')!.file).toBe(path.join(dir, s2));
    expect(Array.from(ck.readFloat32('a.weight'))).toEqual([1, 2, 3, 4]);
    expect(Array.from(ck.readFloat32('b.weight'))).toEqual([0.5, -8]);
    expect(Array.from(ck.readFloat32('c.bias'))).toEqual([1, 2, 3]);
    expect(ck.metadata.total_size).toBe('30');
    expect(() => ck.read('zzz')).toThrow(/sharded: no tensor named "zzz"/);
    ck.close();

    // An index that points at the wrong shard, or at a missing one.
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'a.weight': s2 } }));
    expect(() => openCheckpoint(dir)).toThrow(/index\.json: tensor "a\.weight" is mapped to model-00002-of-00002\.safetensors, which does not contain it/);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'a.weight': 'gone.safetensors' } }));
    expect(() => openCheckpoint(dir)).toThrow(/gone\.safetensors: cannot open/);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": [');
    expect(() => openCheckpoint(dir)).toThrow(/index\.json: cannot read shard index/);
  });
});

// ------------------------------------------------------------------------------------------------
// config.json

const TINY = {
  architectures: ['Qwen2AudioForConditionalGeneration'],
  model_type: 'qwen2_audio',
  audio_token_index: 7,
  audio_config: { model_type: 'qwen2_audio_encoder', num_mel_bins: 4, d_model: 8, encoder_layers: 2, encoder_attention_heads: 2, encoder_ffn_dim: 16, max_source_positions: 10 },
  text_config: { model_type: 'qwen2', vocab_size: 20, hidden_size: 12, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 3, num_key_value_heads: 1, rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: 64, tie_word_embeddings: false },
};

function writeModel(dir: string, config: any, mutate: (m: Map<string, number[]>) => void): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const shapes = expectedTensorShapes(parseQwen2AudioConfig(config));
  mutate(shapes);
  const tensors: Record<string, TensorToWrite> = {};
  let seed = 1;
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors[name] = { dtype: 'BF16', shape, data: randF32(n, seed++) };
  }
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
}

describe('Qwen2-Audio config.json', () => {
  it('fills Hugging Face defaults for missing keys (real checkpoints omit most audio keys)', () => {
    const c = parseQwen2AudioConfig({ model_type: 'qwen2_audio', audio_config: { model_type: 'qwen2_audio_encoder' }, text_config: { vocab_size: 156032, intermediate_size: 11008, max_position_embeddings: 8192, rms_norm_eps: 1e-5 } });
    expect(c.audio_config).toMatchObject({ num_mel_bins: 128, d_model: 1280, encoder_layers: 32, encoder_attention_heads: 20, encoder_ffn_dim: 5120, max_source_positions: 1500 });
    expect(c.text_config).toMatchObject({ vocab_size: 156032, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, head_dim: 128, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false });
    expect(c.audio_token_index).toBe(151646);
    const shapes = expectedTensorShapes(c);
    expect(shapes.get('audio_tower.conv1.weight')).toEqual([1280, 128, 3]);
    expect(shapes.get('language_model.lm_head.weight')).toEqual([156032, 4096]);
    // Qwen2-Audio-7B: 32 encoder layers × 15 + 7 audio, 2 projector, 32 decoder layers × 12 + 3 text.
    expect(shapes.size).toBe(32 * 15 + 7 + 2 + 32 * 12 + 3);
  });

  it('lists every tensor with its shape; no k_proj bias in the encoder; lm_head only when untied', () => {
    const c = parseQwen2AudioConfig(TINY);
    const s = expectedTensorShapes(c);
    expect(s.get('audio_tower.conv2.weight')).toEqual([8, 8, 3]);
    expect(s.get('audio_tower.embed_positions.weight')).toEqual([10, 8]);
    expect(s.get('audio_tower.layers.1.fc1.weight')).toEqual([16, 8]);
    expect(s.get('audio_tower.layers.1.fc2.weight')).toEqual([8, 16]);
    expect(s.has('audio_tower.layers.0.self_attn.k_proj.weight')).toBe(true);
    expect(s.has('audio_tower.layers.0.self_attn.k_proj.bias')).toBe(false);
    expect(s.has('audio_tower.layers.0.self_attn.q_proj.bias')).toBe(true);
    expect(s.get('multi_modal_projector.linear.weight')).toEqual([12, 8]);
    expect(s.get('language_model.model.layers.1.self_attn.q_proj.weight')).toEqual([12, 12]);
    expect(s.get('language_model.model.layers.1.self_attn.k_proj.weight')).toEqual([4, 12]);
    expect(s.get('language_model.model.layers.1.self_attn.v_proj.bias')).toEqual([4]);
    expect(s.has('language_model.model.layers.1.self_attn.o_proj.bias')).toBe(false);
    expect(s.get('language_model.model.layers.0.mlp.down_proj.weight')).toEqual([12, 24]);
    expect(s.get('language_model.lm_head.weight')).toEqual([20, 12]);
    expect(s.has('language_model.model.layers.2.input_layernorm.weight')).toBe(false);
    const tied = expectedTensorShapes(parseQwen2AudioConfig({ ...TINY, text_config: { ...TINY.text_config, tie_word_embeddings: true } }));
    expect(tied.has('language_model.lm_head.weight')).toBe(false);
    expect(tied.size).toBe(s.size - 1);
  });

  it('survives a write/read round trip through qwen2AudioConfigToJson', () => {
    const c = parseQwen2AudioConfig(TINY);
    const again = parseQwen2AudioConfig(JSON.parse(JSON.stringify(qwen2AudioConfigToJson(c))));
    expect(again.audio_config).toEqual(c.audio_config);
    expect(again.text_config).toEqual(c.text_config);
    expect(again.audio_token_index).toBe(7);
  });

  it('rejects bad values naming the file and the key', () => {
    const bad = (patch: (j: any) => void) => {
      const j = JSON.parse(JSON.stringify(TINY));
      patch(j);
      return () => parseQwen2AudioConfig(j, 'weights/config.json');
    };
    expect(bad((j) => (j.text_config.hidden_size = 'big'))).toThrow(/^weights\/config\.json: text_config\.hidden_size must be a positive integer \(got "big"\)$/);
    expect(bad((j) => (j.audio_config.d_model = 0))).toThrow(/weights\/config\.json: audio_config\.d_model must be a positive integer/);
    expect(bad((j) => (j.text_config.num_key_value_heads = 2))).toThrow(/num_attention_heads \(3\) is not divisible by text_config\.num_key_value_heads \(2\)/);
    expect(bad((j) => (j.audio_config.encoder_attention_heads = 3))).toThrow(/audio_config\.d_model \(8\) is not divisible/);
    expect(bad((j) => (j.text_config.rms_norm_eps = -1))).toThrow(/text_config\.rms_norm_eps must be a positive number/);
    expect(bad((j) => (j.audio_token_index = 20))).toThrow(/audio_token_index \(20\) is outside text_config\.vocab_size \(20\)/);
    expect(bad((j) => (j.model_type = 'llama'))).toThrow(/model_type is "llama"/);
    expect(bad((j) => (j.text_config.tie_word_embeddings = 'yes'))).toThrow(/text_config\.tie_word_embeddings must be true or false/);
    expect(() => parseQwen2AudioConfig([], 'x.json')).toThrow(ArdError);
    expect(() => loadQwen2AudioConfig(path.join(tmp, 'no-model-here'))).toThrow(/no-model-here: cannot read/);
  });

  it('checkTensors accepts a complete checkpoint and reports extras', () => {
    const dir = path.join(tmp, 'model-ok');
    writeModel(dir, TINY, (m) => m.set('extra.rotary_inv_freq', [4]));
    const cfg = loadQwen2AudioConfig(dir);
    const ck = openCheckpoint(dir);
    expect(checkTensors(ck, cfg).unexpected).toEqual(['extra.rotary_inv_freq']);
    ck.close();
  });

  it('checkTensors lists every missing and mis-shaped tensor in one error', () => {
    const dir = path.join(tmp, 'model-bad');
    writeModel(dir, TINY, (m) => {
      m.delete('audio_tower.layers.1.fc2.bias');
      m.delete('language_model.model.norm.weight');
      m.set('multi_modal_projector.linear.weight', [8, 12]);
      m.set('language_model.model.layers.0.self_attn.k_proj.weight', [12, 12]);
    });
    const ck = openCheckpoint(dir);
    let msg = '';
    try {
      checkTensors(ck, loadQwen2AudioConfig(dir));
    } catch (e) {
      expect(e).toBeInstanceOf(ArdError);
      msg = (e as Error).message;
    }
    ck.close();
    expect(msg).toContain(dir);
    expect(msg).toContain('2 missing: audio_tower.layers.1.fc2.bias, language_model.model.norm.weight');
    expect(msg).toContain('multi_modal_projector.linear.weight is [8, 12], expected [12, 8]');
    expect(msg).toContain('language_model.model.layers.0.self_attn.k_proj.weight is [12, 12], expected [4, 12]');
    expect(msg).toContain('2 mis-shaped');
    expect(msg.split('\n')).toHaveLength(1);
  });

  it('checkTensors flags non-float dtypes and caps long lists', () => {
    const cfg = parseQwen2AudioConfig(TINY);
    const tensors = new Map<string, any>();
    for (const [name, shape] of expectedTensorShapes(cfg)) tensors.set(name, { name, shape, dtype: 'I32' });
    expect(() => checkTensors({ tensors, source: 'fake' }, cfg)).toThrow(/fake: .*not F32\/F16\/BF16: audio_tower\.conv1\.weight is I32.*and \d+ more/);
  });
});
