"""Independent reference of Qwen2AudioForConditionalGeneration (HF semantics), batch size 1.

Written from the architecture description, for fixtures only. Weights are a dict
{HF tensor name: torch tensor}; everything is computed in float64 unless the caller passes f32.
Linear weights are [out, in] (y = x W^T + b); Conv1d weights are [out, in, k] (cross-correlation).
"""
import math

import torch
import torch.nn.functional as F

A = "audio_tower."
LM = "language_model.model."


def _lin(x, W, name, bias=True):
    y = x @ W[name + ".weight"].T
    b = W.get(name + ".bias")
    if bias:
        if b is None:
            raise KeyError(f"model: missing {name}.bias")
        y = y + b
    elif b is not None:
        raise KeyError(f"model: unexpected {name}.bias")
    return y


def _gelu(x):  # exact erf GELU (HF "gelu")
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _layer_norm(x, W, name, eps=1e-5):  # nn.LayerNorm default eps, biased variance
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * W[name + ".weight"] + W[name + ".bias"]


def _rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def _conv1d(x, w, b, stride):
    """x [C_in, T], w [C_out, C_in, 3], padding 1 (zeros). Explicit loop over taps."""
    c_in, t = x.shape
    xp = torch.cat([x.new_zeros(c_in, 1), x, x.new_zeros(c_in, 1)], dim=1)
    t_out = (t + 2 - 3) // stride + 1
    y = b[:, None].expand(-1, t_out).clone()
    for k in range(3):
        tap = xp[:, k : k + stride * (t_out - 1) + 1 : stride]  # [C_in, t_out]
        y = y + w[:, :, k] @ tap
    return y


# ----------------------------------------------------------------------------- audio encoder

def conv_out_len(n_mel_frames):
    return (n_mel_frames - 1) // 2 + 1


def pooled_out_len(n_mel_frames):
    """Audio tokens per clip, as Qwen2AudioProcessor computes it (750 for a full 30 s window)."""
    return (conv_out_len(n_mel_frames) - 2) // 2 + 1


