"""Generates the Hugging Face golden data in tests/data/hf/<case>.json.

CI has no torch, so this script is run once by hand and its output is checked
in. Re-run it (it needs torch, transformers and safetensors; no network) with

    python3 tests/hf_golden.py

The checked-in files were made with transformers 5.24.0, torch 2.15.0
(CPU build) and safetensors 0.8.0; each file records the versions that made it
in "generated_by".

Each file holds, for one case:

  generated_by             script and library versions
  case                     the case name
  config                   the input config dict, exactly as given
  model_class              the transformers class instantiated
  parameters               sum of numel over model.parameters() (tied
                           parameters counted once)
  tensors                  [name, shape, dtype] for exactly the keys that
                           save_pretrained writes to safetensors, sorted
  tied                     {target: source} of the ties active for this config
                           (model.all_tied_weights_keys, which post_init fills
                           from get_expanded_tied_weights_keys(); empty when
                           the config does not tie)
  config_class_keys        sorted keys of ConfigClass().to_dict()
  config_dtype             str(config.dtype) of the config object before saving
                           (what the input config asked for; null if unset)
  config_saved             parsed config.json that save_pretrained writes
  generation_config_saved  parsed generation_config.json it writes, or null
  init                     (tiny cases only) per saved tensor: numel, mean,
                           population std (float64), zero_rows (indices of
                           all-zero rows of 2-D tensors) and all_equal (the
                           value if every element is identical, else null)

It also writes tests/data/hf/gpt2-saved/ (config.json,
generation_config.json, model.safetensors): the gpt2-tiny GPT2LMHeadModel as
transformers itself saves it in bfloat16 (seed 0, initialized in float32 and
then cast), a checkpoint with no deepinit metadata for tests/hf.rs to judge.

Config objects are built exactly as AutoConfig.from_pretrained does after it
has read a config.json: CONFIG_MAPPING[cfg["model_type"]].from_dict(cfg). So
keys such as torch_dtype in the preset files pass through the config's own
backward-compatibility handling (torch_dtype becomes config.dtype).

Tiny cases are constructed for real, in float32, after torch.manual_seed(0),
so transformers runs its own _init_weights; "tensors" and "config_saved" come
from a real model.save_pretrained(tmpdir) (safetensors), read back with the
safetensors package.

Big presets (every src/model/configs/*.json; the case name is the file stem)
are constructed with `with torch.device("meta"): model = cls(config)` where cls
is the first class in the config's "architectures" (so in float32, like a
plain cls(config); note that save_pretrained then records dtype "float32" in
config.json, because it always writes the model's actual dtype). Their saved
keys are derived as state_dict keys minus _keys_to_ignore_on_save minus the
tied targets, and their config.json / generation_config.json are written the
way save_pretrained writes them (config.dtype and config.architectures set
from the model, then config.save_pretrained and, if the model can generate,
generation_config.save_pretrained). The script asserts, on tiny cases of
every family, that this derivation gives the same keys and the same
config.json / generation_config.json as the real save_pretrained.
"""
import copy
import glob
import json
import os
import sys
import tempfile

import torch
import transformers
from safetensors import safe_open
from transformers import CONFIG_MAPPING

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT_DIR = os.path.join(HERE, "data", "hf")
PRESET_DIR = os.path.join(ROOT, "src", "model", "configs")

GENERATED_BY = "tests/hf_golden.py, transformers %s, torch %s" % (
    transformers.__version__,
    torch.__version__.split("+")[0],
)

LLAMA_TINY = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "vocab_size": 1000,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}
LLAMA_TINY_TIED = {k: v for k, v in LLAMA_TINY.items() if k != "head_dim"}
LLAMA_TINY_TIED["tie_word_embeddings"] = True

# Variants the reference rules must follow: Llama's attention and MLP biases
# with a padding row; a negative pad_token_id (counted from the end, as
# PyTorch's nn.Embedding does); GPT-2 with n_inner and an untied head; BERT
# without a padding row.
LLAMA_TINY_PAD = dict(LLAMA_TINY, pad_token_id=3, attention_bias=True, mlp_bias=True)
MISTRAL_TINY_NEGPAD = {
    "model_type": "mistral", "hidden_size": 64, "intermediate_size": 160,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 1000, "max_position_embeddings": 256, "pad_token_id": -1,
}

