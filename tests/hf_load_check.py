"""Checks that Hugging Face transformers loads a deepinit checkpoint cleanly.

    python3 tests/hf_load_check.py DIR [--class auto|NAME] [--rules]

DIR holds config.json and model.safetensors, or shards named by
model.safetensors.index.json. The model is loaded with

    CLS.from_pretrained(DIR, output_loading_info=True, dtype="auto")

where CLS, with --class auto (the default), follows config.json's first
"architectures" entry: *ForCausalLM -> AutoModelForCausalLM, *ForMaskedLM ->
AutoModelForMaskedLM, anything else -> AutoModel. Architectures that
transformers itself maps to those auto classes without the suffix (e.g.
GPT2LMHeadModel, a causal LM) go to the same auto class, because AutoModel
would load the base GPT2Model and strip the "transformer." prefix. --class
NAME uses transformers.NAME (e.g. LlamaForCausalLM or AutoModel).

It fails (exit 1, naming the keys) when
  * the loading info has any missing_keys, unexpected_keys, mismatched_keys or
    error_msgs;
  * a tensor in the files is not in the loaded model's state_dict (a key that
    transformers silently dropped or renamed);
  * config.json has no dtype (`dtype`, or the older `torch_dtype`), or a loaded
    floating-point tensor's dtype differs from it or from the file's dtype;
  * a loaded tensor is not bit for bit the tensor in the file (so transformers
    re-initialized or converted something);
  * a tie the config asks for (target -> source, recomputed from the config)
    is not really tied in the loaded model (neither the same storage nor equal
    values).
On success it prints one line: "OK: CLASS, N tensors, P parameters, DTYPE"
(N tensors in the files, P unique parameters of the loaded model). With
--rules it first prints, per tensor in the files, its shape, dtype, mean and
population std (float64). Needs torch, transformers and safetensors only.
"""
import argparse
import json
import os
import sys

import torch
import transformers
from safetensors import safe_open
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
BITS = {
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float64: torch.int64,
}


