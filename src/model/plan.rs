//! Where every byte of a checkpoint goes: which shard file holds each
//! tensor, in which order, at which offsets, and (under tensor parallelism)
//! which block of the tensor it holds. A plan depends only on the spec, the
//! dtype, the shard count and the tensor-parallel rank, never on the machine,
//! so N machines that each write one shard agree with one machine that
//! writes all N.

use super::spec::{ModelSpec, Split, TpSplit};
use crate::error::{Error, Result};
pub use crate::init::block::{requests, Block};
use crate::io::dtype::DType;
use crate::io::safetensors::Entry;
use std::ops::Range;

/// The most tensor-parallel parts (far beyond any real job; keeps every
/// product of part counts and sizes inside 64 bits).
pub(crate) const MAX_TP: u64 = 1 << 20;

/// Tensor-parallel slicing: this checkpoint holds part `rank` of `size` of
/// every tensor with a `split`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TensorParallel {
    /// Parts.
    pub size: u64,
    /// This part (0-based).
    pub rank: u64,
}

impl Default for TensorParallel {
    fn default() -> Self {
        TensorParallel { size: 1, rank: 0 }
    }
}

/// One tensor in one shard.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// Index into the spec's tensors.
    pub tensor: usize,
    /// The part of the tensor stored.
    pub part: Part,
    /// Its entry in the file's header.
    pub entry: Entry,
}

/// One file.
#[derive(Debug, Clone)]
pub(crate) struct ShardPlan {
    /// File name.
    pub file: String,
    /// Tensors in data order (by name).
    pub items: Vec<Item>,
}

impl ShardPlan {
    /// Data bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.items.last().map_or(0, |i| i.entry.end)
    }
}

/// The whole checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Element type.
    pub dtype: DType,
    /// Tensor-parallel part.
    pub tp: TensorParallel,
    /// Shards, in order (index i is file i + 1 of N).
    pub shards: Vec<ShardPlan>,
}

/// The index file next to sharded checkpoints.
pub(crate) const INDEX: &str = "model.safetensors.index.json";

/// The file name of shard `i` (0-based) of `n`.
pub(crate) fn shard_name(i: usize, n: usize) -> String {
    if n == 1 {
        "model.safetensors".into()
    } else {
        format!("model-{:05}-of-{n:05}.safetensors", i + 1)
    }
}

/// The part of a tensor one checkpoint stores: its shape and the element
/// ranges of the whole tensor (row-major) it is made of, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The stored shape.
    pub shape: Vec<u64>,
    /// Element ranges of the whole tensor, in storage order.
    pub ranges: Vec<Range<u64>>,
}

impl Part {
    /// The whole tensor.
    pub(crate) fn whole(dims: &[u64]) -> Part {
        Part {
            shape: dims.to_vec(),
            ranges: std::iter::once(0..dims.iter().product()).collect(),
        }
    }

    /// Elements held.
    pub(crate) fn len(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }
}

/// Rank `tp.rank`'s part of a tensor of shape `dims` under `split` (Megatron
/// cuts: the axis's blocks `parts` each cut into `tp.size` equal pieces of
/// whole `unit`s; rank r holds piece r of every block, in block order).
pub(crate) fn tp_part(
    dims: &[u64],
    split: Option<&TpSplit>,
    tp: TensorParallel,
    name: &str,
) -> Result<Part> {
    let Some(split) = split.filter(|_| tp.size > 1) else {
        return Ok(Part::whole(dims));
    };
    let axis = match split.axis {
        Split::Rows => 0,
        Split::Cols if dims.len() == 2 => 1,
        Split::Cols => {
            return Err(Error::bad(
                "split",
                name,
                "cols applies to 2-D tensors only",
            ))
        }
    };
    let len = dims[axis];
    let blocks = if split.parts.is_empty() {
        vec![len]
    } else {
        split.parts.clone()
    };
    let mut pieces: Vec<Range<u64>> = Vec::with_capacity(blocks.len());
    let mut at = 0;
    for &b in &blocks {
        if !b.is_multiple_of(tp.size) || !(b / tp.size).is_multiple_of(split.unit) {
            let what = if split.unit > 1 {
                format!("{} units of {} (heads)", b / split.unit.max(1), split.unit)
            } else {
                format!("{b}")
            };
            let axis_name = if axis == 0 { "rows" } else { "columns" };
            let mut problem = format!(
                "its {axis_name} ({what}{}) do not divide into {} equal parts",
                if blocks.len() > 1 {
                    format!(", one of {} fused blocks", blocks.len())
                } else {
                    String::new()
                },
                tp.size
            );
            let vocab_table = [
                "wte.weight",
                "embed_tokens.weight",
                "word_embeddings.weight",
                "lm_head.weight",
                "predictions.bias",
            ]
            .iter()
            .any(|v| name.ends_with(v));
            if axis == 0 && vocab_table {
                let m = tp.size.saturating_mul(128);
                problem += &format!(
                    "; Megatron-LM pads the vocabulary to a multiple of 128 x {} \
                     (make-vocab-size-divisible-by): vocab_size {} would divide",
                    tp.size,
                    b.div_ceil(m) * m
                );
            }
            return Err(Error::bad("tensor parallelism", name, problem));
        }
        let piece = b / tp.size;
        pieces.push(at + tp.rank * piece..at + (tp.rank + 1) * piece);
        at += b;
    }
    let mut shape = dims.to_vec();
    shape[axis] = len / tp.size;
    let width: u64 = dims.iter().skip(1).product();
    let mut ranges = Vec::new();
    if axis == 0 {
        for p in &pieces {
            ranges.push(p.start * width..p.end * width);
        }
    } else {
        for r in 0..dims[0] {
            for p in &pieces {
                ranges.push(r * width + p.start..r * width + p.end);
            }
        }
    }
    // Adjacent ranges merge (whole rows of a row cut are one range).
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => merged.push(r),
        }
    }
    Ok(Part {
        shape,
        ranges: merged,
    })
}

