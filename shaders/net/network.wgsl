// import net/activation.wgsl

// Element-wise steps of the forward and backward passes, and the per-layer
// statistics reductions.

struct EwParams {
    // Elements (rows * width).
    n: u32,
    // Row length (the layer's width); bias index = i % width.
    width: u32,
    // Add the bias to z before the activation.
    has_bias: u32,
    // Always 0: the activations read their constants through it (k() in
    // net/activation.wgsl), so no compiler can fold them.
    zero: u32,
    // bias_act adds one ULP to this output element (an injected defect, for
    // tests); 0xffffffff: none.
    flip: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> ep: EwParams;
// Pre-activations z (the bias is added in place).
@group(0) @binding(1) var<storage, read_write> ew_z: array<f32>;
// bias_act: activations a = act(z); grad_mul: deltas, multiplied by act'(z).
@group(0) @binding(2) var<storage, read_write> ew_out: array<f32>;
@group(0) @binding(3) var<storage, read> ew_bias: array<f32>;

fn flat_index(wid: vec3<u32>, lid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * EW_WG + lid.x;
}

@compute @workgroup_size(EW_WG)
fn bias_act(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= ep.n || i >= arrayLength(&ew_z) || i >= arrayLength(&ew_out)) { return; }
    var v = ew_z[i];
    if (ep.has_bias != 0u) {
        let j = i % ep.width;
        if (j < arrayLength(&ew_bias)) {
            v = v + ew_bias[j];
            ew_z[i] = v;
        }
    }
    let a = act(v);
    ew_out[i] = select(a, bitcast<f32>(bitcast<u32>(a) + 1u), i == ep.flip);
}

@compute @workgroup_size(EW_WG)
fn grad_mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(wid, lid, nwg);
    if (i >= ep.n || i >= arrayLength(&ew_z) || i >= arrayLength(&ew_out)) { return; }
    ew_out[i] = ew_out[i] * dact(ew_z[i]);
}
