#!/usr/bin/env python3
"""The same deep pass as `deepinit forward --backend cpu`, in numpy (and in
PyTorch where installed): a He-initialised ReLU MLP of width W, depth D and
batch B, weights drawn from N(0, 2/W) in float32, forward, then backward from
a N(0, 1) output gradient with every layer's weight gradient.

Prints one JSON line per measurement, the median of REPEATS runs after a
warm-up: numpy with its weight init inside the timed pass (deepinit draws
its weights inside its pass too), numpy with the weights drawn beforehand,
and PyTorch with init. `deepinit bench` runs this file.

usage: mlp_numpy.py [WIDTH DEPTH BATCH [REPEATS]]
"""
import json
import sys
import time

import numpy as np


def numpy_init(width, depth, batch, seed):
    rng = np.random.default_rng(seed)
    std = np.float32(np.sqrt(2.0 / width))
    ws = [rng.standard_normal((width, width), dtype=np.float32) * std for _ in range(depth)]
    return rng, ws, rng.standard_normal((batch, width), dtype=np.float32)


def numpy_pass(rng, ws, a):
    acts, zs = [a], []
    for w in ws:
        z = a @ w.T
        a = np.maximum(z, 0)
        zs.append(z)
        acts.append(a)
    delta = rng.standard_normal(a.shape, dtype=np.float32)
    for l in range(len(ws) - 1, -1, -1):
        delta = delta * (zs[l] > 0)
        grad_w = delta.T @ acts[l]
        if l > 0:
            delta = delta @ ws[l]
    return float(grad_w[0, 0])


def torch_pass(torch, width, depth, batch, seed):
    g = torch.Generator().manual_seed(seed)
    std = (2.0 / width) ** 0.5
    ws = [torch.empty(width, width).normal_(0.0, std, generator=g).requires_grad_() for _ in range(depth)]
    a = torch.randn(batch, width, generator=g)
    for w in ws:
        a = torch.relu(a @ w.T)
    a.backward(torch.randn(batch, width, generator=g))
    return float(ws[0].grad[0, 0])


def median_seconds(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main():
    args = [int(x) for x in sys.argv[1:]]
    width, depth, batch = args[:3] if len(args) >= 3 else (1024, 50, 256)
    repeats = args[3] if len(args) > 3 else 5

    def emit(name, seconds):
        print(json.dumps({"what": name, "seconds": seconds}), flush=True)

    version = f"numpy {np.__version__}"
    emit(f"{version} MLP incl. weight init",
         median_seconds(lambda: numpy_pass(*numpy_init(width, depth, batch, 1)), repeats))
    drawn = numpy_init(width, depth, batch, 1)
    emit(f"{version} MLP, weights drawn beforehand",
         median_seconds(lambda: numpy_pass(*drawn), repeats))
    try:
        import torch
    except ImportError:
        return
    emit(f"PyTorch {torch.__version__.split('+')[0]} MLP incl. weight init",
         median_seconds(lambda: torch_pass(torch, width, depth, batch, 1), repeats))


if __name__ == "__main__":
    main()
