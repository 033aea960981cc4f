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
(percent or more). The backward pass runs twice the chains of the forward
(every product and norm again, transposed), so its norms get twice the
bound: 2e-3 relative.
"""

import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file

REL = 1e-3
ABS = 1e-3
REL_GRAD = 2e-3


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def gelu_erf(x):
    return 0.5 * x * (1.0 + ERF(x / math.sqrt(2.0)))


def gelu_erf_grad(x):
    return 0.5 * (1.0 + ERF(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


ERF = np.vectorize(math.erf)


def erf_form(cfg):
    """transformers' gelu / gelu_python are erf's GELU, the rest the tanh form."""
    return cfg.get("activation_function", "gelu_new") in ("gelu", "gelu_python")


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


def attention(q, k, v, scale, window, causal=True):
    """q: (B, H, T, d); k, v: (B, KV, T, d). Returns out (B, H, T, d), probs."""
    b, h, t, d = q.shape
    rep = h // k.shape[1]
    k = np.repeat(k, rep, axis=1)
    v = np.repeat(v, rep, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    i = np.arange(t)[:, None]
    j = np.arange(t)[None, :]
    allowed = (j <= i) if causal else np.ones((t, t), dtype=bool)
    if window:
        allowed &= (i - j) < window
    s = np.where(allowed, s, -np.inf)
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p = p / p.sum(-1, keepdims=True)
    return np.einsum("bhij,bhjd->bhid", p, v), p


def run_bert(cfg, w, ids):
    """BertForMaskedLM's forward pass (post-norm, bidirectional, token type 0,
    erf GELU unless hidden_act says otherwise) and its masked-LM loss with
    labels = input ids, as transformers' modeling_bert computes them."""
    b, t = ids.shape
    g = lambda n: w[n].astype(np.float64)
    e = cfg.get("hidden_size", 768)
    h = cfg.get("num_attention_heads", 12)
    hd = e // h
    eps = cfg.get("layer_norm_eps", 1e-12)
    act = cfg.get("hidden_act", "gelu")
    gelu = gelu_erf if act in ("gelu", "gelu_python") else gelu_tanh
    p = "bert."
    ln = lambda z, n: layer_norm(z, g(n + ".weight"), g(n + ".bias"), eps)
    lin = lambda z, n: z @ g(n + ".weight").T + g(n + ".bias")
    row_var = lambda z: z.var(-1)
    x = g(p + "embeddings.word_embeddings.weight")[ids] + g(p + "embeddings.token_type_embeddings.weight")[0]
    x = x + g(p + "embeddings.position_embeddings.weight")[np.arange(t)][None]
    heads = lambda z: z.reshape(b, t, h, hd).transpose(0, 2, 1, 3)
    merge = lambda z: z.transpose(0, 2, 1, 3).reshape(b, t, -1)
    ents, maxps, caches = [], [], []
    emb_sum = x
    x = ln(x, p + "embeddings.LayerNorm")
    stats = {"embed": x, "blocks": []}
    for i in range(cfg.get("num_hidden_layers", 12)):
        n = lambda s: f"{p}encoder.layer.{i}.{s}"
        q, k, v = (heads(lin(x, n(f"attention.self.{s}"))) for s in ("query", "key", "value"))
        out, probs = attention(q, k, v, 1.0 / math.sqrt(hd), 0, causal=False)
        cache = {"x_in": x, "q": q, "k": k, "v": v, "probs": probs, "out": out}
        with np.errstate(divide="ignore", invalid="ignore"):
            ents.append((-np.where(probs > 0, probs * np.log(probs), 0.0).sum(-1)).mean())
        maxps.append(probs.max(-1).mean())
        a = lin(merge(out), n("attention.output.dense"))
        s1 = x + a
        h1 = ln(s1, n("attention.output.LayerNorm"))
        z = lin(h1, n("intermediate.dense"))
        m = lin(gelu(z), n("output.dense"))
        s2 = h1 + m
        x = ln(s2, n("output.LayerNorm"))
        cache.update(s1=s1, h1=h1, z=z, s2=s2)
        caches.append(cache)
        stats["blocks"].append({"norm": h1, "attn": a, "mid": s1, "norm2": x, "mlp": m, "out": s2,
                                "norm_in": row_var(s1), "norm2_in": row_var(s2)})
    tz = lin(x, "cls.predictions.transform.dense")
    tr = gelu(tz)
    xf = ln(tr, "cls.predictions.transform.LayerNorm")
    logits = xf @ g(p + "embeddings.word_embeddings.weight").T + g("cls.predictions.bias")
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    tgt = np.take_along_axis(logits, ids[..., None], axis=-1)[..., 0]
    stats.update(final_norm=xf, final_norm_in=row_var(tr), eps=eps, logits=logits,
                 loss=(lse - tgt).mean(), ents=ents, maxps=maxps)
    stats["grads"] = backward_bert(cfg, w, ids, caches, (emb_sum, x, tz, tr, xf), logits, eps)
    return stats


