"""An independent numpy (float64) implementation of the transformer forward
pass that `deepinit forward --config` runs, written from the transformers
modelling code (GPT-2, Llama, Mistral, Qwen2), not from deepinit's: it reads
the checkpoint `deepinit model` wrote for the same config and seed, runs the
token ids given, and checks every statistic of deepinit's JSON report.

Usage:
  transformer_numpy.py tokens OUT.npy BATCH SEQ VOCAB SEED   (writes int64 ids)
  transformer_numpy.py check CONFIG.json CHECKPOINT_DIR TOKENS.npy REPORT.json

Tolerance. deepinit computes in f32: every value is a chain of at most K
roundings (K below 4 x the widest inner dimension: a norm's sums, a matrix
product's chain, a softmax's sum), each a relative error of at most
u = 2^-24, so an element's relative error is at most K u / (1 - K u) < 3.1e-5
for K <= 512 (every tiny config here), compounded through at most 8 such
chains per block and 3 blocks: under 1e-3 relative in a variance (twice an
element's error), and 1e-3 absolute in the loss and entropies (nats of
quantities of order 1-10 carrying relative errors of 1e-4). A wrong mask,
scale, rotary pairing or residual order changes these statistics by far more
(percent or more).
"""

import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file

REL = 1e-3
ABS = 1e-3


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return w * (x / np.sqrt((x**2).mean(-1, keepdims=True) + eps))


def inv_freq(cfg, head_dim):
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    f = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "llama3":
        factor = params["factor"]
        low, high = params["low_freq_factor"], params["high_freq_factor"]
        old = params["original_max_position_embeddings"]
        wl = 2 * math.pi / f
        smooth = (old / wl - low) / (high - low)
        scaled = np.where(wl > old / low, f / factor, f)
        medium = ~(wl < old / high) & ~(wl > old / low)
        f = np.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)
    return f