def shard_files(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        files = sorted(set(weight_map.values()))
        return [os.path.join(d, fn) for fn in files], weight_map
    single = os.path.join(d, "model.safetensors")
    if os.path.exists(single):
        return [single], None
    raise SystemExit("FAIL: no model.safetensors or model.safetensors.index.json in %s" % d)


def pick_class(config, name):
    if name != "auto":
        cls = getattr(transformers, name, None)
        if cls is None:
            raise SystemExit("FAIL: transformers has no class %r" % name)
        return cls
    archs = config.get("architectures") or [""]
    arch = archs[0]
    if arch.endswith("ForCausalLM") or arch in mapped_names(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return transformers.AutoModelForCausalLM
    if arch.endswith("ForMaskedLM") or arch in mapped_names(MODEL_FOR_MASKED_LM_MAPPING_NAMES):
        return transformers.AutoModelForMaskedLM
    return transformers.AutoModel


def mapped_names(mapping):
    names = set()
    for v in mapping.values():
        names.update(v if isinstance(v, (list, tuple)) else [v])
    return names


def bit_equal(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype in BITS:
        return torch.equal(a.contiguous().view(BITS[a.dtype]), b.contiguous().view(BITS[b.dtype]))
    return torch.equal(a, b)


def mean_std(t, chunk=1 << 24):
    """float64 mean and population std, in chunks to bound memory."""
    flat = t.reshape(-1)
    n = flat.numel()
    if n == 0:
        return float("nan"), float("nan")
    s = 0.0
    for i in range(0, n, chunk):
        s += flat[i:i + chunk].to(torch.float64).sum().item()
    mean = s / n
    ss = 0.0
    for i in range(0, n, chunk):
        ss += ((flat[i:i + chunk].to(torch.float64) - mean) ** 2).sum().item()
    return mean, (ss / n) ** 0.5


def fmt_keys(keys, limit=20):
    keys = sorted(str(k) for k in keys)
    more = "" if len(keys) <= limit else " ... (+%d more)" % (len(keys) - limit)
    return ", ".join(keys[:limit]) + more


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--class", dest="cls", default="auto")
    ap.add_argument("--rules", action="store_true", help="print per-tensor std")
    args = ap.parse_args(argv)

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    with open(os.path.join(args.dir, "config.json")) as f:
        config = json.load(f)
    files, weight_map = shard_files(args.dir)
    failures = []

    cfg_dtype_name = config.get("dtype", config.get("torch_dtype"))
    cfg_dtype = DTYPES.get(cfg_dtype_name)
    if cfg_dtype is None:
        failures.append("config.json dtype is %r (need dtype/torch_dtype, one of %s)"
                        % (cfg_dtype_name, ", ".join(DTYPES)))

    cls = pick_class(config, args.cls)
    model, info = cls.from_pretrained(args.dir, output_loading_info=True, dtype="auto")
    model.eval()
    for what in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(what):
            failures.append("%s: %s" % (what, fmt_keys(info[what])))

    sd = model.state_dict()
    n_tensors = 0
    file_dtypes = set()
    seen = {}
    for fn in files:
        with safe_open(fn, framework="pt") as f:
            keys = list(f.keys())
            if weight_map is not None:
                stray = [k for k in keys if weight_map.get(k) != os.path.basename(fn)]
                if stray:
                    failures.append("%s holds keys the index does not map to it: %s"
                                    % (os.path.basename(fn), fmt_keys(stray)))
            for k in keys:
                if k in seen:
                    failures.append("%s is in both %s and %s" % (k, seen[k], os.path.basename(fn)))
                    continue
                seen[k] = os.path.basename(fn)
                n_tensors += 1
                t = f.get_tensor(k)
                if t.is_floating_point():
                    file_dtypes.add(t.dtype)
                if args.rules:
                    m, s = mean_std(t)
                    print("%-64s %-18s %-9s mean=% .6e std=%.6e"
                          % (k, list(t.shape), str(t.dtype).split(".")[-1], m, s))
                if k not in sd:
                    failures.append("file tensor %s is not in the loaded %s state_dict"
                                    % (k, model.__class__.__name__))
                    continue
                p = sd[k]
                if p.is_floating_point() and cfg_dtype is not None and p.dtype != cfg_dtype:
                    failures.append("%s loaded as %s, config.json says %s" % (k, p.dtype, cfg_dtype_name))
                if p.dtype != t.dtype:
                    failures.append("%s loaded as %s, file has %s" % (k, p.dtype, t.dtype))
                elif p.shape != t.shape:
                    failures.append("%s loaded with shape %s, file has %s"
                                    % (k, list(p.shape), list(t.shape)))
                elif not bit_equal(p.detach().cpu(), t):
                    failures.append("%s differs from the file (re-initialized or converted?)" % k)
    if weight_map is not None:
        absent = set(weight_map) - set(seen)
        if absent:
            failures.append("index names keys that no shard holds: %s" % fmt_keys(absent))
    if cfg_dtype is not None and file_dtypes - {cfg_dtype}:
        failures.append("files hold %s, config.json says %s"
                        % (sorted(str(d) for d in file_dtypes), cfg_dtype_name))

    # Every floating parameter/buffer of the model should be in the config dtype
    # (catches tensors transformers created itself, e.g. tied ones).
    for k, p in sd.items():
        if p.is_floating_point() and cfg_dtype is not None and p.dtype != cfg_dtype \
                and k not in seen:
            failures.append("%s (not in the files) is %s, config.json says %s"
                            % (k, p.dtype, cfg_dtype_name))

    # Ties the config asks for, recomputed from the config (transformers drops a
    # tie from all_tied_weights_keys when both sides are stored and differ).
    ties = model.get_expanded_tied_weights_keys(all_submodels=True)
    for target, source in sorted(ties.items()):
        if target not in sd or source not in sd:
            failures.append("tie %s -> %s: key not in the model" % (target, source))
            continue
        a, b = sd[target], sd[source]
        if a.data_ptr() != b.data_ptr() and not bit_equal(a, b):
            failures.append("tie %s -> %s is not tied (different storage and values)" % (target, source))

    if failures:
        print("FAIL: %s (%s) in %s" % (model.__class__.__name__, cls.__name__, args.dir))
        limit = 40
        for line in failures[:limit]:
            print("  " + line)
        if len(failures) > limit:
            print("  ... and %d more problems" % (len(failures) - limit))
        return 1
    n_params = sum(p.numel() for p in model.parameters())
    dtype_name = cfg_dtype_name
    print("OK: %s, %d tensors, %d parameters, %s"
          % (model.__class__.__name__, n_tensors, n_params, dtype_name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