def backward_bert(cfg, w, ids, caches, ends, logits, eps):
    """BertForMaskedLM's gradients of its masked-LM loss (labels = input
    ids, every row), by hand, as `backward` for the decoders: post-norm
    blocks (s1 = x + attn(x), y1 = LN(s1), s2 = y1 + mlp(y1), y = LN(s2)),
    the head's transform, the decoder's bias, the embeddings' norm and the
    token-type table (every token of type 0)."""
    emb_sum, x_last, tz, tr, xf = ends
    b, t = ids.shape
    g = lambda n: w[n].astype(np.float64)
    fro = lambda a: float(np.sqrt((a**2).sum()))
    flat = lambda a: a.reshape(-1, a.shape[-1])
    act = cfg.get("hidden_act", "gelu")
    gelu_grad = gelu_erf_grad if act in ("gelu", "gelu_python") else gelu_tanh_grad
    e = cfg.get("hidden_size", 768)
    h = cfg.get("num_attention_heads", 12)
    hd = e // h
    p = "bert."
    tok = p + "embeddings.word_embeddings.weight"
    z = logits - logits.max(-1, keepdims=True)
    dl = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    dl[np.arange(b)[:, None], np.arange(t)[None, :], ids] -= 1.0
    dl /= b * t
    hg = flat(dl).T @ flat(xf)
    out = {"head": fro(hg), "head_bias": fro(flat(dl).sum(0))}
    nb, ng = {}, {}

    def through_norm(name, x_in, d_out):
        """dL/d(input) of LayerNorm `name`; its parameters' gradient norms."""
        mu = x_in.mean(-1, keepdims=True)
        xh = (x_in - mu) / np.sqrt(((x_in - mu) ** 2).mean(-1, keepdims=True) + eps)
        ng[name + ".weight"] = fro(flat(d_out * xh).sum(0))
        nb[name + ".bias"] = fro(flat(d_out).sum(0))
        return norm_bwd(x_in, d_out, g(name + ".weight"), eps, False)

    def linear(name, x_in, d_out, grads):
        """dL/d(input) of the dense map `name` (y = x W^T + b); ||dW|| and
        ||db|| into `grads`."""
        grads[name + ".weight"] = (fro(flat(x_in).T @ flat(d_out)), fro(flat(d_out).sum(0)))
        return d_out @ g(name + ".weight")

    d = through_norm("cls.predictions.transform.LayerNorm", tr, dl @ g(tok))
    top = {}
    dx = linear("cls.predictions.transform.dense", x_last, d * gelu_grad(tz), top)
    out["transform"] = top
    out["stream_out"] = fro(dx)
    heads = lambda a: a.reshape(b, t, h, hd).transpose(0, 2, 1, 3)
    merge = lambda a: a.transpose(0, 2, 1, 3).reshape(b, t, -1)
    blocks = []
    for i in reversed(range(len(caches))):
        c = caches[i]
        n = lambda s: f"{p}encoder.layer.{i}.{s}"
        grads = {}
        ds2 = through_norm(n("output.LayerNorm"), c["s2"], dx)
        fh = (gelu_erf if act in ("gelu", "gelu_python") else gelu_tanh)(c["z"])
        df = linear(n("output.dense"), fh, ds2, grads)
        dmid = ds2 + linear(n("intermediate.dense"), c["h1"], df * gelu_grad(c["z"]), grads)
        ds1 = through_norm(n("attention.output.LayerNorm"), c["s1"], dmid)
        d_o = heads(linear(n("attention.output.dense"), merge(c["out"]), ds1, grads))
        dq, dk, dv = attention_bwd(c, d_o, 1.0 / math.sqrt(hd), h)
        dx = ds1
        for name, dz in [("query", dq), ("key", dk), ("value", dv)]:
            dx = dx + linear(n(f"attention.self.{name}"), c["x_in"], merge(dz), grads)
        # The key's bias adds q.b_k to every score of a query's row, which
        # the softmax ignores: its gradient sum_r dk_r = sum_i q_i sum_j dS_ij
        # is 0 (each row of dS sums to 0). deepinit's value is rounding.
        # Assumed: its dK is off by an error E with ||E|| <= REL_GRAD ||dK||
        # (the tolerance every gradient norm here is held to, not derived
        # element by element); then ||sum of the rows of E|| <= sqrt(rows)
        # ||E|| <= REL_GRAD sqrt(rows) ||dK|| (Cauchy-Schwarz), and the sum
        # of the Gram matrix dK dK^T it forms (rows^2 entries, each a chain
        # of e products, |entries| summing to at most rows ||dK||^2) is off
        # by at most (e + rows^2) 2^-24 rows ||dK||^2.
        rows = b * t
        gamma = (e + rows * rows) * 2.0**-24
        zero = {n("attention.self.key.weight"):
                math.sqrt(rows * (REL_GRAD**2 + gamma)) * fro(dk)}
        blocks.append({"stream_in": fro(dx), "stream_mid": fro(dmid),
                       "weights": {k: v[0] for k, v in grads.items()},
                       "biases": {k: v[1] for k, v in grads.items()}, "zero_biases": zero})
    out["blocks"] = blocks[::-1]
    # The embeddings: back through their norm to the sum, then each table
    # by its lookup (the word table's padding row gets none; every token is
    # of type 0).
    d = flat(through_norm(p + "embeddings.LayerNorm", emb_sum, dx))
    lookup = np.zeros((w[tok].shape[0], e))
    np.add.at(lookup, ids.reshape(-1), d)
    lookup[cfg.get("pad_token_id", 0)] = 0.0
    pos = np.zeros((w[p + "embeddings.position_embeddings.weight"].shape[0], e))
    np.add.at(pos, np.tile(np.arange(t), b), d)
    out["embeddings"] = {tok: fro(lookup), p + "embeddings.position_embeddings.weight": fro(pos),
                         p + "embeddings.token_type_embeddings.weight": fro(d.sum(0))}
    out["tied"] = {"norm": fro(lookup + hg), "cross": float((lookup * hg).sum()),
                   "lookup": fro(lookup), "head": fro(hg)}
    out["norm_biases"], out["norm_gains"] = nb, ng
    return out