/// Refuses tensors whose values the dtype cannot hold (they would round to
/// infinity): constants beyond its largest finite value, drawn tensors whose
/// distribution reaches beyond it.
fn check_range(spec: &ModelSpec, dtype: DType) -> Result<()> {
    let max = match dtype {
        DType::F32 => return Ok(()),
        DType::Bf16 => 3.389_531_389_251_535e38,
        DType::F16 => 65504.0,
    };
    for t in &spec.tensors {
        let reach = match &t.rule {
            super::spec::Rule::Const(v) => f64::from(v.abs()),
            super::spec::Rule::Draw { init, .. } => {
                t.target()?.map_or(0.0, |x| x.std) * init.dist().max_abs_in_std()
            }
        };
        if reach > max {
            return Err(Error::bad(
                "dtype",
                dtype.name(),
                format!(
                    "tensor '{}' reaches {reach:.4e}, beyond the largest finite {} ({max:e})",
                    t.name,
                    dtype.name()
                ),
            ));
        }
    }
    Ok(())
}

impl Plan {
    /// Lays `spec` out into `shards` files of `dtype`, holding part `tp` of
    /// every split tensor. Tensors are assigned largest first (ties by name)
    /// to the shard with the fewest bytes so far (ties: the lowest index);
    /// inside a shard they are stored by name, as the `safetensors` crate does.
    pub(crate) fn new(
        spec: &ModelSpec,
        dtype: DType,
        shards: usize,
        tp: TensorParallel,
    ) -> Result<Plan> {
        if shards == 0 || shards > spec.tensors.len() {
            return Err(Error::bad(
                "shards",
                shards,
                format!(
                    "must be from 1 to the number of tensors ({})",
                    spec.tensors.len()
                ),
            ));
        }
        if tp.size == 0 || tp.size > MAX_TP {
            return Err(Error::bad(
                "tp-size",
                tp.size,
                format!("must be from 1 to {MAX_TP}"),
            ));
        }
        if tp.rank >= tp.size {
            return Err(Error::bad(
                "tp-rank",
                tp.rank,
                format!("must be below --tp-size ({}); ranks count from 0", tp.size),
            ));
        }
        check_range(spec, dtype)?;
        if tp.size > 1 && spec.tensors.iter().all(|t| t.split.is_none()) {
            return Err(Error::invalid(
                "tensor parallelism",
                format!(
                    "--tp-size {} would split nothing: no tensor of this model has a split",
                    tp.size
                ),
            ));
        }
        let mut blocks = Vec::with_capacity(spec.tensors.len());
        for t in &spec.tensors {
            blocks.push(tp_part(&t.shape.0, t.split.as_ref(), tp, &t.name)?);
        }
        let mut order: Vec<usize> = (0..spec.tensors.len()).collect();
        order.sort_by(|&a, &b| {
            blocks[b]
                .len()
                .cmp(&blocks[a].len())
                .then(spec.tensors[a].name.cmp(&spec.tensors[b].name))
        });
        let mut load = vec![0u64; shards];
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); shards];
        for t in order {
            let s = (0..shards).min_by_key(|&s| (load[s], s)).unwrap_or(0);
            load[s] += blocks[t].len() * dtype.size();
            members[s].push(t);
        }
        let shards = members
            .into_iter()
            .enumerate()
            .map(|(i, mut m)| {
                m.sort_by(|&a, &b| spec.tensors[a].name.cmp(&spec.tensors[b].name));
                let mut offset = 0;
                let items = m
                    .into_iter()
                    .map(|t| {
                        let part = blocks[t].clone();
                        let bytes = part.len() * dtype.size();
                        let entry = Entry {
                            name: spec.tensors[t].name.clone(),
                            dtype: dtype.safetensors(),
                            shape: part.shape.clone(),
                            begin: offset,
                            end: offset + bytes,
                        };
                        offset += bytes;
                        Item {
                            tensor: t,
                            part,
                            entry,
                        }
                    })
                    .collect();
                ShardPlan {
                    file: shard_name(i, shards),
                    items,
                }
            })
            .collect();
        Ok(Plan { dtype, tp, shards })
    }

    /// Data bytes of all shards.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.shards.iter().map(ShardPlan::bytes).sum()
    }

    /// The Hugging Face index (`model.safetensors.index.json`), or `None`
    /// for a single file.
    pub(crate) fn index_json(&self) -> Option<Vec<u8>> {
        if self.shards.len() == 1 {
            return None;
        }
        let map: std::collections::BTreeMap<&str, &str> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.items
                    .iter()
                    .map(|i| (i.entry.name.as_str(), s.file.as_str()))
            })
            .collect();
        let v = serde_json::json!({
            "metadata": { "total_size": self.total_bytes() },
            "weight_map": map,
        });
        let mut text = serde_json::to_vec_pretty(&v).ok()?;
        text.push(b'\n');
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::preset::preset;

    #[test]
    fn shards_hold_every_tensor_once_balanced_and_contiguous() {
        let spec = preset("gpt2", 0).unwrap();
        let plan = Plan::new(&spec, DType::Bf16, 4, TensorParallel::default()).unwrap();
        let mut names: Vec<&str> = plan
            .shards
            .iter()
            .flat_map(|s| s.items.iter().map(|i| i.entry.name.as_str()))
            .collect();
        names.sort_unstable();
        let mut want: Vec<&str> = spec.tensors.iter().map(|t| t.name.as_str()).collect();
        want.sort_unstable();
        assert_eq!(names, want);
        assert_eq!(plan.total_bytes(), 2 * spec.elements());
        for s in &plan.shards {
            let mut at = 0;
            for i in &s.items {
                assert_eq!(i.entry.begin, at);
                at = i.entry.end;
            }
        }
        // Greedy largest-first: no shard exceeds the mean by more than the
        // largest tensor (the 77 MB embedding).
        let mean = plan.total_bytes() / 4;
        let largest = 2 * 50257 * 768;
        assert!(plan.shards.iter().all(|s| s.bytes() <= mean + largest));
        assert_eq!(plan.shards[2].file, "model-00003-of-00004.safetensors");
        assert!(Plan::new(&spec, DType::F32, 149, TensorParallel::default()).is_err());
    }

    #[cfg(feature = "toml")]
    #[test]
    fn values_beyond_the_dtype_are_refused() {
        let spec = crate::model::spec::parse(
            "[[tensor]]\nname = \"w\"\nshape = [4, 4]\ninit = \"naive:20000\"\n\
             [[tensor]]\nname = \"c\"\nshape = [2]\ninit = \"constant\"\nvalue = 70000.0\n",
            false,
        )
        .unwrap();
        // naive:20000 normals reach 5.77 x 20000 = 115,000 > 65504.
        let e = Plan::new(&spec, DType::F16, 1, TensorParallel::default()).unwrap_err();
        assert!(e.to_string().contains("'w' reaches"), "{e}");
        assert!(Plan::new(&spec, DType::Bf16, 1, TensorParallel::default()).is_ok());
    }

    #[test]
    fn blocks_cover_their_elements_in_row_major_order() {
        let b = Block::parse(&[5, 7], Some("1:3"), Some("2:6")).unwrap();
        assert_eq!(b.ranges(), vec![9..13, 16..20]);
        assert_eq!(b.shape(&[5, 7]), vec![2, 4]);
        let b = Block::parse(&[5, 3, 2], Some("4:"), None).unwrap();
        assert_eq!(b.ranges(), vec![24..30]);
        assert_eq!(b.shape(&[5, 3, 2]), vec![1, 3, 2]);
        assert!(Block::parse(&[5, 7], Some("3:3"), None).is_err());
        assert!(Block::parse(&[5, 7], None, Some("0:8")).is_err());
        assert!(Block::parse(&[5], None, Some("0:1")).is_err());
        assert!(Block::parse(&[5, 7], Some("x"), None).is_err());
    }

    #[test]
    fn tensor_parallel_parts_tile_each_split_tensor() {
        let spec = preset("llama-7b", 0).unwrap();
        let parts: Vec<Plan> = (0..4)
            .map(|r| Plan::new(&spec, DType::Bf16, 1, TensorParallel { size: 4, rank: r }).unwrap())
            .collect();
        let whole = Plan::new(&spec, DType::Bf16, 1, TensorParallel::default()).unwrap();
        assert_eq!(
            parts.iter().map(Plan::total_bytes).sum::<u64>(),
            whole.total_bytes() + 3 * 2 * (4096 + 32 * 2 * 4096),
            "split tensors are cut in four; norms are replicated"
        );
        let o = |p: &Plan| {
            p.shards[0]
                .items
                .iter()
                .find(|i| i.entry.name == "model.layers.0.self_attn.o_proj.weight")
                .map(|i| (i.part.ranges[0].clone(), i.entry.shape.clone()))
        };
        assert_eq!(o(&parts[3]), Some((3072..4096, vec![4096, 1024])));
        assert!(Plan::new(&spec, DType::Bf16, 1, TensorParallel { size: 3, rank: 0 }).is_err());
    }
}