# (case stem, config, head class, base class)
TINY = [
    ("llama-tiny-pad", LLAMA_TINY_PAD, "LlamaForCausalLM", "LlamaModel"),
    ("mistral-tiny-negpad", MISTRAL_TINY_NEGPAD, "MistralForCausalLM", "MistralModel"),
    (
        "gpt2-tiny-untied",
        {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_inner": 96,
         "vocab_size": 1000, "n_positions": 128, "tie_word_embeddings": False},
        "GPT2LMHeadModel",
        "GPT2Model",
    ),
    (
        "bert-tiny-nopad",
        {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 1000,
         "max_position_embeddings": 64, "type_vocab_size": 2, "pad_token_id": None},
        "BertForMaskedLM",
        "BertModel",
    ),
    (
        "gpt2-tiny",
        {"model_type": "gpt2", "n_embd": 64, "n_layer": 4, "n_head": 4,
         "vocab_size": 1000, "n_positions": 128},
        "GPT2LMHeadModel",
        "GPT2Model",
    ),
    ("llama-tiny", LLAMA_TINY, "LlamaForCausalLM", "LlamaModel"),
    ("llama-tiny-tied", LLAMA_TINY_TIED, "LlamaForCausalLM", "LlamaModel"),
    (
        "mistral-tiny",
        {"model_type": "mistral", "hidden_size": 64, "intermediate_size": 160,
         "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 1000,
         "max_position_embeddings": 256},
        "MistralForCausalLM",
        "MistralModel",
    ),
    (
        "qwen2-tiny",
        {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 160,
         "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 1000,
         "max_position_embeddings": 256, "tie_word_embeddings": True},
        "Qwen2ForCausalLM",
        "Qwen2Model",
    ),
    (
        "bert-tiny",
        {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "intermediate_size": 256,
         "vocab_size": 1000, "max_position_embeddings": 128,
         "type_vocab_size": 2, "pad_token_id": 0},
        "BertForMaskedLM",
        "BertModel",
    ),
]

ST_DTYPE = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.bool: "BOOL",
}


def make_config(cfg):
    """As AutoConfig.from_pretrained does once it has parsed config.json."""
    cfg = copy.deepcopy(cfg)
    return CONFIG_MAPPING[cfg["model_type"]].from_dict(cfg)


def read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def saved_keys_derived(model):
    """Keys save_pretrained would write: state_dict minus ignored minus tied."""
    keys = set(model.state_dict().keys())
    keys -= set(model._keys_to_ignore_on_save or ())
    keys -= set(model.all_tied_weights_keys.keys())
    return keys


def tensor_list_from_state_dict(model, keys):
    sd = model.state_dict()
    return [[k, list(sd[k].shape), ST_DTYPE[sd[k].dtype]] for k in sorted(keys)]


def read_safetensors_dir(d):
    """{name: (shape, dtype)} over model.safetensors or its shards."""
    files = sorted(glob.glob(os.path.join(d, "*.safetensors")))
    assert files, "no safetensors written in %s" % d
    out = {}
    for fn in files:
        with safe_open(fn, framework="pt") as f:
            for k in f.keys():
                sl = f.get_slice(k)
                assert k not in out, k
                out[k] = (list(sl.get_shape()), sl.get_dtype())
    return out


def save_config_like_save_pretrained(model, d):
    """The config part of PreTrainedModel.save_pretrained (usable on meta)."""
    model.config.dtype = str(model.dtype).split(".")[1]
    model.config.architectures = [model.__class__.__name__]
    model.config.save_pretrained(d)
    if model.can_generate():
        model.generation_config.save_pretrained(d)
    return (
        read_json(os.path.join(d, "config.json")),
        read_json(os.path.join(d, "generation_config.json")),
    )


def actual_ties(model):
    """{target: source} for state-dict entries sharing storage, checked
    against the declared mapping."""
    sd = model.state_dict()
    ties = model.all_tied_weights_keys
    for target, source in ties.items():
        assert sd[target].data_ptr() == sd[source].data_ptr(), (target, source)
    return dict(sorted(ties.items()))


def init_stats(t):
    x = t.detach().to(torch.float64)
    flat = x.reshape(-1)
    first = flat[0].item()
    all_equal = first if bool((flat == first).all()) else None
    zero_rows = []
    if x.dim() == 2:
        zero_rows = [int(i) for i in torch.nonzero((x == 0).all(dim=1)).reshape(-1)]
    return {
        "numel": flat.numel(),
        "mean": flat.mean().item(),
        "std": flat.std(unbiased=False).item(),
        "zero_rows": zero_rows,
        "all_equal": all_equal,
    }


def common_fields(case, cfg, model, config_dtype):
    config_class = CONFIG_MAPPING[cfg["model_type"]]
    return {
        "generated_by": GENERATED_BY,
        "case": case,
        "config": cfg,
        "model_class": model.__class__.__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config_class_keys": sorted(config_class().to_dict().keys()),
        "config_dtype": config_dtype,
    }