def run(cfg, w, ids):
    kind = cfg["model_type"]
    if kind == "bert":
        return run_bert(cfg, w, ids)
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

        rope_args = (cos, sin)

        def rope(z):  # (B, heads, T, d)
            half = hd // 2
            a, c = z[..., :half], z[..., half:]
            return np.concatenate([a * cos - c * sin, c * cos + a * sin], axis=-1)

    stats["embed"] = x
    # Each norm's input rows' variances: about the row's mean for LayerNorm,
    # the mean square for RMSNorm.
    row_var = (lambda z: z.var(-1)) if kind == "gpt2" else (lambda z: (z * z).mean(-1))
    heads = lambda z, n: z.reshape(b, t, n, hd).transpose(0, 2, 1, 3)
    merge = lambda z: z.transpose(0, 2, 1, 3).reshape(b, t, -1)
    ents, maxps, caches = [], [], []
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
        cache = {"hn": hn, "q": q, "k": k, "v": v, "probs": probs, "out": out, "x_in": x}
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.where(probs > 0, probs * np.log(probs), 0.0).sum(-1)
        ents.append(ent.mean())
        maxps.append(probs.max(-1).mean())
        if kind == "gpt2":
            a = merge(out) @ g(n("attn.c_proj.weight")) + g(n("attn.c_proj.bias"))
            mid = x + a
            h2 = layer_norm(mid, g(n("ln_2.weight")), g(n("ln_2.bias")), eps)
            zf = h2 @ g(n("mlp.c_fc.weight")) + g(n("mlp.c_fc.bias"))
            fh = gelu_erf(zf) if erf_form(cfg) else gelu_tanh(zf)
            m = fh @ g(n("mlp.c_proj.weight")) + g(n("mlp.c_proj.bias"))
            cache.update(zf=zf, fh=fh)
        else:
            a = proj("self_attn.o_proj", merge(out))
            mid = x + a
            h2 = rms_norm(mid, g(n("post_attention_layernorm.weight")), eps)
            zg, zu = proj("mlp.gate_proj", h2), proj("mlp.up_proj", h2)
            fh = silu(zg) * zu
            m = proj("mlp.down_proj", fh)
            cache.update(zg=zg, zu=zu, fh=fh)
        cache.update(mid=mid, h2=h2)
        caches.append(cache)
        x = mid + m
        stats["blocks"].append({"norm": hn, "attn": a, "mid": mid, "norm2": h2, "mlp": m, "out": x,
                                "norm_in": row_var(cache["x_in"]), "norm2_in": row_var(mid)})
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
    stats.update(final_norm=xf, final_norm_in=row_var(x), eps=eps, logits=logits, loss=(lse - tgt).mean(), ents=ents, maxps=maxps)
    stats["grads"] = backward(cfg, w, ids, caches, x, xf, logits, head, eps, scale,
                              (h, kv, hd, e, window), kind, p, locals().get("rope_args"))
    return stats


