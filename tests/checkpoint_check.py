"""Checks a deepinit checkpoint with the Python `safetensors` package and an
independent numpy re-implementation of the README's mapping. Used by
tests/model.rs:

    python3 tests/checkpoint_check.py DIR [MAX]

For every shard (model.safetensors, or the files model.safetensors.index.json
names), it loads the file with `safetensors` (bf16, which numpy lacks, is read
as uint16 and widened), reads the spec the metadata records, and recomputes
each tensor (its first and last MAX elements, default all): the tensor id is
FNV-1a-32 of the name, the values come from numpy_mapping.expected, and
bf16/f16 are the round-to-nearest-even of the float32 value. Every element
must agree bit for bit (the mapping is an integer program; see
numpy_mapping.py). Exit 0 when every element agrees.
"""
import json
import math
import os
import struct
import sys

import numpy as np
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_mapping import expected  # noqa: E402


def fnv1a32(name):
    h = 0x811C9DC5
    for b in name.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def target_std(t):
    init = t["init"]
    if init.startswith("naive:"):
        var = float(init[6:]) ** 2
    else:
        shape = t["shape"]
        if len(shape) == 1:
            fan_in = fan_out = shape[0]
        else:
            if t.get("layout") == "in_out":
                shape = [shape[1], shape[0]]
            groups = t.get("groups", 1)
            rf = int(np.prod(shape[2:])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[1] * rf, shape[0] // groups * rf
        scale, mode = {"he": (2.0, "fan_in"), "lecun": (1.0, "fan_in"),
                       "xavier": (1.0, "fan_avg")}[init]
        mode = t.get("mode", mode)
        if "gain" in t:
            scale = t["gain"] ** 2
        fan = {"fan_in": fan_in, "fan_out": fan_out,
               "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        var = scale / fan
    return math.sqrt(var * t.get("multiplier", 1.0))


def round_to(values, dtype):
    """float32 -> the stored type, as float32 (round to nearest even)."""
    if dtype == "F32":
        return values
    if dtype == "F16":
        return values.astype(np.float16).astype(np.float32)
    bits = values.view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return (bits.astype(np.uint32) << 16).view(np.float32)


def load(path):
    """name -> (float32 array, dtype name), via the safetensors package."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    out = {}
    with safe_open(path, framework="numpy") as st:
        meta = st.metadata()
        for name in st.keys():
            dtype = header[name]["dtype"]
            if dtype == "BF16":
                lo, hi = header[name]["data_offsets"]
                raw = np.fromfile(path, dtype=np.uint16, count=(hi - lo) // 2, offset=8 + n + lo)
                arr = (raw.astype(np.uint32) << 16).view(np.float32).reshape(header[name]["shape"])
            else:
                arr = st.get_tensor(name).astype(np.float32)
            out[name] = (arr, dtype)
    return meta, out


def block(t, meta):
    """(row range, col range, width) this checkpoint holds of tensor t."""
    shape = t["shape"]
    rows, width = shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1
    r, c = (0, rows), (0, width)
    tp = meta.get("deepinit.tensor_parallel")
    if tp and "split" in t:
        rank, size = [int(w) for w in tp.replace("rank", "").split("of")]
        if t["split"] == "rows":
            r = (rank * rows // size, (rank + 1) * rows // size)
        else:
            c = (rank * width // size, (rank + 1) * width // size)
    return r, c, width


def check(name, t, got, dtype, seed, meta, cap):
    (r0, r1), (c0, c1), width = block(t, meta)
    flat = got.reshape(-1)
    if t["init"] in ("zeros", "ones", "constant"):
        v = {"zeros": 0.0, "ones": 1.0}.get(t["init"], t.get("value"))
        want = round_to(np.full(flat.size, v, dtype=np.float32), dtype)
        return int(np.count_nonzero(flat.view(np.uint32) != want.view(np.uint32)))
    dist = t.get("dist", "normal")
    std = target_std(t)
    # Indices of the block's elements in the whole tensor, row-major.
    idx = (np.arange(r0, r1)[:, None] * width + np.arange(c0, c1)[None, :]).reshape(-1)
    pick = np.arange(idx.size)
    if cap and idx.size > 2 * cap:
        pick = np.concatenate([pick[:cap], pick[-cap:]])
    bad = 0
    # Contiguous runs of the whole tensor (one per row of the block).
    for run in np.split(pick, np.where(np.diff(idx[pick]) != 1)[0] + 1):
        start = int(idx[run[0]])
        want32 = expected(dist, std, seed, fnv1a32(name), run.size, start)
        want = round_to(want32, dtype)
        g = flat[run]
        bad += int(np.count_nonzero(g.view(np.uint32) != want.view(np.uint32)))
    return bad


def main():
    d = sys.argv[1]
    cap = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        idx = json.load(open(index))
        files = sorted(set(idx["weight_map"].values()))
    else:
        idx, files = None, ["model.safetensors"]
    seen, total_bytes, bad = {}, 0, 0
    for f in files:
        meta, tensors = load(os.path.join(d, f))
        assert meta["format"] == "pt", meta
        spec = json.loads(meta["deepinit.spec"])
        seed = int(meta["deepinit.seed"])
        by_name = {t["name"]: t for t in spec["tensor"]}
        for name, (arr, dtype) in tensors.items():
            t = by_name[name]
            if idx:
                assert idx["weight_map"][name] == f, (name, f)
            total_bytes += arr.size * (4 if dtype == "F32" else 2)
            n = check(name, t, arr, dtype, seed, meta, cap)
            if n:
                print(f"{f}: {name}: {n} elements disagree")
            bad += n
            seen[name] = arr.shape
    if idx:
        assert set(seen) == set(idx["weight_map"]), "index and files disagree"
        assert idx["metadata"]["total_size"] == total_bytes, (idx["metadata"], total_bytes)
    assert set(seen) == set(by_name), "checkpoint and spec disagree"
    print(f"{d}: {len(seen)} tensors in {len(files)} file(s), {bad} elements disagree")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
