//! The one source of every Rust <-> WGSL contract: the constants both sides
//! use (emitted into a WGSL prelude that every module starts with) and the
//! uniform parameter structs (checked against the WGSL structs' sizes and
//! member offsets by a naga reflection test, on any machine).

use crate::act::Activation;

/// Invocations of an element-wise workgroup: the network's and the
/// transformer's element-wise kernels and the dead-unit count
/// (`@workgroup_size(EW_WG)`), and every dispatch of them.
pub(crate) const EW_WORKGROUP: u32 = 256;
/// Invocations of a reduction workgroup.
pub(crate) const RED_WORKGROUP: u32 = 256;
/// Elements each reduction invocation folds sequentially.
pub(crate) const RED_ITEMS: u32 = 16;
/// Elements one reduction record covers.
pub const RECORD_ELEMS: u64 = (RED_WORKGROUP * RED_ITEMS) as u64;
/// Words per reduction record: `[scale, sum, sum of squares, finite count,
/// zeros, saturated, non-finite, 0]`.
pub const RECORD_WORDS: u64 = 8;

/// The activations' ids, as the `ACT` pipeline constant selects them.
pub const ACTIVATION_IDS: [(&str, u32); 8] = [
    ("ACT_LINEAR", 0),
    ("ACT_RELU", 1),
    ("ACT_LEAKY_RELU", 2),
    ("ACT_TANH", 3),
    ("ACT_SIGMOID", 4),
    ("ACT_SELU", 5),
    ("ACT_GELU", 6),
    ("ACT_GELU_ERF", 7),
];

/// The `ACT` id of an activation.
pub(crate) fn activation_id(act: Activation) -> u32 {
    let name = match act {
        Activation::Linear => "ACT_LINEAR",
        Activation::Relu => "ACT_RELU",
        Activation::LeakyRelu(_) => "ACT_LEAKY_RELU",
        Activation::Tanh => "ACT_TANH",
        Activation::Sigmoid => "ACT_SIGMOID",
        Activation::Selu => "ACT_SELU",
        Activation::Gelu => "ACT_GELU",
        Activation::GeluErf => "ACT_GELU_ERF",
    };
    ACTIVATION_IDS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, id)| *id)
}

/// The WGSL prelude: every constant above, and Philox's multipliers, Weyl
/// increments and round count ([`crate::rng::philox`]), as module-scope
/// `const`s.
pub(crate) fn prelude() -> String {
    use crate::rng::philox;
    let mut s = String::from(
        "// Generated from src/gpu/layout.rs: constants shared with the Rust driver.\n",
    );
    for (name, v) in [
        ("EW_WG", EW_WORKGROUP),
        ("RED_WG", RED_WORKGROUP),
        ("ITEMS", RED_ITEMS),
        ("RECORD_WORDS", RECORD_WORDS as u32),
        ("PHILOX_M0", philox::M0),
        ("PHILOX_M1", philox::M1),
        ("PHILOX_W0", philox::W0),
        ("PHILOX_W1", philox::W1),
        ("PHILOX_ROUNDS", philox::ROUNDS),
    ]
    .into_iter()
    .chain(ACTIVATION_IDS)
    {
        s.push_str(&format!("const {name}: u32 = {v}u;\n"));
    }
    s
}

/// Parameters of one matrix multiply (elements, not bytes): `GemmParams` in
/// `shaders/gemm/common.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmParams {
    /// Rows of A and C.
    pub m: u32,
    /// Columns of C.
    pub n: u32,
    /// Inner dimension.
    pub k: u32,
    /// Row stride of A.
    pub lda: u32,
    /// Row stride of B.
    pub ldb: u32,
    /// Row stride of C.
    pub ldc: u32,
    /// First element of A.
    pub a_off: u32,
    /// First element of B.
    pub b_off: u32,
    /// First element of C.
    pub c_off: u32,
    /// Add to C instead of overwriting it.
    pub accumulate: u32,
    /// Padding.
    pub _pad: [u32; 2],
}

/// `EwParams` in `shaders/net/network.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct EwParams {
    /// Elements.
    pub n: u32,
    /// Row width (the bias's length).
    pub width: u32,
    /// Add the bias first.
    pub has_bias: u32,
    /// Always 0: the activations' constants are XORed with it, so no shader
    /// compiler can fold them (`k()` in `shaders/net/activation.wgsl`).
    pub zero: u32,
    /// Output element of `bias_act` that gets one ULP added (an injected
    /// defect, for tests); `u32::MAX`: none.
    pub flip: u32,
    /// Padding to 32 bytes.
    pub _pad: [u32; 3],
}