def gelu_tanh_grad(x):
    c = math.sqrt(2.0 / math.pi)
    t = np.tanh(c * (x + 0.044715 * x**3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x)


def silu_grad(x):
    s = 1.0 / (1.0 + np.exp(-x))
    return s * (1.0 + x * (1.0 - s))


def norm_bwd(x, dy, w, eps, rms):
    """dL/dx of LayerNorm (weight w, biased variance) or RMSNorm."""
    g = dy * w
    if rms:
        inv = 1.0 / np.sqrt((x**2).mean(-1, keepdims=True) + eps)
        xh = x * inv
        return inv * (g - xh * (g * xh).mean(-1, keepdims=True))
    mu = x.mean(-1, keepdims=True)
    inv = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xh = (x - mu) * inv
    return inv * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))


def attention_bwd(c, d_o, scale, kv):
    """dq, dk, dv (per head, as (B, heads, T, d)) from dL/d(attention
    output) d_o, the cache's q, k, v and probabilities; k and v shared by
    groups of query heads get their group's sum."""
    b, h, t, hd = d_o.shape
    rep = h // kv
    kr, vr = np.repeat(c["k"], rep, axis=1), np.repeat(c["v"], rep, axis=1)
    pm = c["probs"]
    dp = np.einsum("bhid,bhjd->bhij", d_o, vr)
    dv = np.einsum("bhij,bhid->bhjd", pm, d_o)
    ds = pm * (dp - (dp * pm).sum(-1, keepdims=True)) * scale
    dq = np.einsum("bhij,bhjd->bhid", ds, kr)
    dk = np.einsum("bhij,bhid->bhjd", ds, c["q"])
    return dq, dk.reshape(b, kv, rep, t, hd).sum(2), dv.reshape(b, kv, rep, t, hd).sum(2)


