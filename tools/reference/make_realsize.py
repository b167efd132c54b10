"""A Qwen2-Audio checkpoint with the real 7B shapes, from a seed, plus reference outputs.

Run: /usr/bin/python3 tools/reference/make_realsize.py OUT_DIR [--decoder-layers N]

The configuration is Qwen2-Audio-7B-Instruct's published one (test/fixtures/qwen2-audio-7b/config.json:
text hidden 4096, 32 heads of 128, 32 kv heads, intermediate 11008, rope_theta 10000, rms_norm_eps 1e-5;
audio d_model 1280, 20 heads, ffn 5120, 128 mel bins, 1500 positions) with 1 encoder layer, N decoder
layers (default 2) and a 4096-token vocabulary whose last six ids are Qwen's special tokens in Qwen's
order. Weights are drawn as for the tiny fixtures (make_fixtures.init_weights, numpy PCG64) and written as
one F32 model.safetensors (about 1.9 GB at 2 decoder layers): it is for a temporary folder, never for the
repository. The front end is Qwen2-Audio's (30 s window, 480000 samples).

Reference outputs (float64, from the stored f32 weights) go to reference.safetensors + reference.json:
the log-mel of the zero-padded window, the encoder's last layer over the valid positions, the projected
audio features, logits at a few prompt positions and a greedy continuation. The same again with every
matrix rounded to f16 (what ardgpu's f16 load keeps: every weight of two or more dimensions except the
position table; norms, biases and positions stay f32), suffix `_f16`. The clip is also written as a
16-bit WAV (clip.wav) for `ardgpu ask`.
"""
import argparse
import json
import os
import sys
import time
import wave

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import logmel  # noqa: E402
import make_fixtures  # noqa: E402
import model  # noqa: E402
import st  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PUBLISHED = os.path.join(ROOT, "test", "fixtures", "qwen2-audio-7b", "config.json")
SEED = 20261201
VOCAB = 4096
N_TEXT = VOCAB - 6  # ids below this are text; Qwen's specials follow in Qwen's order (151643..151648)
SPECIAL = {"<|endoftext|>": N_TEXT, "<|im_start|>": N_TEXT + 1, "<|im_end|>": N_TEXT + 2, "<|AUDIO|>": N_TEXT + 3,
           "<|audio_bos|>": N_TEXT + 4, "<|audio_eos|>": N_TEXT + 5}
CLIP_SECONDS = 1.5  # 150 valid mel frames -> 75 encoder positions (odd: the pool drops one) -> 37 audio tokens
N_NEW = 4
# A greedy step whose top-1 / top-2 logits are closer than this would make the token comparison a coin
# toss for an f32 implementation (logit error ~1e-4 here); the generator refuses such a prompt.
MIN_MARGIN = 0.02

PREPROCESSOR = {**make_fixtures.PREPROCESSOR, "feature_size": 128, "chunk_length": 30, "n_samples": 480000,
                "nb_max_frames": 3000}


def realsize_config(decoder_layers):
    with open(PUBLISHED) as f:
        cfg = json.load(f)
    cfg["audio_config"]["encoder_layers"] = 1
    t = cfg["text_config"]
    t.update(num_hidden_layers=decoder_layers, vocab_size=VOCAB, torch_dtype="float32",
             bos_token_id=SPECIAL["<|endoftext|>"], eos_token_id=SPECIAL["<|im_end|>"])
    cfg.update(vocab_size=VOCAB, torch_dtype="float32", audio_token_index=SPECIAL["<|AUDIO|>"])
    return cfg


def is_f16_matrix(name, v):
    """What ardgpu's f16 load stores as f16 (load.ts WeightReader.mat): every weight of rank >= 2
    except the position table."""
    return v.dim() >= 2 and not name.endswith("embed_positions.weight")


class Weights:
    """name -> float64 tensor. Holds the checkpoint's values once, in float64 (the f32 arrays are
    released as they are converted, so peak memory is the float64 copy). f16=True hands out the
    matrices rounded to f16 (round to nearest even, as ardgpu's loader), converted on access."""

    def __init__(self, named):
        self.t = {}
        while named:
            n, v = named.pop(0)
            self.t[n] = torch.from_numpy(v).double()
        self.f16 = False

    def with_f16(self):
        w = Weights([])
        w.t, w.f16 = self.t, True
        return w

    def __getitem__(self, name):
        v = self.t[name]
        return v.half().double() if self.f16 and is_f16_matrix(name, v) else v

    def get(self, name, default=None):
        return self[name] if name in self.t else default


def reference(W, cfg, ids, mel, valid, logit_pos):
    enc = model.encoder_forward(W, cfg["audio_config"], mel, valid)  # HF semantics: full window, masked keys
    prefill = {}
    toks, margins = model.greedy(W, cfg, ids, mel, N_NEW, use_cache=True, features=enc["features"],
                                 on_prefill=prefill.update)
    return {
        "encoder_out": enc[f"layer_{cfg['audio_config']['encoder_layers'] - 1}"][:model.conv_out_len(valid)],
        "audio_features": enc["features"],
        "logits": prefill["logits"][logit_pos],
    }, toks, margins


