// The device's float behaviour, probed on inputs it cannot constant-fold
// (src/gpu/probe.rs lists them and reads the answers):
//   out[0] = fma(a, b, c)      fused (one rounding) or two roundings
//   out[1] = a * b + c         whether the compiler contracts it into an fma
//   out[2] = tiny * one        a subnormal input kept or flushed
//   out[3] = p * q             a subnormal result kept or flushed
//   out[4] = max(nan, one)     NaN handling of max
//   out[5] = min(nan, one)     and of min
//   out[6] = tiny + tiny       subnormal addition
//   out[7] = floor(h)          floor of a value just below an integer
//   out[8] = frexp(tiny).exp   frexp of a subnormal (reported only)

@group(0) @binding(0) var<storage, read> probe_in: array<u32>;
@group(0) @binding(1) var<storage, read_write> probe_out: array<u32>;

fn input(i: u32) -> f32 {
    return bitcast<f32>(probe_in[min(i, arrayLength(&probe_in) - 1u)]);
}

fn put(i: u32, v: f32) {
    if (i < arrayLength(&probe_out)) {
        probe_out[i] = bitcast<u32>(v);
    }
}

@compute @workgroup_size(1)
fn float_probe() {
    let a = input(0u);
    let b = input(1u);
    let c = input(2u);
    let tiny = input(3u);
    let one = input(4u);
    let p = input(5u);
    let q = input(6u);
    let nan = input(7u);
    let h = input(8u);
    put(0u, fma(a, b, c));
    put(1u, a * b + c);
    put(2u, tiny * one);
    put(3u, p * q);
    put(4u, max(nan, one));
    put(5u, min(nan, one));
    put(6u, tiny + tiny);
    put(7u, floor(h));
    if (8u < arrayLength(&probe_out)) {
        probe_out[8] = bitcast<u32>(frexp(tiny).exp);
    }
}
