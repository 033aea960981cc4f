// f32 -> bf16 / f16 packing, two values per 32-bit word (element 2i in the
// low half), with round-to-nearest-even written in integer operations only,
// so every device gives the same bits. The CPU twin is `deepinit::io::dtype`.

struct PackParams {
    // f32 values in `src`; `dst` receives (count + 1) / 2 words.
    count: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> pack: PackParams;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

override WORKGROUP_SIZE: u32 = 256u;

fn to_bf16(x: u32) -> u32 {
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return ((x >> 16u) | 0x40u) & 0xffffu;
    }
    return (x + 0x7fffu + ((x >> 16u) & 1u)) >> 16u;
}

// 1 when dropping the low `shift` bits of `v` rounds up (nearest, ties to even).
fn round_bit(v: u32, shift: u32) -> u32 {
    let half = 1u << (shift - 1u);
    let rest = v & ((half << 1u) - 1u);
    let odd = (v >> shift) & 1u;
    return select(0u, 1u, rest > half || (rest == half && odd == 1u));
}

fn to_f16(x: u32) -> u32 {
    let sign = (x >> 16u) & 0x8000u;
    let e = (x >> 23u) & 0xffu;
    let man = x & 0x7fffffu;
    if (e == 0xffu) {
        return sign | 0x7c00u | select(0u, 0x200u | (man >> 13u), man != 0u);
    }
    let half_exp = i32(e) - 112;
    if (half_exp >= 31) {
        return sign | 0x7c00u;
    }
    if (half_exp <= 0) {
        let shift = u32(14 - half_exp);
        if (shift > 24u) {
            return sign;
        }
        let full = man | 0x800000u;
        return sign | ((full >> shift) + round_bit(full, shift));
    }
    let bits = (u32(half_exp) << 10u) | (man >> 13u);
    return sign | (bits + round_bit(man, 13u));
}

fn pack_index(wid: vec3<u32>, lid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WORKGROUP_SIZE + lid.x;
}

fn source(i: u32) -> u32 {
    if (i < pack.count && i < arrayLength(&src)) {
        return src[i];
    }
    return 0u;
}

fn convert(x: u32, f16: bool) -> u32 {
    if (f16) {
        return to_f16(x);
    }
    return to_bf16(x);
}

// Word i holds elements 2i (low half) and 2i + 1 (high half, 0 past the end).
fn pack_word(i: u32, f16: bool) {
    if (2u * i >= pack.count || i >= arrayLength(&dst)) { return; }
    let hi = select(0u, convert(source(2u * i + 1u), f16), 2u * i + 1u < pack.count);
    dst[i] = convert(source(2u * i), f16) | (hi << 16u);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn pack_bf16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    pack_word(pack_index(wid, lid, nwg), false);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn pack_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    pack_word(pack_index(wid, lid, nwg), true);
}
