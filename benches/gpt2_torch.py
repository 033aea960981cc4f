"""PyTorch's way to the same checkpoint `deepinit model --preset gpt2` writes:
GPT-2 small's tensors (Hugging Face names and shapes) built with torch.nn.init
under the same rules (embeddings N(0, 0.02), Conv1D weights LeCun on their
[in, out] fan_in, ones for layer-norm weights, zeros for biases), saved with
safetensors.torch.save_file and fsynced, as deepinit fsyncs its files.

    python3 benches/gpt2_torch.py OUT_DIR [ROUNDS]

Prints the median wall-clock seconds of ROUNDS runs (default 5) and the
checkpoint's size. Used for the README's checkpoint table; not part of the
test suite.
"""
import math
import os
import statistics
import sys
import time

import torch
from safetensors.torch import save_file


def build():
    v, c, e, layers = 50257, 1024, 768, 12
    sd = {}

    def normal(name, shape, std):
        sd[name] = torch.nn.init.normal_(torch.empty(shape), std=std)

    def lecun(name, fan_in, fan_out):  # Conv1D: stored [in, out]
        normal(name, (fan_in, fan_out), math.sqrt(1.0 / fan_in))

    normal("wte.weight", (v, e), 0.02)
    normal("wpe.weight", (c, e), 0.02)
    for i in range(layers):
        p = f"h.{i}."
        for ln in ("ln_1", "ln_2"):
            sd[p + ln + ".weight"] = torch.nn.init.ones_(torch.empty(e))
            sd[p + ln + ".bias"] = torch.nn.init.zeros_(torch.empty(e))
        for name, fi, fo in (("attn.c_attn", e, 3 * e), ("attn.c_proj", e, e),
                             ("mlp.c_fc", e, 4 * e), ("mlp.c_proj", 4 * e, e)):
            lecun(p + name + ".weight", fi, fo)
            sd[p + name + ".bias"] = torch.nn.init.zeros_(torch.empty(fo))
    sd["ln_f.weight"] = torch.nn.init.ones_(torch.empty(e))
    sd["ln_f.bias"] = torch.nn.init.zeros_(torch.empty(e))
    return sd


def main():
    out = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "model.safetensors")
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        sd = build()
        save_file(sd, path, metadata={"format": "pt"})
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        times.append(time.perf_counter() - t)
        del sd
    size = os.path.getsize(path)
    os.remove(path)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads): "
          f"median {statistics.median(times):.3f} s of {rounds}, {size / 1e6:.1f} MB, "
          f"{size / 1e6 / statistics.median(times):.0f} MB/s")


if __name__ == "__main__":
    main()