def backward(cfg, w, ids, caches, x_last, xf, logits, head, eps, scale, dims, kind, p, rope_args):
    """The mean next-token loss's gradients, by hand: Frobenius norms of the
    stream's gradient at each block's input and middle, and of every weight."""
    h, kv, hd, e, window = dims
    b, t = ids.shape
    g = lambda n: w[n].astype(np.float64)
    fro = lambda a: float(np.sqrt((a**2).sum()))
    rms = kind != "gpt2"
    n_rows = b * (t - 1)
    z = logits - logits.max(-1, keepdims=True)
    pr = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    dl = pr.copy()
    dl[:, :-1][np.arange(b)[:, None], np.arange(t - 1)[None, :], ids[:, 1:]] -= 1.0
    dl[:, -1] = 0.0
    dl /= n_rows
    out = {"head": fro(dl.reshape(-1, dl.shape[-1]).T @ xf.reshape(-1, e))}
    dxf = dl @ head
    # A norm's parameters: the bias's gradient is the column sums of the
    # gradient at the norm's output (LayerNorm only; RMSNorm has no bias),
    # the weight's the column sums of that gradient times the normalized
    # input.
    nb, ng = {}, {}

    def norm_grads(weight, x_in, d_out):
        if rms:
            xh = x_in / np.sqrt((x_in**2).mean(-1, keepdims=True) + eps)
        else:
            mu = x_in.mean(-1, keepdims=True)
            xh = (x_in - mu) / np.sqrt(((x_in - mu) ** 2).mean(-1, keepdims=True) + eps)
        ng[weight] = fro(flat(d_out * xh).sum(0))
        bias = weight[: -len("weight")] + "bias"
        if bias in w:
            nb[bias] = fro(flat(d_out).sum(0))

    flat = lambda a: a.reshape(-1, a.shape[-1])
    if kind == "gpt2":
        norm_grads(p + "ln_f.weight", x_last, dxf)
        dx = norm_bwd(x_last, dxf, g(p + "ln_f.weight"), eps, False)
    else:
        norm_grads(p + "norm.weight", x_last, dxf)
        dx = norm_bwd(x_last, dxf, g(p + "norm.weight"), eps, True)
    out["stream_out"] = fro(dx)
    heads = lambda a, n: a.reshape(b, t, n, hd).transpose(0, 2, 1, 3)
    merge = lambda a: a.transpose(0, 2, 1, 3).reshape(b, t, -1)
    blocks = []
    for i in reversed(range(len(caches))):
        c = caches[i]
        wg, wb = {}, {}

        def grad(name, x_in, d_out):
            """||dW|| from the layer's input and output gradient; where the
            layer has a bias, ||db||: the output gradient's column sums."""
            wg[name] = fro(flat(x_in).T @ flat(d_out))
            bias = name[: -len("weight")] + "bias"
            if bias in w:
                wb[name] = fro(flat(d_out).sum(0))

        if kind == "gpt2":
            n = lambda s: f"{p}h.{i}.{s}"
            grad(n("mlp.c_proj.weight"), c["fh"], dx)
            dz = (dx @ g(n("mlp.c_proj.weight")).T) * (
                gelu_erf_grad(c["zf"]) if erf_form(cfg) else gelu_tanh_grad(c["zf"]))
            grad(n("mlp.c_fc.weight"), c["h2"], dz)
            dh2 = dz @ g(n("mlp.c_fc.weight")).T
            norm_grads(n("ln_2.weight"), c["mid"], dh2)
            dmid = dx + norm_bwd(c["mid"], dh2, g(n("ln_2.weight")), eps, False)
            grad(n("attn.c_proj.weight"), merge(c["out"]), dmid)
            d_o = heads(dmid @ g(n("attn.c_proj.weight")).T, h)
        else:
            n = lambda s: f"{p}layers.{i}.{s}"
            grad(n("mlp.down_proj.weight"), c["fh"], dx)
            da = dx @ g(n("mlp.down_proj.weight"))
            dg = da * c["zu"] * silu_grad(c["zg"])
            du = da * silu(c["zg"])
            grad(n("mlp.gate_proj.weight"), c["h2"], dg)
            grad(n("mlp.up_proj.weight"), c["h2"], du)
            dh2 = dg @ g(n("mlp.gate_proj.weight")) + du @ g(n("mlp.up_proj.weight"))
            norm_grads(n("post_attention_layernorm.weight"), c["mid"], dh2)
            dmid = dx + norm_bwd(c["mid"], dh2, g(n("post_attention_layernorm.weight")), eps, True)
            grad(n("self_attn.o_proj.weight"), merge(c["out"]), dmid)
            d_o = heads(dmid @ g(n("self_attn.o_proj.weight")), h)
        dq, dk, dv = attention_bwd(c, d_o, scale, kv)
        if rope_args is not None:
            cos, sin = rope_args
            half = hd // 2

            def unrope(a):
                ga, gb = a[..., :half], a[..., half:]
                return np.concatenate([ga * cos + gb * sin, gb * cos - ga * sin], axis=-1)

            dq, dk = unrope(dq), unrope(dk)
        dq, dk, dv = merge(dq), merge(dk), merge(dv)
        if kind == "gpt2":
            dqkv = np.concatenate([dq, dk, dv], axis=-1)
            grad(n("attn.c_attn.weight"), c["hn"], dqkv)
            dh1 = dqkv @ g(n("attn.c_attn.weight")).T
            norm_grads(n("ln_1.weight"), c["x_in"], dh1)
            dx = dmid + norm_bwd(c["x_in"], dh1, g(n("ln_1.weight")), eps, False)
        else:
            dh1 = 0
            for name, d in [("q_proj", dq), ("k_proj", dk), ("v_proj", dv)]:
                grad(n(f"self_attn.{name}.weight"), c["hn"], d)
                dh1 = dh1 + d @ g(n(f"self_attn.{name}.weight"))
            norm_grads(n("input_layernorm.weight"), c["x_in"], dh1)
            dx = dmid + norm_bwd(c["x_in"], dh1, g(n("input_layernorm.weight")), eps, True)
        blocks.append({"stream_in": fro(dx), "stream_mid": fro(dmid), "weights": wg,
                       "biases": wb})
    out["blocks"] = blocks[::-1]
    # The embedding tables through the lookup: scatter-add dx's rows by
    # token id (and by position), as training would.
    emb = {}
    tok = p + ("wte.weight" if kind == "gpt2" else "embed_tokens.weight")
    table = np.zeros((w[tok].shape[0], e))
    np.add.at(table, ids.reshape(-1), flat(dx))
    pad = cfg.get("pad_token_id") if kind != "gpt2" else None
    if pad is not None:
        table[pad] = 0.0  # nn.Embedding(padding_idx=pad): no gradient for that row
    emb[tok] = fro(table)
    if kind == "gpt2":
        table = np.zeros((w[p + "wpe.weight"].shape[0], e))
        np.add.at(table, np.tile(np.arange(t), b), flat(dx))
        emb[p + "wpe.weight"] = fro(table)
    out["embeddings"] = emb
    # A tied table's whole gradient: the lookup's scatter plus the head's.
    out["tied"] = None
    if "lm_head.weight" not in w:
        hg = dl.reshape(-1, dl.shape[-1]).T @ xf.reshape(-1, e)
        lookup = np.zeros((w[tok].shape[0], e))
        np.add.at(lookup, ids.reshape(-1), flat(dx))
        if pad is not None:
            lookup[pad] = 0.0
        out["tied"] = {"norm": fro(lookup + hg), "cross": float((lookup * hg).sum()),
                       "lookup": fro(lookup), "head": fro(hg)}
    out["norm_biases"], out["norm_gains"] = nb, ng
    return out


