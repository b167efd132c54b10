"""Self-checks of the reference: each piece against an independent formulation.

Run alone: /usr/bin/python3 tools/reference/selfcheck.py  (make_fixtures.py runs it first too).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import logmel  # noqa: E402
import model  # noqa: E402


def _close(name, a, b, tol, log):
    err = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
    if not err <= tol:
        raise SystemExit(f"selfcheck: {name}: max abs err {err:.3e} > {tol:.1e}")
    log(f"  ok  {name:58s} max err {err:.2e}")


def check_logmel(log):
    # Slaney mel scale: 1 kHz = 15 mel, 8 kHz = Whisper's hard-coded 45.245640471924965
    _close("hz_to_mel(1000) == 15", logmel.hz_to_mel(1000.0), 15.0, 1e-12, log)
    _close("hz_to_mel(8000) == 45.245640471924965", logmel.hz_to_mel(8000.0), 45.245640471924965, 1e-12, log)
    _close("hz_to_mel(500) == 7.5 (linear part)", logmel.hz_to_mel(500.0), 7.5, 1e-12, log)
    f = np.array([0.0, 123.0, 999.0, 1000.0, 2345.0, 7999.0])
    _close("mel_to_hz(hz_to_mel(f)) == f", logmel.mel_to_hz(logmel.hz_to_mel(f)), f, 1e-9, log)

    # filterbank entries against a scalar evaluation of the Slaney triangle
    for n_mels in (80, 128):
        fb = logmel.mel_filters(n_mels)
        assert fb.shape == (n_mels, 201)
        top = 15.0 + math.log(8.0) * 27.0 / math.log(6.4)

        def edge(j):
            mm = top * j / (n_mels + 1)
            return mm * 200.0 / 3.0 if mm < 15.0 else 1000.0 * math.exp((mm - 15.0) * math.log(6.4) / 27.0)

        worst = 0.0
        for m, k in [(0, 1), (3, 2), (10, 9), (n_mels // 2, 40), (n_mels - 1, 195), (n_mels - 1, 200),
                     (n_mels - 5, 150), (n_mels // 3, 20)]:
            lo, mid, hi = edge(m), edge(m + 1), edge(m + 2)
            fk = k * 40.0
            tri = max(0.0, min((fk - lo) / (mid - lo), (hi - fk) / (hi - mid)))
            worst = max(worst, abs(tri * 2.0 / (hi - lo) - fb[m, k]))
        _close(f"mel_filters({n_mels}) vs scalar Slaney triangle", worst, 0.0, 1e-12, log)
        # Slaney normalisation: each triangle has unit area in Hz; wide (high) filters sample it well
        area = fb.sum(1) * 40.0
        _close(f"mel_filters({n_mels}) unit area (top 20 filters)", area[-20:], 1.0, 0.02, log)
        if n_mels == 80:  # reach over fixed points rather than trust one formula twice
            assert fb[:, 200].max() == 0.0 and fb[-1, 199] > 0, "top filter must end at 8 kHz"

    # periodic Hann and the centred reflect-padded STFT against torch.stft
    _close("periodic hann == torch.hann_window(400)", logmel.hann_periodic(),
           torch.hann_window(400, periodic=True, dtype=torch.float64).numpy(), 1e-15, log)
    _close("np reflect pad semantic", np.pad(np.array([1.0, 2, 3, 4]), 2, mode="reflect"),
           [3, 2, 1, 2, 3, 4, 3, 2], 0.0, log)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(5000)
    p = logmel.power_spectrogram(x)
    assert p.shape == (201, 5000 // 160), p.shape
    ts = torch.stft(torch.from_numpy(x), 400, 160, window=torch.hann_window(400, dtype=torch.float64),
                    center=True, pad_mode="reflect", return_complex=True)
    _close("power_spectrogram == |torch.stft|^2[:, :-1]", p, (ts.abs() ** 2)[:, :-1].numpy(), 1e-9, log)
    # frame 0 by hand: window centred on sample 0 sees x[200], ..., x[1], x[0], ..., x[199]
    fr = np.concatenate([x[200:0:-1], x[:200]]) * logmel.hann_periodic()
    dft = np.array([np.sum(fr * np.exp(-2j * np.pi * k * np.arange(400) / 400)) for k in (0, 7, 100, 200)])
    _close("frame 0 by explicit DFT", p[[0, 7, 100, 200], 0], np.abs(dft) ** 2, 1e-8, log)

    # floor at max-8 and the (x+4)/4 map
    y = np.concatenate([0.5 * np.sin(np.arange(8000) * 0.3), np.zeros(8000)])
    lm = logmel.log_mel(y)
    raw = np.log10(np.maximum(logmel.mel_filters(80) @ logmel.power_spectrogram(y), 1e-10))
    _close("log_mel floor == (max-8+4)/4", lm.min(), (raw.max() - 8.0 + 4.0) / 4.0, 1e-12, log)
    _close("log_mel max == (max+4)/4", lm.max(), (raw.max() + 4.0) / 4.0, 1e-12, log)
    feats, valid = logmel.whisper_features(y[:12345], 32000)
    assert feats.shape == (80, 200) and valid == 78, (feats.shape, valid)


def _tiny_weights():
    from make_fixtures import CONFIG, init_weights  # local import: make_fixtures imports us
    named = init_weights(CONFIG, np.random.default_rng(7))
    return CONFIG, {n: torch.from_numpy(v.astype(np.float64)) for n, v in named}


def check_encoder(log):
    cfg, W = _tiny_weights()
    a = cfg["audio_config"]
    d, H, T = a["d_model"], a["encoder_attention_heads"], a["max_source_positions"]
    g = torch.Generator().manual_seed(3)
    mel = torch.randn(a["num_mel_bins"], 2 * T, generator=g, dtype=torch.float64)
    out = model.encoder_forward(W, a, mel)

    # the same encoder from torch's own modules (nn.MultiheadAttention has no bias-free k: use 0)
    A = "audio_tower."
    x = F.gelu(F.conv1d(mel[None], W[A + "conv1.weight"], W[A + "conv1.bias"], padding=1))
    x = F.gelu(F.conv1d(x, W[A + "conv2.weight"], W[A + "conv2.bias"], stride=2, padding=1))
    x = x[0].T + W[A + "embed_positions.weight"]
    _close("conv stem vs F.conv1d", out["conv"], x, 1e-10, log)
    for i in range(a["encoder_layers"]):
        p = f"{A}layers.{i}."
        mha = torch.nn.MultiheadAttention(d, H, bias=True, batch_first=True).double()
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([W[p + "self_attn.q_proj.weight"], W[p + "self_attn.k_proj.weight"],
                                                W[p + "self_attn.v_proj.weight"]]))
            mha.in_proj_bias.copy_(torch.cat([W[p + "self_attn.q_proj.bias"], torch.zeros(d, dtype=torch.float64),
                                              W[p + "self_attn.v_proj.bias"]]))
            mha.out_proj.weight.copy_(W[p + "self_attn.out_proj.weight"])
            mha.out_proj.bias.copy_(W[p + "self_attn.out_proj.bias"])
            h = F.layer_norm(x, (d,), W[p + "self_attn_layer_norm.weight"], W[p + "self_attn_layer_norm.bias"])
            x = x + mha(h[None], h[None], h[None], need_weights=False)[0][0]
            h = F.layer_norm(x, (d,), W[p + "final_layer_norm.weight"], W[p + "final_layer_norm.bias"])
            x = x + F.linear(F.gelu(F.linear(h, W[p + "fc1.weight"], W[p + "fc1.bias"])), W[p + "fc2.weight"], W[p + "fc2.bias"])
        _close(f"encoder layer {i} vs nn.MultiheadAttention/F.layer_norm", out[f"layer_{i}"], x, 1e-9, log)
    pooled = F.avg_pool1d(x.T[None], 2, 2)[0].T
    pooled = F.layer_norm(pooled, (d,), W[A + "layer_norm.weight"], W[A + "layer_norm.bias"])
    _close("avg_pool1d(2,2) then layer_norm", out["pooled"], pooled, 1e-10, log)
    feats = F.linear(pooled, W["multi_modal_projector.linear.weight"], W["multi_modal_projector.linear.bias"])
    _close("projector", out["features"], feats, 1e-10, log)

    # no causal mask: changing the last mel frames changes the first encoder outputs
    mel2 = mel.clone()
    mel2[:, -10:] += 1.0
    out2 = model.encoder_forward(W, a, mel2)
    delta = float((out2["layer_0"][:5] - out["layer_0"][:5]).abs().max())
    if delta < 1e-4:
        raise SystemExit("selfcheck: encoder looks causal (early outputs ignore late frames)")
    log(f"  ok  {'encoder attention is bidirectional':58s} early-output change {delta:.2e}")

    # padding mask: with n_valid frames, outputs at valid positions ignore the padded frames
    n_valid = 90
    mel3 = mel.clone()
    mel3[:, 91:] = -5.0  # frame 90 still reaches conv position 44 through the two convs
    o1 = model.encoder_forward(W, a, mel3, n_valid)
    mel3[:, 91:] = 3.0
    o2 = model.encoder_forward(W, a, mel3, n_valid)
    n_keys = model.conv_out_len(n_valid)
    _close("padded encoder: valid outputs ignore frames past the mask", o1["layer_1"][:n_keys], o2["layer_1"][:n_keys], 1e-10, log)
    assert o1["features"].shape[0] == model.pooled_out_len(n_valid) == 22
    # the truncated shortcut gives the padded run's features, for odd and even key counts
    for nv in (90, 91, 93, 37, 200):
        full = model.encoder_forward(W, a, mel3, nv)["features"]
        short = model.encoder_forward(W, a, mel3, nv, truncate=True)["features"]
        _close(f"truncated encoder == padded+masked encoder (valid {nv})", short, full, 1e-12, log)


def check_decoder(log):
    cfg, W = _tiny_weights()
    t = cfg["text_config"]
    D, H, KVH = t["hidden_size"], t["num_attention_heads"], t["num_key_value_heads"]
    hd = D // H
    g = torch.Generator().manual_seed(5)
    L = 23
    emb = torch.randn(L, D, generator=g, dtype=torch.float64)
    out = model.decoder_forward(W, t, emb)

    # layer 0 by explicit loops: rotation of pairs (i, i + hd/2) by angle pos * theta^(-2i/hd)
    p = "language_model.model.layers.0."
    Wn = {k: v.numpy() for k, v in W.items()}
    xe = emb.numpy()

    def rms(v, w):
        return v / np.sqrt(np.mean(v * v, -1, keepdims=True) + t["rms_norm_eps"]) * w

    h = rms(xe, Wn[p + "input_layernorm.weight"])
    q = h @ Wn[p + "self_attn.q_proj.weight"].T + Wn[p + "self_attn.q_proj.bias"]
    k = h @ Wn[p + "self_attn.k_proj.weight"].T + Wn[p + "self_attn.k_proj.bias"]
    v = h @ Wn[p + "self_attn.v_proj.weight"].T + Wn[p + "self_attn.v_proj.bias"]

    def rot(vec, pos):
        r = vec.copy()
        for i in range(hd // 2):
            ang = pos * t["rope_theta"] ** (-2.0 * i / hd)
            a0, a1 = vec[i], vec[i + hd // 2]
            r[i] = a0 * math.cos(ang) - a1 * math.sin(ang)
            r[i + hd // 2] = a1 * math.cos(ang) + a0 * math.sin(ang)
        return r

    att = np.zeros((L, D))
    for head in range(H):
        kvh = head // (H // KVH)
        for i in range(L):
            qi = rot(q[i, head * hd:(head + 1) * hd], i)
            s = np.array([qi @ rot(k[j, kvh * hd:(kvh + 1) * hd], j) / math.sqrt(hd) for j in range(i + 1)])
            w = np.exp(s - s.max())
            w /= w.sum()
            att[i, head * hd:(head + 1) * hd] = w @ v[: i + 1, kvh * hd:(kvh + 1) * hd]
    x1 = xe + att @ Wn[p + "self_attn.o_proj.weight"].T
    h = rms(x1, Wn[p + "post_attention_layernorm.weight"])
    gate, up = h @ Wn[p + "mlp.gate_proj.weight"].T, h @ Wn[p + "mlp.up_proj.weight"].T
    x1 = x1 + (gate / (1 + np.exp(-gate)) * up) @ Wn[p + "mlp.down_proj.weight"].T
    _close("decoder layer 0 vs explicit-loop GQA/RoPE/SwiGLU", out["resid_0"], x1, 1e-9, log)

    # KV cache: prefill 10 then feed 1, 5, 7 positions == one full pass
    cache = [None] * t["num_hidden_layers"]
    parts, s = [], 0
    for n in (10, 1, 5, 7):
        parts.append(model.decoder_forward(W, t, emb[s:s + n], cache)["logits"])
        s += n
    _close("chunked KV-cache logits == full-pass logits", torch.cat(parts), out["logits"], 1e-9, log)

    # RoPE scores depend only on relative position
    qv = torch.randn(1, hd, generator=g, dtype=torch.float64)
    kv = torch.randn(1, hd, generator=g, dtype=torch.float64)

    def score(m, n):
        cq, sq = model.rope_cos_sin(torch.tensor([m]), hd, t["rope_theta"], torch.float64)
        ck, sk = model.rope_cos_sin(torch.tensor([n]), hd, t["rope_theta"], torch.float64)
        return float((qv * cq + model._rotate_half(qv) * sq) @ (kv * ck + model._rotate_half(kv) * sk).T)

    _close("rope relative: s(9,4) == s(109,104)", score(9, 4), score(109, 104), 1e-9, log)
    # splicing: placeholders are replaced in order
    ids = [1, 299, 299, 2]
    feats = torch.randn(2, D, generator=g, dtype=torch.float64)
    e = model.embed_and_splice(W, cfg, ids, feats)
    _close("audio splicing order", torch.stack([e[1], e[2], e[0]]),
           torch.stack([feats[0], feats[1], W["language_model.model.embed_tokens.weight"][1]]), 0.0, log)


def check_bf16(log):
    import st
    x = np.random.default_rng(9).standard_normal(10000).astype(np.float32) * 10.0 ** np.arange(-5, 5).repeat(1000)
    # exact ties: 1 + 2^-8 rounds down to 1 (even), 1 + 3*2^-8 rounds up to 1 + 2^-6
    x = np.concatenate([x, np.array([1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, -(1 + 2.0 ** -8)], dtype=np.float32)])
    ours = st.bf16_bits_to_f32(st.f32_to_bf16_bits(x))
    theirs = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    _close("bf16 round-to-nearest-even == torch .to(bfloat16)", ours, theirs, 0.0, log)


def run_all_checks(verbose=True):
    log = print if verbose else (lambda *_: None)
    log("selfcheck: log-mel")
    check_logmel(log)
    log("selfcheck: audio encoder")
    check_encoder(log)
    log("selfcheck: text decoder")
    check_decoder(log)
    check_bf16(log)
    log("selfcheck: all passed")


if __name__ == "__main__":
    torch.set_num_threads(1)
    run_all_checks()
