"""Generates test/fixtures/tiny-audiollm/ (tiny random Qwen2-Audio checkpoint + reference outputs).

Run: /usr/bin/python3 tools/reference/make_fixtures.py   (Debian python3-torch, python3-numpy)
Deterministic: numpy PCG64 with fixed seeds; all reference outputs computed in float64 from the
stored (f32 or bf16-rounded) weights, then saved as f32. Self-checks run first (selfcheck.py).
"""
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import logmel  # noqa: E402
import model  # noqa: E402
import selfcheck  # noqa: E402
import st  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "test", "fixtures", "tiny-audiollm")
SEED = 20261101
# Prompt seed: of offsets 2..21 tried, +7 gave the largest smallest top1-top2 greedy margin (0.35),
# so f16/f32 implementations reproduce the greedy tokens without near-ties.
PROMPT_SEED = SEED + 7
N_NEW = 12

SPECIAL = {"<|im_start|>": 295, "<|im_end|>": 296, "<|audio_bos|>": 297, "<|audio_eos|>": 298,
           "<|AUDIO|>": 299}

CONFIG = {
    "architectures": ["Qwen2AudioForConditionalGeneration"],
    "model_type": "qwen2_audio",
    "audio_token_index": SPECIAL["<|AUDIO|>"],
    "ignore_index": -100,
    "vocab_size": 300,
    "torch_dtype": "float32",
    "audio_config": {
        "model_type": "qwen2_audio_encoder",
        "num_mel_bins": 80,
        "d_model": 64,
        "encoder_layers": 2,
        "encoder_attention_heads": 4,
        "encoder_ffn_dim": 128,
        "max_source_positions": 100,
        "activation_function": "gelu",
        "scale_embedding": False,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "encoder_layerdrop": 0.0,
        "init_std": 0.02,
    },
    "text_config": {
        "model_type": "qwen2",
        "vocab_size": 300,
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "bos_token_id": SPECIAL["<|im_start|>"],
        "eos_token_id": SPECIAL["<|im_end|>"],
    },
}

# Whisper feature-extractor settings for the tiny model: the "30 s window" is 2 s here
# (max_source_positions 100 -> 200 mel frames -> 32000 samples).
PREPROCESSOR = {
    "feature_extractor_type": "WhisperFeatureExtractor",
    "feature_size": 80,
    "sampling_rate": 16000,
    "hop_length": 160,
    "n_fft": 400,
    "chunk_length": 2,
    "n_samples": 32000,
    "nb_max_frames": 200,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": True,
    "processor_class": "Qwen2AudioProcessor",
}


