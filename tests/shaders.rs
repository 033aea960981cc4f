//! Every WGSL file is parsed and validated by naga, on any machine (no GPU).

use deepinit::shaders;
use std::collections::BTreeSet;

#[test]
fn every_module_parses_and_validates() {
    for m in shaders::all_modules() {
        let module = naga::front::wgsl::parse_str(&m.source)
            .unwrap_or_else(|e| panic!("{}: {}", m.name, e.emit_to_string(&m.source)));
        let caps = if m.needs_int64 {
            naga::valid::Capabilities::SHADER_INT64
        } else {
            naga::valid::Capabilities::empty()
        };
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", m.name, e.emit_to_string(&m.source)));
    }
}

#[test]
fn int64_path_is_rejected_without_the_capability() {
    // Proves the validator really checks capabilities (so the test above means something).
    let m = shaders::init_module(shaders::MulHi::Int64);
    let module = naga::front::wgsl::parse_str(&m.source).expect("parses");
    let r = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module);
    assert!(r.is_err());
}

#[test]
fn every_shader_file_is_in_a_validated_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    let listed: BTreeSet<String> = shaders::FILES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "shaders::FILES must list every file in shaders/"
    );
    let modules = shaders::all_modules();
    for (name, src) in shaders::FILES {
        assert!(
            modules.iter().any(|m| m.source.contains(src)),
            "{name} is not part of any validated module"
        );
    }
}