def attention(q, k, v, scale, window):
    """q: (B, H, T, d); k, v: (B, KV, T, d). Returns out (B, H, T, d), probs."""
    b, h, t, d = q.shape
    rep = h // k.shape[1]
    k = np.repeat(k, rep, axis=1)
    v = np.repeat(v, rep, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    i = np.arange(t)[:, None]
    j = np.arange(t)[None, :]
    allowed = j <= i
    if window:
        allowed &= (i - j) < window
    s = np.where(allowed, s, -np.inf)
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p = p / p.sum(-1, keepdims=True)
    return np.einsum("bhij,bhjd->bhid", p, v), p


def run(cfg, w, ids):
    kind = cfg["model_type"]
    b, t = ids.shape
    g = lambda n: w[n].astype(np.float64)
    stats = {"blocks": []}
    if kind == "gpt2":
        e = cfg.get("n_embd", 768)
        h = cfg.get("n_head", 12)
        hd, kv = e // h, h
        p = "transformer."
        eps = cfg.get("layer_norm_epsilon", 1e-5)
        x = g(p + "wte.weight")[ids] + g(p + "wpe.weight")[np.arange(t)][None]
        layers = cfg.get("n_layer", 12)
        scale = 1.0 / math.sqrt(hd) if cfg.get("scale_attn_weights", True) else 1.0
        window = 0
    else:
        e = cfg["hidden_size"]
        h = cfg["num_attention_heads"]
        kv = cfg.get("num_key_value_heads", h)
        hd = cfg.get("head_dim") or e // h
        p = "model."
        eps = cfg.get("rms_norm_eps", 1e-6)
        x = g(p + "embed_tokens.weight")[ids]
        layers = cfg["num_hidden_layers"]
        scale = 1.0 / math.sqrt(hd)
        sliding = kind == "mistral" or (kind == "qwen2" and cfg.get("use_sliding_window", False))
        window = (cfg.get("sliding_window") or 0) if sliding else 0
        f = inv_freq(cfg, hd)
        ang = np.arange(t, dtype=np.float64)[:, None] * f[None, :]
        cos, sin = np.cos(ang), np.sin(ang)

        def rope(z):  # (B, heads, T, d)
            half = hd // 2
            a, c = z[..., :half], z[..., half:]
            return np.concatenate([a * cos - c * sin, c * cos + a * sin], axis=-1)

    stats["embed"] = x
    heads = lambda z, n: z.reshape(b, t, n, hd).transpose(0, 2, 1, 3)
    merge = lambda z: z.transpose(0, 2, 1, 3).reshape(b, t, -1)
    ents, maxps = [], []
    for i in range(layers):
        if kind == "gpt2":
            n = lambda s: f"{p}h.{i}.{s}"
            hn = layer_norm(x, g(n("ln_1.weight")), g(n("ln_1.bias")), eps)
            qkv = hn @ g(n("attn.c_attn.weight")) + g(n("attn.c_attn.bias"))
            q, k, v = (heads(z, h) for z in np.split(qkv, 3, axis=-1))
        else:
            n = lambda s: f"{p}layers.{i}.{s}"
            hn = rms_norm(x, g(n("input_layernorm.weight")), eps)

            def proj(name, z):
                y = z @ g(n(name + ".weight")).T
                if n(name + ".bias") in w:
                    y = y + g(n(name + ".bias"))
                return y

            q = rope(heads(proj("self_attn.q_proj", hn), h))
            k = rope(heads(proj("self_attn.k_proj", hn), kv))
            v = heads(proj("self_attn.v_proj", hn), kv)
        out, probs = attention(q, k, v, scale, window)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.where(probs > 0, probs * np.log(probs), 0.0).sum(-1)
        ents.append(ent.mean())
        maxps.append(probs.max(-1).mean())
        if kind == "gpt2":
            a = merge(out) @ g(n("attn.c_proj.weight")) + g(n("attn.c_proj.bias"))
            mid = x + a
            h2 = layer_norm(mid, g(n("ln_2.weight")), g(n("ln_2.bias")), eps)
            fh = gelu_tanh(h2 @ g(n("mlp.c_fc.weight")) + g(n("mlp.c_fc.bias")))
            m = fh @ g(n("mlp.c_proj.weight")) + g(n("mlp.c_proj.bias"))
        else:
            a = proj("self_attn.o_proj", merge(out))
            mid = x + a
            h2 = rms_norm(mid, g(n("post_attention_layernorm.weight")), eps)
            m = proj("mlp.down_proj", silu(proj("mlp.gate_proj", h2)) * proj("mlp.up_proj", h2))
        x = mid + m
        stats["blocks"].append({"norm": hn, "attn": a, "mid": mid, "norm2": h2, "mlp": m, "out": x})
    if kind == "gpt2":
        xf = layer_norm(x, g(p + "ln_f.weight"), g(p + "ln_f.bias"), eps)
        head = g("lm_head.weight") if "lm_head.weight" in w else g(p + "wte.weight")
    else:
        xf = rms_norm(x, g(p + "norm.weight"), eps)
        head = g("lm_head.weight") if "lm_head.weight" in w else g(p + "embed_tokens.weight")
    logits = xf @ head.T
    z = logits[:, :-1]
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    tgt = np.take_along_axis(z, ids[:, 1:, None], axis=-1)[..., 0]
    stats.update(final_norm=xf, logits=logits, loss=(lse - tgt).mean(), ents=ents, maxps=maxps)
    return stats


def close(what, got, want, rel=None, abs_=None):
    ok = True
    if rel is not None:
        ok = abs(got - want) <= rel * abs(want)
    if abs_ is not None:
        ok = abs(got - want) <= abs_
    if not ok:
        raise SystemExit(f"{what}: deepinit {got!r}, numpy {want!r}")


def check(config, ckdir, tokens, report):
    cfg = json.load(open(config))
    w = load_file(f"{ckdir}/model.safetensors")
    ids = np.load(tokens)
    r = json.load(open(report))["stats"]
    s = run(cfg, w, ids)
    var = lambda a: float(np.var(a, ddof=1))
    close("embed var", r["embed"]["var"], var(s["embed"]), rel=REL)
    assert len(r["blocks"]) == len(s["blocks"])
    for i, (rb, sb) in enumerate(zip(r["blocks"], s["blocks"])):
        for part in ["norm", "attn", "mid", "norm2", "mlp", "out"]:
            close(f"block {i + 1} {part} var", rb[part]["var"], var(sb[part]), rel=REL)
            close(f"block {i + 1} {part} mean", rb[part]["mean"], float(sb[part].mean()),
                  abs_=REL * math.sqrt(var(sb[part])))
        close(f"block {i + 1} entropy", rb["entropy"], float(s["ents"][i]), abs_=ABS)
        close(f"block {i + 1} max prob", rb["max_prob"], float(s["maxps"][i]), abs_=ABS)
    close("final norm var", r["final_norm"]["var"], var(s["final_norm"]), rel=REL)
    close("logits var", r["logits"]["var"], var(s["logits"]), rel=REL)
    close("loss", r["loss"], float(s["loss"]), abs_=ABS)
    print(f"numpy agrees: {len(s['blocks'])} blocks, loss {s['loss']:.6f}")


if __name__ == "__main__":
    if sys.argv[1] == "tokens":
        out, b, t, vocab, seed = sys.argv[2], *map(int, sys.argv[3:7])
        np.save(out, np.random.default_rng(seed).integers(0, vocab, size=(b, t), dtype=np.int64))
    else:
        check(*sys.argv[2:6])