def encoder_forward(W, acfg, mel, n_valid_frames=None, truncate=False):
    """mel [n_mels, 2*max_source_positions] (HF: the clip zero-padded to the full window).
    Returns dict:
    conv      [T, d]  after conv1+gelu, conv2+gelu, + embed_positions[:T]
    layer_i   [T, d]  residual stream after encoder layer i
    pooled    [T//2, d] AvgPool1d(2,2) of the last layer output, THEN the final layer_norm
              (HF order: pool, then audio_tower.layer_norm) = audio_tower last_hidden_state
    features  [n_out, D] multi_modal_projector.linear(pooled)[:n_out], n_out = pooled_out_len(valid)
    HF semantics (truncate=False): T = max_source_positions and keys at conv positions
    >= conv_out_len(n_valid_frames) get -inf (queries are not masked).
    truncate=True: the exact shortcut. Only T = conv_out_len(valid) positions are computed, from
    mel frames [0, 2T] (frame 2T still reaches position T-1 through the two convs); gives the same
    features as the padded run."""
    d = acfg["d_model"]
    H = acfg["encoder_attention_heads"]
    hd = d // H
    T = acfg["max_source_positions"]
    if mel.shape != (acfg["num_mel_bins"], 2 * T):
        raise ValueError(f"model: mel must be [{acfg['num_mel_bins']}, {2 * T}], got {list(mel.shape)}")
    if n_valid_frames is None:
        n_valid_frames = mel.shape[1]
    n_keys = conv_out_len(n_valid_frames)
    if truncate:
        mel = mel[:, : 2 * n_keys + 1]
        T = n_keys
    out = {}
    x = _gelu(_conv1d(mel, W[A + "conv1.weight"], W[A + "conv1.bias"], 1))
    x = _gelu(_conv1d(x, W[A + "conv2.weight"], W[A + "conv2.bias"], 2))
    x = x.T[:T] + W[A + "embed_positions.weight"][:T]
    out["conv"] = x
    key_bias = x.new_zeros(T)
    key_bias[n_keys:] = float("-inf")
    for i in range(acfg["encoder_layers"]):
        p = f"{A}layers.{i}."
        h = _layer_norm(x, W, p + "self_attn_layer_norm")
        q = _lin(h, W, p + "self_attn.q_proj") * (hd ** -0.5)
        k = _lin(h, W, p + "self_attn.k_proj", bias=False)
        v = _lin(h, W, p + "self_attn.v_proj")
        q, k, v = (t.view(T, H, hd).transpose(0, 1) for t in (q, k, v))  # [H, T, hd]
        s = q @ k.transpose(1, 2) + key_bias  # no causal mask
        a = torch.softmax(s, dim=-1) @ v
        x = x + _lin(a.transpose(0, 1).reshape(T, d), W, p + "self_attn.out_proj")
        h = _layer_norm(x, W, p + "final_layer_norm")
        x = x + _lin(_gelu(_lin(h, W, p + "fc1")), W, p + "fc2")
        out[f"layer_{i}"] = x
    pooled = 0.5 * (x[0 : 2 * (T // 2) : 2] + x[1 : 2 * (T // 2) : 2])
    pooled = _layer_norm(pooled, W, A + "layer_norm")
    out["pooled"] = pooled
    n_out = pooled_out_len(n_valid_frames)
    out["features"] = _lin(pooled, W, "multi_modal_projector.linear")[:n_out]
    return out


# ----------------------------------------------------------------------------- text decoder

def rope_cos_sin(positions, head_dim, theta, dtype):
    """HF Qwen2 rotary: inv_freq[i] = theta^(-2i/hd), angle = pos*inv_freq, duplicated [f, f]."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    ang = positions.to(torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def _rotate_half(x):  # first half / second half of head_dim, NOT interleaved pairs
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def embed_and_splice(W, cfg, input_ids, audio_features):
    """inputs_embeds with audio placeholders replaced, in order, by audio feature rows."""
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    emb = W[LM + "embed_tokens.weight"][ids].clone()
    slots = (ids == cfg["audio_token_index"]).nonzero().flatten()
    n_feat = 0 if audio_features is None else audio_features.shape[0]
    if slots.numel() != n_feat:
        raise ValueError(f"model: {slots.numel()} audio tokens but {n_feat} audio features")
    if n_feat:
        emb[slots] = audio_features.to(emb.dtype)
    return emb


def decoder_forward(W, tcfg, embeds, cache=None):
    """embeds [L, D] at positions past..past+L-1 (past = cached length). cache: list per layer of
    (K, V) with K, V [kv_heads, past, hd] (K after rotary), updated in place if given.
    Returns dict: resid_i [L, D] residual stream after decoder layer i (before the final norm),
    normed [L, D], logits [L, vocab]."""
    D = tcfg["hidden_size"]
    H = tcfg["num_attention_heads"]
    KVH = tcfg["num_key_value_heads"]
    hd = D // H
    rep = H // KVH
    eps = tcfg["rms_norm_eps"]
    L = embeds.shape[0]
    past = 0 if not cache or cache[0] is None else cache[0][0].shape[1]
    pos = torch.arange(past, past + L)
    cos, sin = rope_cos_sin(pos, hd, tcfg["rope_theta"], embeds.dtype)
    # causal: query at absolute position past+i sees keys 0..past+i
    allowed = torch.arange(past + L)[None, :] <= pos[:, None]
    bias = embeds.new_zeros(L, past + L).masked_fill(~allowed, float("-inf"))
    x = embeds
    out = {}
    for i in range(tcfg["num_hidden_layers"]):
        p = f"{LM}layers.{i}."
        h = _rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = _lin(h, W, p + "self_attn.q_proj").view(L, H, hd).transpose(0, 1)
        k = _lin(h, W, p + "self_attn.k_proj").view(L, KVH, hd).transpose(0, 1)
        v = _lin(h, W, p + "self_attn.v_proj").view(L, KVH, hd).transpose(0, 1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if cache is not None:
            if cache[i] is not None:
                k = torch.cat([cache[i][0], k], dim=1)
                v = torch.cat([cache[i][1], v], dim=1)
            cache[i] = (k, v)
        # grouped-query: query head j uses kv head j // rep
        k = k.repeat_interleave(rep, dim=0)
        v = v.repeat_interleave(rep, dim=0)
        s = (q @ k.transpose(1, 2)) * (hd ** -0.5) + bias
        a = (torch.softmax(s, dim=-1) @ v).transpose(0, 1).reshape(L, D)
        x = x + _lin(a, W, p + "self_attn.o_proj", bias=False)
        h = _rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        gate = _lin(h, W, p + "mlp.gate_proj", bias=False)
        up = _lin(h, W, p + "mlp.up_proj", bias=False)
        x = x + _lin(F.silu(gate) * up, W, p + "mlp.down_proj", bias=False)
        out[f"resid_{i}"] = x
    x = _rms_norm(x, W[LM + "norm.weight"], eps)
    out["normed"] = x
    head = W.get("language_model.lm_head.weight")
    if head is None or tcfg.get("tie_word_embeddings", False):
        head = W[LM + "embed_tokens.weight"]
    out["logits"] = x @ head.T
    return out


def forward(W, cfg, input_ids, mel, n_valid_frames=None):
    enc = encoder_forward(W, cfg["audio_config"], mel, n_valid_frames)
    emb = embed_and_splice(W, cfg, input_ids, enc["features"])
    dec = decoder_forward(W, cfg["text_config"], emb)
    return enc, emb, dec


def greedy(W, cfg, input_ids, mel, n_new, use_cache=True, n_valid_frames=None, features=None, on_prefill=None):
    """Greedy continuation. Generated tokens are embedded with embed_tokens (no splicing), as HF
    does once the prompt is in the cache. Returns (tokens, top1-top2 logit margins).
    features: the audio features if already computed (mel is then not encoded again).
    on_prefill: called with decoder_forward's output over the whole prompt (use_cache only), so a
    caller that also wants the prompt's logits need not run the prompt twice."""
    tcfg = cfg["text_config"]
    feats = features if features is not None else encoder_forward(W, cfg["audio_config"], mel, n_valid_frames)["features"]
    ids = list(input_ids)
    toks, margins = [], []
    cache = [None] * tcfg["num_hidden_layers"] if use_cache else None
    emb = embed_and_splice(W, cfg, ids, feats)
    for step in range(n_new):
        if use_cache:
            out = decoder_forward(W, tcfg, emb, cache)
            if step == 0 and on_prefill is not None:
                on_prefill(out)
            logits = out["logits"][-1]
        else:
            full = torch.cat([embed_and_splice(W, cfg, input_ids, feats),
                              W[LM + "embed_tokens.weight"][torch.tensor(toks, dtype=torch.long)]])
            logits = decoder_forward(W, tcfg, full)["logits"][-1]
        top2 = torch.topk(logits, 2).values
        t = int(torch.argmax(logits))
        toks.append(t)
        margins.append(float(top2[0] - top2[1]))
        emb = W[LM + "embed_tokens.weight"][t][None, :]
    return toks, margins