/// `TfParams` in `shaders/net/transformer.wgsl`: one block for every transformer
/// kernel, each reading the fields its comment there names.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct TfParams {
    /// Rows this launch covers.
    pub rows: u32,
    /// Its first row.
    pub row0: u32,
    /// Row width; an attention tile's heads.
    pub width: u32,
    /// Always 0 (see [`EwParams::zero`]).
    pub zero: u32,
    /// Sequence length.
    pub seq: u32,
    /// Attention heads; the norms' and the embedding's flags.
    pub heads: u32,
    /// Key/value heads.
    pub kv_heads: u32,
    /// Head width.
    pub head_dim: u32,
    /// Row stride of the q/k/v buffer.
    pub ld: u32,
    /// Column of the first query head; an attention tile's first head.
    pub q_col: u32,
    /// Column of the first key head.
    pub k_col: u32,
    /// Column of the first value head.
    pub v_col: u32,
    /// Embedding: first vocabulary row of the chunk; attention: the window.
    pub lo: u32,
    /// Embedding: end of the chunk; attention: first word of its row sums.
    pub hi: u32,
    /// Norms: 1 / width; attention: the score scale.
    pub inv_n: f32,
    /// Norm epsilon.
    pub eps: f32,
}

/// `RedParams` in `shaders/net/reduce.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RedParams {
    /// Elements.
    pub n: u32,
    /// First record of this tensor.
    pub rec: u32,
    /// Count saturated values.
    pub sat_enabled: u32,
    /// Padding.
    pub _pad0: u32,
    /// Saturated below this.
    pub sat_lo: f32,
    /// Saturated above this.
    pub sat_hi: f32,
    /// Padding.
    pub _pad1: [u32; 2],
}

/// `DeadParams` in `shaders/net/dead.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct DeadParams {
    /// Batch rows.
    pub rows: u32,
    /// Units.
    pub cols: u32,
    /// Counter slot (the layer).
    pub slot: u32,
    /// Padding.
    pub _pad: u32,
}

/// `PackParams` in `shaders/io/pack.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PackParams {
    /// f32 values to pack.
    pub count: u32,
    /// Padding (uniform blocks are 16-byte multiples).
    pub _pad: [u32; 3],
}

/// `Params` in `shaders/rng/init.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct GenParams {
    /// Philox key: the seed as (lo, hi).
    pub key: [u32; 2],
    /// First Philox block of the chunk, (lo, hi).
    pub block_start: [u32; 2],
    /// Tensor id (counter word 2).
    pub tensor_id: u32,
    /// The chunk's first element is 4 * block_start + lane_offset.
    pub lane_offset: u32,
    /// Elements in the chunk.
    pub count: u32,
    /// Multiplies the unit-scale value.
    pub scale: f32,
}

#[cfg(test)]
mod tests {

    #[test]
    fn prelude_constants_are_declared_nowhere_else() {
        let prelude = prelude();
        let names: Vec<&str> = prelude
            .lines()
            .filter_map(|l| l.strip_prefix("const "))
            .filter_map(|l| l.split(':').next())
            .collect();
        assert!(
            names.contains(&"PHILOX_M0") && names.contains(&"EW_WG"),
            "{names:?}"
        );
        assert!(prelude.contains(&format!(
            "const PHILOX_W1: u32 = {}u;",
            crate::rng::philox::W1
        )));
        for (file, source) in crate::gpu::shaders::FILES {
            for name in &names {
                assert!(
                    !source.contains(&format!("const {name}:")),
                    "{file} declares {name}, which the generated prelude defines"
                );
            }
        }
        // The element-wise kernels take their workgroup size from the prelude.
        for (file, source) in crate::gpu::shaders::FILES {
            if [
                "net/network.wgsl",
                "net/transformer.wgsl",
                "net/transformer_bwd.wgsl",
                "net/dead.wgsl",
            ]
            .contains(file)
            {
                assert!(!source.contains("@workgroup_size(256)"), "{file}");
            }
        }
    }
    use super::*;
    use crate::gpu::shaders;