def sinusoids(length, channels, max_timescale=10000.0):
    inc = np.log(max_timescale) / (channels // 2 - 1)
    inv = np.exp(-inc * np.arange(channels // 2))
    t = np.arange(length)[:, None] * inv[None, :]
    return np.concatenate([np.sin(t), np.cos(t)], axis=1)


def init_weights(cfg, rng):
    """Ordered list of (HF name, f32 array). Scaled so activations stay O(1) and logits spread."""
    a, t = cfg["audio_config"], cfg["text_config"]
    W = []

    def put(name, v):  # f32 per tensor: a real-size model's float64 draws never all live at once
        W.append((name, v.astype(np.float32)))

    def lin(name, n_out, n_in, bias=True, gain=1.0):
        put(name + ".weight", rng.normal(0.0, gain / np.sqrt(n_in), (n_out, n_in)))
        if bias:
            put(name + ".bias", rng.normal(0.0, 0.05, (n_out,)))

    def ln(name, n):
        put(name + ".weight", 1.0 + rng.normal(0.0, 0.1, (n,)))
        put(name + ".bias", rng.normal(0.0, 0.05, (n,)))

    d, m = a["d_model"], a["num_mel_bins"]
    put("audio_tower.conv1.weight", rng.normal(0.0, 1.5 / np.sqrt(3 * m), (d, m, 3)))
    put("audio_tower.conv1.bias", rng.normal(0.0, 0.05, (d,)))
    put("audio_tower.conv2.weight", rng.normal(0.0, 1.5 / np.sqrt(3 * d), (d, d, 3)))
    put("audio_tower.conv2.bias", rng.normal(0.0, 0.05, (d,)))
    # sinusoids like Whisper, plus noise so a loader that ignores the stored table is caught
    put("audio_tower.embed_positions.weight",
        sinusoids(a["max_source_positions"], d) + rng.normal(0.0, 0.05, (a["max_source_positions"], d)))
    for i in range(a["encoder_layers"]):
        p = f"audio_tower.layers.{i}."
        lin(p + "self_attn.k_proj", d, d, bias=False, gain=2.0)
        lin(p + "self_attn.v_proj", d, d)
        lin(p + "self_attn.q_proj", d, d, gain=2.0)
        lin(p + "self_attn.out_proj", d, d)
        ln(p + "self_attn_layer_norm", d)
        lin(p + "fc1", a["encoder_ffn_dim"], d)
        lin(p + "fc2", d, a["encoder_ffn_dim"])
        ln(p + "final_layer_norm", d)
    ln("audio_tower.layer_norm", d)
    D, I = t["hidden_size"], t["intermediate_size"]
    hd = D // t["num_attention_heads"]
    kvd = hd * t["num_key_value_heads"]
    lin("multi_modal_projector.linear", D, d)
    put("language_model.model.embed_tokens.weight", rng.normal(0.0, 1.0, (t["vocab_size"], D)))
    for i in range(t["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        lin(p + "self_attn.q_proj", D, D, gain=2.0)
        lin(p + "self_attn.k_proj", kvd, D, gain=2.0)
        lin(p + "self_attn.v_proj", kvd, D)
        lin(p + "self_attn.o_proj", D, D, bias=False)
        lin(p + "mlp.gate_proj", I, D, bias=False)
        lin(p + "mlp.up_proj", I, D, bias=False)
        lin(p + "mlp.down_proj", D, I, bias=False)
        put(p + "input_layernorm.weight", 1.0 + rng.normal(0.0, 0.1, (D,)))
        put(p + "post_attention_layernorm.weight", 1.0 + rng.normal(0.0, 0.1, (D,)))
    put("language_model.model.norm.weight", 1.0 + rng.normal(0.0, 0.1, (D,)))
    put("language_model.lm_head.weight", rng.normal(0.0, 3.0 / np.sqrt(D), (t["vocab_size"], D)))
    return W


def test_audio(rng):
    """2 s: noise burst, chirp, exact silence, two tones + noise. Quantised to k/32768."""
    sr = 16000
    n = np.arange(2 * sr)
    t = n / sr
    x = np.zeros(2 * sr)
    seg = t < 0.6
    x[seg] += 0.1 * rng.standard_normal(seg.sum()) * np.sin(np.pi * t[seg] / 0.6)
    seg = (t >= 0.5) & (t < 1.4)
    tc = t[seg] - 0.5
    f0, f1, dur = 200.0, 4000.0, 0.9
    x[seg] += 0.3 * np.sin(2 * np.pi * (f0 * tc + 0.5 * (f1 - f0) / dur * tc ** 2))
    seg = t >= 1.6
    x[seg] += 0.2 * np.sin(2 * np.pi * 1000 * t[seg]) + 0.1 * np.sin(2 * np.pi * 3000 * t[seg])
    x[seg] += 0.02 * rng.standard_normal(seg.sum())
    x[(t >= 1.4) & (t < 1.6)] = 0.0
    return (np.round(np.clip(x, -1, 1) * 32768) / 32768).astype(np.float32)


def tone_audio():
    n = np.arange(16000)
    return (0.5 * np.sin(2 * np.pi * 440.0 * n / 16000)).astype(np.float32)


def prompt_ids(rng, n_audio, special=SPECIAL, n_text=295):
    """Chat-template-shaped ids; text tokens drawn from [0, n_text)."""
    S = special
    words = lambda k: [int(v) for v in rng.integers(0, n_text, size=k)]  # noqa: E731
    nl, system, user, assistant = 10, 20, 21, 22
    ids = [S["<|im_start|>"], system, nl] + words(6) + [S["<|im_end|>"], nl]
    ids += [S["<|im_start|>"], user, nl] + words(3)
    ids += [S["<|audio_bos|>"]] + [S["<|AUDIO|>"]] * n_audio + [S["<|audio_eos|>"], nl]
    ids += words(8) + [S["<|im_end|>"], nl, S["<|im_start|>"], assistant, nl]
    return ids


def logmel_f32_torch(x, n_mels=80):
    """The same log-mel in float32 via torch.stft: how far an f32 implementation typically lands."""
    w = torch.hann_window(logmel.N_FFT, dtype=torch.float32)
    s = torch.stft(torch.from_numpy(x), logmel.N_FFT, logmel.HOP, window=w, center=True, pad_mode="reflect",
                   return_complex=True)
    mel = torch.from_numpy(logmel.mel_filters(n_mels).astype(np.float32)) @ (s.abs() ** 2)[:, :-1]
    lg = torch.clamp(mel, min=1e-10).log10()
    lg = torch.maximum(lg, lg.max() - 8.0)
    return ((lg + 4.0) / 4.0).double().numpy()


def to_t(named):
    return {n: torch.from_numpy(np.asarray(v, dtype=np.float64)) for n, v in named}


def run_all(W, cfg, ids, mel_audio, mel_tone_pad, tone_valid, logit_pos, dtype=torch.float64):
    Wd = {k: v.to(dtype) for k, v in W.items()}
    m = torch.from_numpy(mel_audio).to(dtype)
    enc, emb, dec = model.forward(Wd, cfg, ids, m)
    enc_tone = model.encoder_forward(Wd, cfg["audio_config"], torch.from_numpy(mel_tone_pad).to(dtype), tone_valid)
    return {
        "encoder_out": enc[f"layer_{cfg['audio_config']['encoder_layers'] - 1}"],
        "encoder_pooled": enc["pooled"],
        "audio_features": enc["features"],
        "audio_features_tone": enc_tone["features"],
        "embeds": emb,
        "resid_0": dec["resid_0"],
        "resid_1": dec["resid_1"],
        "logits": dec["logits"][logit_pos],
    }


def verify_written(named, bf16_bits, fx):
    """Read every written file back and compare with what was meant to be written."""
    w, _ = st.read(os.path.join(OUT, "model.safetensors"))
    b, _ = st.read(os.path.join(OUT, "model-bf16.safetensors"))
    idx = json.load(open(os.path.join(OUT, "sharded", "model.safetensors.index.json")))
    sh = {}
    for fn in sorted(set(idx["weight_map"].values())):
        part, _ = st.read(os.path.join(OUT, "sharded", fn))
        assert all(idx["weight_map"][n] == fn for n in part)
        sh.update(part)
    for n, v in named:
        assert np.array_equal(w[n], v) and np.array_equal(sh[n], v), n
        assert np.array_equal(b[n], bf16_bits[n]), n
    assert len(w) == len(sh) == len(b) == len(named) == len(idx["weight_map"])
    f, _ = st.read(os.path.join(OUT, "fixtures.safetensors"))
    for n, v in fx:
        assert np.array_equal(f[n], np.asarray(v.numpy() if torch.is_tensor(v) else v, dtype=np.float32)), n
    print("read-back of all safetensors files: ok")


def main():
    torch.set_num_threads(1)
    cfg = CONFIG
    acfg, tcfg = cfg["audio_config"], cfg["text_config"]
    selfcheck.run_all_checks(verbose=True)

    rng = np.random.default_rng(SEED)
    named = init_weights(cfg, rng)
    audio = test_audio(np.random.default_rng(SEED + 1))
    tone = tone_audio()
    ids = prompt_ids(np.random.default_rng(PROMPT_SEED), model.pooled_out_len(200))
    first_audio = ids.index(cfg["audio_token_index"])
    last_audio = len(ids) - 1 - ids[::-1].index(cfg["audio_token_index"])
    logit_pos = [3, first_audio, first_audio + 25, last_audio + 1] + list(range(len(ids) - 8, len(ids)))

    mel_audio = logmel.log_mel(audio, 80)
    mel_tone = logmel.log_mel(tone, 80)
    mel_tone_pad, tone_valid = logmel.whisper_features(tone, PREPROCESSOR["n_samples"], 80)
    mel_tone_128 = logmel.log_mel(tone, 128)
    assert mel_audio.shape == (80, 200) and mel_tone.shape == (80, 100) and tone_valid == 100

    # f32 checkpoint, and the same weights rounded to bf16
    W32 = to_t(named)
    bf16_bits = {n: st.f32_to_bf16_bits(v) for n, v in named}
    Wbf = {n: torch.from_numpy(st.bf16_bits_to_f32(b).astype(np.float64)) for n, b in bf16_bits.items()}

    ref = run_all(W32, cfg, ids, mel_audio, mel_tone_pad, tone_valid, logit_pos)
    ref_bf = run_all(Wbf, cfg, ids, mel_audio, mel_tone_pad, tone_valid, logit_pos)
    # how far an honest f32 implementation lands from the f64 truth (tolerance guidance)
    ref_f32 = run_all(W32, cfg, ids, mel_audio.astype(np.float32), mel_tone_pad.astype(np.float32),
                      tone_valid, logit_pos, dtype=torch.float32)
    f32_err = {k: float((ref[k] - ref_f32[k].double()).abs().max()) for k in ref}
    f32_err["logmel_audio"] = float(np.abs(logmel_f32_torch(audio) - mel_audio).max())

    m64 = torch.from_numpy(mel_audio)
    greedy, margins = model.greedy(W32, cfg, ids, m64, N_NEW, use_cache=True)
    greedy_nc, _ = model.greedy(W32, cfg, ids, m64, N_NEW, use_cache=False)
    greedy_bf, margins_bf = model.greedy(Wbf, cfg, ids, m64, N_NEW, use_cache=True)
    greedy_bf_nc, _ = model.greedy(Wbf, cfg, ids, m64, N_NEW, use_cache=False)
    if greedy != greedy_nc or greedy_bf != greedy_bf_nc:
        raise SystemExit("make_fixtures: KV-cache greedy differs from recompute greedy")
    if cfg["audio_token_index"] in greedy + greedy_bf:
        raise SystemExit("make_fixtures: greedy produced the audio placeholder token; change the seed")

    # ---- write checkpoint files
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "sharded"))

    def write_json(path, obj, flat=False):
        with open(path + ".tmp", "w") as f:
            if flat:  # one top-level key per line, values compact (keeps id lists readable)
                f.write("{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in obj.items()) + "\n}\n")
            else:
                json.dump(obj, f, indent=2)
                f.write("\n")
        os.replace(path + ".tmp", path)

    meta = {"format": "pt", "generator": "tools/reference/make_fixtures.py", "seed": SEED}
    write_json(os.path.join(OUT, "config.json"), cfg)
    write_json(os.path.join(OUT, "preprocessor_config.json"), PREPROCESSOR)
    st.write(os.path.join(OUT, "model.safetensors"), [(n, "F32", v) for n, v in named], meta)
    st.write(os.path.join(OUT, "model-bf16.safetensors"), [(n, "BF16", bf16_bits[n]) for n, _ in named],
             {**meta, "note": "same weights as model.safetensors, rounded to bf16 (nearest-even)"})
    # sharded: audio tower + projector in shard 1, language model in shard 2
    shard_of = lambda n: 1 if not n.startswith("language_model.") else 2  # noqa: E731
    wmap, total = {}, 0
    for s in (1, 2):
        fn = f"model-0000{s}-of-00002.safetensors"
        part = [(n, "F32", v) for n, v in named if shard_of(n) == s]
        total += st.write(os.path.join(OUT, "sharded", fn), part, meta)
        for n, _, _ in part:
            wmap[n] = fn
    write_json(os.path.join(OUT, "sharded", "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))})
    shutil.copy(os.path.join(OUT, "config.json"), os.path.join(OUT, "sharded", "config.json"))
    shutil.copy(os.path.join(OUT, "preprocessor_config.json"), os.path.join(OUT, "sharded", "preprocessor_config.json"))

    # ---- reference outputs
    f32 = lambda x: np.asarray(x.numpy() if torch.is_tensor(x) else x, dtype=np.float32)  # noqa: E731
    fx = [
        ("audio", audio), ("tone", tone),
        ("logmel_audio", mel_audio), ("logmel_tone", mel_tone),
        ("logmel_tone_padded", mel_tone_pad), ("logmel_tone_128", mel_tone_128),
    ]
    fx += [(k, ref[k]) for k in ref]
    fx += [("audio_features_bf16", ref_bf["audio_features"]), ("logits_bf16", ref_bf["logits"])]
    st.write(os.path.join(OUT, "fixtures.safetensors"), [(n, "F32", f32(v)) for n, v in fx], meta)

    info = {
        "generator": "tools/reference/make_fixtures.py",
        "seed": SEED,
        "compute_dtype": "float64 (stored as f32)",
        "special_tokens": SPECIAL,
        "audio_token_index": cfg["audio_token_index"],
        "prompt_ids": ids,
        "prompt_len": len(ids),
        "audio_token_span": [first_audio, last_audio + 1],
        "logits_positions": logit_pos,
        "greedy": greedy,
        "greedy_margins": [round(v, 6) for v in margins],
        "greedy_bf16": greedy_bf,
        "greedy_bf16_margins": [round(v, 6) for v in margins_bf],
        "tone_padded_valid_frames": tone_valid,
        "tone_padded_audio_tokens": model.pooled_out_len(tone_valid),
        "f32_vs_f64_max_abs_err": f32_err,
        "tensors": {n: list(np.shape(v)) for n, v in fx},
    }
    write_json(os.path.join(OUT, "fixtures.json"), info, flat=True)
    verify_written(named, bf16_bits, fx)

    # ---- summary
    lg = ref["logits"]
    print(f"prompt len {len(ids)}, audio tokens {first_audio}..{last_audio}")
    print("greedy      ", greedy, "min margin %.3f" % min(margins))
    print("greedy_bf16 ", greedy_bf, "min margin %.3f" % min(margins_bf))
    print("logits std %.3f  bf16-f32 max diff %.4f" % (float(lg.std()), float((ref_bf['logits'] - lg).abs().max())))
    for k in ("encoder_out", "audio_features", "resid_0", "resid_1"):
        print(f"{k:16s} std {float(ref[k].std()):.3f} max|x| {float(ref[k].abs().max()):.3f}")
    print("f32 vs f64 max abs err:", {k: f"{v:.2e}" for k, v in f32_err.items()})
    size = 0
    for dp, _, fs in os.walk(OUT):
        for f in fs:
            size += os.path.getsize(os.path.join(dp, f))
    print(f"wrote {OUT}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
