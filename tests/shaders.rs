//! Every WGSL file is parsed and validated by naga, on any machine (no GPU).

use deepinit::gpu::shaders;
use std::collections::BTreeSet;

#[test]
fn every_module_parses_and_validates() {
    for m in shaders::all_modules() {
        let module = naga::front::wgsl::parse_str(&m.source)
            .unwrap_or_else(|e| panic!("{}: {}", m.name, e.emit_to_string(&m.source)));
        let caps = capabilities(&m);
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", m.name, e.emit_to_string(&m.source)));
    }
}

/// What the device must offer for `m`: the validator checks these.
fn capabilities(m: &shaders::Module) -> naga::valid::Capabilities {
    let mut caps = naga::valid::Capabilities::empty();
    if m.needs_int64 {
        caps |= naga::valid::Capabilities::SHADER_INT64;
    }
    if m.needs_subgroups {
        caps |= naga::valid::Capabilities::SUBGROUP;
    }
    caps
}

#[test]
fn modules_needing_a_capability_are_rejected_without_it() {
    // Proves the validator really checks capabilities (so the test above means
    // something): the int64 Philox path, and the subgroup GEMM.
    let int64 = shaders::init_module(shaders::MulHi::Int64, shaders::Store::Scalar);
    let subgroup = deepinit::gpu::gemm::GemmVariant::Subgroup.module();
    assert!(int64.needs_int64 && subgroup.needs_subgroups);
    for m in [int64, subgroup] {
        let module = naga::front::wgsl::parse_str(&m.source).expect("parses");
        let r = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module);
        assert!(r.is_err(), "{} validated without its capability", m.name);
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities(&m))
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e}", m.name));
    }
}

/// Paths of the `.wgsl` files under `dir`, relative to `root`, with `/`.
fn wgsl_files(root: &std::path::Path, dir: &std::path::Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).expect("shaders/ exists") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            wgsl_files(root, &p, out);
        } else if p.extension().is_some_and(|x| x == "wgsl") {
            let rel = p.strip_prefix(root).expect("under shaders/");
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.insert(parts.join("/"));
        }
    }
}

#[test]
fn every_shader_file_is_in_a_validated_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk = BTreeSet::new();
    wgsl_files(&dir, &dir, &mut on_disk);
    let listed: BTreeSet<String> = shaders::FILES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "shaders::FILES must list every file under shaders/"
    );
    let modules = shaders::all_modules();
    for (name, src) in shaders::FILES {
        assert!(
            modules.iter().any(|m| m.source.contains(src)),
            "{name} is not part of any validated module"
        );
    }
}

#[test]
fn every_import_resolves_and_files_sit_in_their_role_folders() {
    for m in shaders::all_modules() {
        assert!(m.unresolved.is_empty(), "{}: {:?}", m.name, m.unresolved);
    }
    let roles = ["rng/", "gemm/", "net/", "bench/", "io/", "device/"];
    let listed: Vec<&str> = shaders::FILES.iter().map(|(n, _)| *n).collect();
    for (name, src) in shaders::FILES {
        assert!(roles.iter().any(|r| name.starts_with(r)), "{name}");
        for i in shaders::imports(src) {
            assert!(
                i.starts_with('@') || listed.contains(&i),
                "{name} imports {i}, which is not a shader file"
            );
            assert_ne!(i, *name, "{name} imports itself");
        }
    }
    // The declarations are read: the transformer's backward module reaches
    // its forward file and the activations through two levels of imports,
    // each file once.
    let t = shaders::all_modules()
        .into_iter()
        .find(|m| m.name == "transformer")
        .expect("the transformer module");
    let file = |p: &str| shaders::FILES.iter().find(|(n, _)| *n == p).expect(p).1;
    for f in [
        "net/transformer_bwd.wgsl",
        "net/transformer.wgsl",
        "net/activation.wgsl",
    ] {
        assert_eq!(t.source.matches(file(f)).count(), 1, "{f}");
    }
    assert!(!t.source.contains(file("net/network.wgsl")));
}

/// The override constants deepinit sets for a module, one map per pipeline it
/// builds: every activation for `ACT`, both GEMM forms, the generation
/// workgroup sizes from the smallest to the largest allowed.
fn pipeline_constants(module: &naga::Module) -> Vec<naga::back::PipelineConstants> {
    let names: Vec<String> = module
        .overrides
        .iter()
        .filter_map(|(_, o)| o.name.clone())
        .collect();
    let mut maps = vec![naga::back::PipelineConstants::default()];
    let mut vary = |name: &str, values: &[f64]| {
        if names.iter().any(|n| n == name) {
            maps = maps
                .iter()
                .flat_map(|m| {
                    values.iter().map(move |&v| {
                        let mut m = m.clone();
                        m.insert(name.to_string(), v);
                        m
                    })
                })
                .collect();
        }
    };
    vary(
        "ACT",
        &deepinit::gpu::layout::ACTIVATION_IDS.map(|(_, id)| f64::from(id)),
    );
    vary("SLOPE", &[0.01]);
    vary("TRANS_B", &[0.0, 1.0]);
    vary("WORKGROUP_SIZE", &[32.0, 256.0, 1024.0]);
    maps
}

/// Metal and DX12 users run what naga emits from our WGSL: every module, with
/// every set of override constants deepinit uses, must translate to SPIR-V,
/// MSL and HLSL.
#[test]
fn every_module_translates_to_spirv_msl_and_hlsl() {
    let mut translated = 0;
    for m in shaders::all_modules() {
        let module = naga::front::wgsl::parse_str(&m.source).expect("parses");
        let caps = capabilities(&m);
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .expect("validates");
        for constants in pipeline_constants(&module) {
            let (module, info) =
                naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants)
                    .unwrap_or_else(|e| panic!("{} {constants:?}: {e}", m.name));
            let what = format!("{} {constants:?}", m.name);
            let spv = naga::back::spv::write_vec(
                &module,
                &info,
                &naga::back::spv::Options::default(),
                None,
            )
            .unwrap_or_else(|e| panic!("SPIR-V, {what}: {e}"));
            assert_eq!(spv.first(), Some(&0x0723_0203), "SPIR-V magic, {what}");
            let msl_options = naga::back::msl::Options {
                lang_version: (2, 4),
                ..Default::default()
            };
            let (msl, _) = naga::back::msl::write_string(
                &module,
                &info,
                &msl_options,
                &naga::back::msl::PipelineOptions::default(),
            )
            .unwrap_or_else(|e| panic!("MSL, {what}: {e}"));
            assert!(msl.contains("kernel"), "MSL has no kernel, {what}");
            let hlsl_options = naga::back::hlsl::Options {
                shader_model: naga::back::hlsl::ShaderModel::V6_0,
                ..Default::default()
            };
            let mut hlsl = String::new();
            naga::back::hlsl::Writer::new(
                &mut hlsl,
                &hlsl_options,
                &naga::back::hlsl::PipelineOptions::default(),
            )
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("HLSL, {what}: {e}"));
            assert!(hlsl.contains("[numthreads("), "HLSL has no kernel, {what}");
            translated += 1;
        }
    }
    // 7 activations x 1 network module, 2 GEMM forms, 3 workgroup sizes x 2 init modules, ...
    assert!(translated >= 20, "only {translated} translations");
}
