"""transformers' own way to GPT-2 small's initial checkpoint, the peer of
`deepinit model --preset gpt2`: `AutoModelForCausalLM.from_config` (which
runs the family's `_init_weights`) and `save_pretrained` (safetensors), then
fsync of every file written, as deepinit fsyncs its files.

    python3 benches/hf_transformers.py CONFIG_JSON OUT_DIR [ROUNDS]

Prints one JSON line per round: {"what", "seconds", "bytes"}. `deepinit
bench` runs it where python3 has transformers and torch; not part of the
test suite.
"""
import json
import os
import shutil
import sys
import time


def main():
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    model_type = cfg.pop("model_type")
    cfg.pop("architectures", None)
    what = (f"transformers {transformers.__version__} from_config + save_pretrained "
            f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    for _ in range(rounds):
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        config = AutoConfig.for_model(model_type, **cfg)
        model = AutoModelForCausalLM.from_config(config)
        model.save_pretrained(out)
        size = 0
        for name in os.listdir(out):
            p = os.path.join(out, name)
            fd = os.open(p, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            size += os.path.getsize(p)
        seconds = time.perf_counter() - t
        del model
        print(json.dumps({"what": what, "seconds": seconds, "bytes": size}), flush=True)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