    /// (WGSL struct, its module, the Rust size, the Rust member offsets in order).
    fn contracts() -> Vec<(&'static str, shaders::Module, usize, Vec<usize>)> {
        use std::mem::{offset_of, size_of};
        vec![
            (
                "GemmParams",
                crate::gpu::gemm::GemmVariant::Tiled64.module(),
                size_of::<GemmParams>(),
                vec![
                    offset_of!(GemmParams, m),
                    offset_of!(GemmParams, n),
                    offset_of!(GemmParams, k),
                    offset_of!(GemmParams, lda),
                    offset_of!(GemmParams, ldb),
                    offset_of!(GemmParams, ldc),
                    offset_of!(GemmParams, a_off),
                    offset_of!(GemmParams, b_off),
                    offset_of!(GemmParams, c_off),
                    offset_of!(GemmParams, accumulate),
                    offset_of!(GemmParams, _pad),
                    offset_of!(GemmParams, _pad) + 4,
                ],
            ),
            (
                "EwParams",
                shaders::network_module(),
                size_of::<EwParams>(),
                vec![
                    offset_of!(EwParams, n),
                    offset_of!(EwParams, width),
                    offset_of!(EwParams, has_bias),
                    offset_of!(EwParams, zero),
                    offset_of!(EwParams, flip),
                    offset_of!(EwParams, _pad),
                    offset_of!(EwParams, _pad) + 4,
                    offset_of!(EwParams, _pad) + 8,
                ],
            ),
            (
                "TfParams",
                shaders::transformer_module(),
                size_of::<TfParams>(),
                vec![
                    offset_of!(TfParams, rows),
                    offset_of!(TfParams, row0),
                    offset_of!(TfParams, width),
                    offset_of!(TfParams, zero),
                    offset_of!(TfParams, seq),
                    offset_of!(TfParams, heads),
                    offset_of!(TfParams, kv_heads),
                    offset_of!(TfParams, head_dim),
                    offset_of!(TfParams, ld),
                    offset_of!(TfParams, q_col),
                    offset_of!(TfParams, k_col),
                    offset_of!(TfParams, v_col),
                    offset_of!(TfParams, lo),
                    offset_of!(TfParams, hi),
                    offset_of!(TfParams, inv_n),
                    offset_of!(TfParams, eps),
                ],
            ),
            (
                "RedParams",
                shaders::reduce_module(),
                size_of::<RedParams>(),
                vec![
                    offset_of!(RedParams, n),
                    offset_of!(RedParams, rec),
                    offset_of!(RedParams, sat_enabled),
                    offset_of!(RedParams, _pad0),
                    offset_of!(RedParams, sat_lo),
                    offset_of!(RedParams, sat_hi),
                    offset_of!(RedParams, _pad1),
                    offset_of!(RedParams, _pad1) + 4,
                ],
            ),
            (
                "DeadParams",
                shaders::dead_module(),
                size_of::<DeadParams>(),
                vec![
                    offset_of!(DeadParams, rows),
                    offset_of!(DeadParams, cols),
                    offset_of!(DeadParams, slot),
                    offset_of!(DeadParams, _pad),
                ],
            ),
            (
                "PackParams",
                shaders::pack_module(),
                size_of::<PackParams>(),
                vec![
                    offset_of!(PackParams, count),
                    offset_of!(PackParams, _pad),
                    offset_of!(PackParams, _pad) + 4,
                    offset_of!(PackParams, _pad) + 8,
                ],
            ),
            (
                "Params",
                shaders::init_module(shaders::MulHi::Emulated, shaders::Store::Scalar),
                size_of::<GenParams>(),
                vec![
                    offset_of!(GenParams, key),
                    offset_of!(GenParams, block_start),
                    offset_of!(GenParams, tensor_id),
                    offset_of!(GenParams, lane_offset),
                    offset_of!(GenParams, count),
                    offset_of!(GenParams, scale),
                ],
            ),
        ]
    }

    #[test]
    fn wgsl_structs_have_the_rust_layouts() {
        for (name, m, size, offsets) in contracts() {
            let module = naga::front::wgsl::parse_str(&m.source).expect("parses");
            let (members, span) = module
                .types
                .iter()
                .find_map(|(_, t)| match (&t.name, &t.inner) {
                    (Some(n), naga::TypeInner::Struct { members, span }) if n == name => {
                        Some((members.clone(), *span))
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{name} not found in module {}", m.name));
            assert_eq!(span as usize, size, "{name}: WGSL size vs Rust size");
            let wgsl: Vec<usize> = members.iter().map(|x| x.offset as usize).collect();
            assert_eq!(wgsl, offsets, "{name}: member offsets");
        }
    }

    #[test]
    fn the_prelude_defines_every_shared_constant_once() {
        let p = prelude();
        for name in ["RED_WG", "ITEMS", "RECORD_WORDS"]
            .into_iter()
            .chain(ACTIVATION_IDS.iter().map(|(n, _)| *n))
        {
            assert_eq!(
                p.matches(&format!("const {name}: u32")).count(),
                1,
                "{name}"
            );
            // ...and no shader file defines it again.
            for (file, src) in shaders::FILES {
                assert!(
                    !src.contains(&format!("const {name}:")),
                    "{file} redefines {name}"
                );
            }
        }
        // Every activation has a distinct id.
        let mut ids: Vec<u32> = ACTIVATION_IDS.iter().map(|(_, i)| *i).collect();
        ids.dedup();
        assert_eq!(ids.len(), ACTIVATION_IDS.len());
        assert_eq!(activation_id(Activation::Gelu), 6);
        // The GEMM tile constants come from each variant's own header, once.
        for v in crate::gpu::gemm::GemmVariant::ALL {
            let m = v.module();
            for name in ["WG_X", "WG_Y", "TM", "TN", "BM", "BN", "BK"] {
                assert_eq!(
                    m.source.matches(&format!("const {name}: u32")).count(),
                    1,
                    "{} {name}",
                    v.name()
                );
            }
        }
    }
}