def dtype_str(dt):
    if dt is None:
        return None
    return str(dt).split(".")[-1]


def run_tiny(case, cfg, class_name):
    cls = getattr(transformers, class_name)
    config = make_config(cfg)
    config_dtype = dtype_str(config.dtype)
    torch.manual_seed(0)
    model = cls(config)
    assert model.dtype == torch.float32
    out = common_fields(case, cfg, model, config_dtype)
    out["tied"] = actual_ties(model)

    sd = model.state_dict()
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)  # safetensors is the only format in v5
        on_disk = read_safetensors_dir(d)
        config_saved = read_json(os.path.join(d, "config.json"))
        gen_saved = read_json(os.path.join(d, "generation_config.json"))

    # The derivation used for the meta-device presets must agree.
    derived = saved_keys_derived(model)
    assert derived == set(on_disk), (
        case, sorted(derived ^ set(on_disk)))
    for k, (shape, dt) in on_disk.items():
        assert shape == list(sd[k].shape), (case, k)
        assert dt == ST_DTYPE[sd[k].dtype], (case, k, dt)
    # ... and so must the config writer used for the presets.
    torch.manual_seed(0)
    with torch.device("meta"):
        meta_model = cls(make_config(cfg))
    assert saved_keys_derived(meta_model) == set(on_disk), case
    with tempfile.TemporaryDirectory() as d:
        c2, g2 = save_config_like_save_pretrained(meta_model, d)
    assert c2 == config_saved, (case, c2, config_saved)
    assert g2 == gen_saved, (case, g2, gen_saved)

    out["tensors"] = [[k, on_disk[k][0], on_disk[k][1]] for k in sorted(on_disk)]
    out["config_saved"] = config_saved
    out["generation_config_saved"] = gen_saved
    out["init"] = {k: init_stats(sd[k]) for k in sorted(on_disk)}
    return out


def run_preset(case, cfg):
    class_name = cfg["architectures"][0]
    cls = getattr(transformers, class_name)
    config = make_config(cfg)
    config_dtype = dtype_str(config.dtype)
    with torch.device("meta"):
        model = cls(config)
    out = common_fields(case, cfg, model, config_dtype)
    # On meta every tensor has data_ptr 0, so check ties by identity instead.
    for target, source in model.all_tied_weights_keys.items():
        assert model.get_parameter(target) is model.get_parameter(source), (case, target)
    out["tied"] = dict(sorted(model.all_tied_weights_keys.items()))
    out["tensors"] = tensor_list_from_state_dict(model, saved_keys_derived(model))
    with tempfile.TemporaryDirectory() as d:
        out["config_saved"], out["generation_config_saved"] = (
            save_config_like_save_pretrained(model, d))
    return out


def write(out):
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, out["case"] + ".json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote %s (%s, %d tensors, %d parameters)" % (
        os.path.relpath(path, ROOT), out["model_class"], len(out["tensors"]),
        out["parameters"]))


def write_saved_checkpoint():
    """tests/data/hf/gpt2-saved: a checkpoint written by transformers itself
    (the gpt2-tiny GPT2LMHeadModel, seed 0, initialized in float32 and cast
    to bfloat16, then save_pretrained) for tests/hf.rs to judge."""
    import shutil

    stem, cfg, head_cls, _ = next(t for t in TINY if t[0] == "gpt2-tiny")
    torch.manual_seed(0)
    model = getattr(transformers, head_cls)(make_config(cfg)).to(torch.bfloat16)
    d = os.path.join(OUT_DIR, "gpt2-saved")
    if os.path.isdir(d):
        shutil.rmtree(d)
    model.save_pretrained(d)
    for fn in os.listdir(d):  # safetensors creates its file with mode 0600
        os.chmod(os.path.join(d, fn), 0o644)
    print("wrote %s (%s)" % (os.path.relpath(d, ROOT), ", ".join(sorted(os.listdir(d)))))


def main():
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for stem, cfg, head_cls, base_cls in TINY:
        write(run_tiny(stem, cfg, head_cls))
        write(run_tiny(stem + "-base", cfg, base_cls))
    presets = sorted(glob.glob(os.path.join(PRESET_DIR, "*.json")))
    assert presets, "no presets under %s" % PRESET_DIR
    for path in presets:
        with open(path) as f:
            cfg = json.load(f)
        write(run_preset(os.path.splitext(os.path.basename(path))[0], cfg))
    write_saved_checkpoint()
    return 0


if __name__ == "__main__":
    sys.exit(main())
