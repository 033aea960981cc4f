// The parameters every roofline kernel takes (bench/roofline.wgsl, bench/roofline_vec4.wgsl).
struct BenchParams {
    // fill: elements (words) to write; fma: iterations per invocation.
    n: u32,
    // fill: the value written (word o gets value ^ o); fma: accumulator seed.
    value: u32,
    _pad0: u32,
    _pad1: u32,
}