def write_wav(path, x):
    pcm = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768), -32768, 32767).astype("<i2")
    with wave.open(path + ".tmp", "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    os.replace(path + ".tmp", path)


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output folder (created; files in it are overwritten)")
    ap.add_argument("--decoder-layers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    t0 = time.time()
    cfg = realsize_config(args.decoder_layers)
    os.makedirs(args.out, exist_ok=True)

    named = make_fixtures.init_weights(cfg, np.random.default_rng(SEED))
    n_params = sum(v.size for _, v in named)
    audio = make_fixtures.test_audio(np.random.default_rng(SEED + 1))[: int(CLIP_SECONDS * 16000)]
    mel, valid = logmel.whisper_features(audio, PREPROCESSOR["n_samples"], PREPROCESSOR["feature_size"])
    n_audio = model.pooled_out_len(valid)
    ids = make_fixtures.prompt_ids(np.random.default_rng(SEED + 2), n_audio, SPECIAL, N_TEXT)
    first = ids.index(cfg["audio_token_index"])
    last = first + n_audio - 1
    logit_pos = [3, first, last + 1] + list(range(len(ids) - 3, len(ids)))
    t_init = time.time() - t0

    meta = {"format": "pt", "generator": "tools/reference/make_realsize.py", "seed": SEED}
    write_json(os.path.join(args.out, "config.json"), cfg)
    write_json(os.path.join(args.out, "preprocessor_config.json"), PREPROCESSOR)
    st.write(os.path.join(args.out, "model.safetensors"), [(n, "F32", v) for n, v in named], meta)
    write_wav(os.path.join(args.out, "clip.wav"), audio)
    t_write = time.time() - t0 - t_init

    m = torch.from_numpy(mel)
    W = Weights(named)  # empties `named`
    ref, greedy, margins = reference(W, cfg, ids, m, valid, logit_pos)
    ref16, greedy16, margins16 = reference(W.with_f16(), cfg, ids, m, valid, logit_pos)
    t_ref = time.time() - t0 - t_init - t_write
    if cfg["audio_token_index"] in greedy + greedy16:
        raise SystemExit("make_realsize: greedy produced the audio placeholder token; change the seed")
    if min(margins + margins16) < MIN_MARGIN:
        raise SystemExit(f"make_realsize: a greedy margin is {min(margins + margins16):.4f} < {MIN_MARGIN}; change the seed")

    fx = [("audio", audio), ("logmel", mel)]
    fx += [(k, v) for k, v in ref.items()] + [(k + "_f16", v) for k, v in ref16.items()]
    f32 = lambda x: np.asarray(x.numpy() if torch.is_tensor(x) else x, dtype=np.float32)  # noqa: E731
    st.write(os.path.join(args.out, "reference.safetensors"), [(n, "F32", f32(v)) for n, v in fx], meta)
    f16_vs_f32 = float((ref16["logits"] - ref["logits"]).abs().max())
    write_json(os.path.join(args.out, "reference.json"), {
        "generator": "tools/reference/make_realsize.py",
        "seed": SEED,
        "compute_dtype": "float64 (stored as f32)",
        "parameters": int(n_params),
        "special_tokens": SPECIAL,
        "text_tokens": N_TEXT,
        "audio_token_index": cfg["audio_token_index"],
        "clip_samples": int(audio.shape[0]),
        "valid_frames": int(valid),
        "encoder_positions": int(model.conv_out_len(valid)),
        "audio_tokens": int(n_audio),
        "prompt_ids": ids,
        "audio_token_span": [first, last + 1],
        "logits_positions": logit_pos,
        "greedy": greedy,
        "greedy_margins": [round(v, 6) for v in margins],
        "greedy_f16": greedy16,
        "greedy_f16_margins": [round(v, 6) for v in margins16],
        "logits_f16_vs_f32_max_abs": f16_vs_f32,
        "tensors": {n: list(np.shape(v)) for n, v in fx},
        "seconds": {"init": round(t_init, 1), "write": round(t_write, 1), "reference": round(t_ref, 1)},
    })
    print(f"{n_params / 1e6:.1f} M parameters, prompt {len(ids)} ids ({n_audio} audio tokens)")
    print("greedy     ", greedy, "min margin %.3f" % min(margins))
    print("greedy_f16 ", greedy16, "min margin %.3f" % min(margins16))
    print("logits std %.3f, f16-f32 max diff %.4f" % (float(ref["logits"].std()), f16_vs_f32))
    for k in ("encoder_out", "audio_features"):
        print(f"{k:16s} std {float(ref[k].std()):.3f} max|x| {float(ref[k].abs().max()):.3f}")
    print(f"init {t_init:.1f} s, write {t_write:.1f} s, reference {t_ref:.1f} s")


if __name__ == "__main__":
    main()