def close(what, got, want, rel=None, abs_=None):
    ok = True
    if rel is not None:
        ok = abs(got - want) <= rel * abs(want)
    if abs_ is not None:
        ok = abs(got - want) <= abs_
    if not ok:
        raise SystemExit(f"{what}: deepinit {got!r}, numpy {want!r}")


def check_rows(what, got, v, eps):
    """A norm's input rows' variances v (float64) against the report's."""
    assert got["nonfinite"] == 0, what
    for key, want in [("mean", v.mean()), ("min", v.min()), ("max", v.max()),
                      ("unit_ms", (v / (v + eps)).mean())]:
        close(f"{what} {key}", got[key], float(want), rel=REL)


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
        for part in ["norm_in", "norm2_in"]:
            check_rows(f"block {i + 1} {part}", rb[part], sb[part], s["eps"])
        close(f"block {i + 1} entropy", rb["entropy"], float(s["ents"][i]), abs_=ABS)
        close(f"block {i + 1} max prob", rb["max_prob"], float(s["maxps"][i]), abs_=ABS)
    check_rows("final norm input", r["final_norm_in"], s["final_norm_in"], s["eps"])
    close("final norm var", r["final_norm"]["var"], var(s["final_norm"]), rel=REL)
    close("logits var", r["logits"]["var"], var(s["logits"]), rel=REL)
    close("loss", r["loss"], float(s["loss"]), abs_=ABS)
    rg, sg = r["grads"], s["grads"]
    close("dL/dx after the last block", rg["stream_out"], sg["stream_out"], rel=REL_GRAD)
    if rg["head"] is not None:
        close("head dW", rg["head"], sg["head"], rel=REL_GRAD)
    # BERT's decoder bias and its head's transform: measured exactly there.
    assert (rg["head_bias"] is None) == ("head_bias" not in sg), rg["head_bias"]
    if rg["head_bias"] is not None:
        close("head db", rg["head_bias"], sg["head_bias"], rel=REL_GRAD)
    assert (rg["transform"] is None) == ("transform" not in sg), rg["transform"]
    if rg["transform"] is not None:
        want_w, want_b = sg["transform"][rg["transform"]["name"]]
        close("transform dW", rg["transform"]["norm"], want_w, rel=REL_GRAD)
        close("transform db", rg["transform"]["bias"], want_b, rel=REL_GRAD)
    # The tied table's whole gradient is reported exactly where the head is
    # tied (and its share measured).
    assert (rg["tied"] is None) == (sg["tied"] is None), (rg["tied"], sg["tied"])
    if rg["tied"] is not None:
        st = sg["tied"]
        close("tied table dW", rg["tied"]["norm"], st["norm"], rel=REL_GRAD)
        # The cross term on its own (at init it can be small against the
        # norm): |<L, H>| <= ||L|| ||H||, and each share's relative error
        # (at most REL_GRAD) moves it by at most REL_GRAD ||L|| ||H||: both
        # together by 2 REL_GRAD ||L|| ||H||.
        close("tied table <lookup, head>", rg["tied"]["cross"], st["cross"],
              abs_=2 * REL_GRAD * st["lookup"] * st["head"])
    for i, (rb, sb) in enumerate(zip(rg["blocks"], sg["blocks"])):
        close(f"block {i + 1} dL/dx in", rb["stream_in"], sb["stream_in"], rel=REL_GRAD)
        close(f"block {i + 1} dL/dx mid", rb["stream_mid"], sb["stream_mid"], rel=REL_GRAD)
        assert len(rb["weights"]) == len(sb["weights"]), (rb["weights"], sb["weights"])
        for wgr in rb["weights"]:
            close(f"block {i + 1} dW {wgr['name']}", wgr["norm"], sb["weights"][wgr["name"]], rel=REL_GRAD)
            # The bias gradients: measured exactly where the layer has a bias.
            assert (wgr["bias"] is None) == (wgr["name"] not in sb["biases"]), (wgr, sb["biases"])
            what = f"block {i + 1} db of {wgr['name']}"
            if wgr["name"] in sb.get("zero_biases", {}):
                # Zero in exact arithmetic: deepinit's value is rounding.
                bound = sb["zero_biases"][wgr["name"]]
                assert wgr["bias"] <= bound, f"{what}: deepinit {wgr['bias']!r}, bound {bound!r}"
            elif wgr["bias"] is not None:
                close(what, wgr["bias"], sb["biases"][wgr["name"]], rel=REL_GRAD)
    counts = []
    for part in ["embeddings", "norm_gains", "norm_biases"]:
        got = {b["name"]: b["norm"] for b in rg[part]}
        assert set(got) == set(sg[part]), (part, sorted(got), sorted(sg[part]))
        for name, v in got.items():
            close(f"{part}: {name}", v, sg[part][name], rel=REL_GRAD)
        counts.append(len(got))
    print(f"numpy agrees: {len(s['blocks'])} blocks, loss {s['loss']:.6f}, "
          f"{counts[0]} embedding tables, {counts[1]} norm gains, {counts[2]} norm biases")


if __name__ == "__main__":
    if sys.argv[1] == "tokens":
        out, b, t, vocab, seed = sys.argv[2], *map(int, sys.argv[3:7])
        ids = np.random.default_rng(seed).integers(0, vocab, size=(b, t), dtype=np.int64)
        # Token 0 (the tiny Llama's and Qwen2's pad_token_id) at two positions
        # that are not a sequence's last, so the padding row is exercised.
        ids[0, 1] = ids[1, 4] = 0
        np.save(out, ids)
    else:
        check(*sys.argv[2:6])
