// Generation output, one 16-byte store per Philox block. Only for chunks
// that start on a block (lane_offset 0) and hold whole blocks (count a
// multiple of 4): the driver (src/gpu/generate.rs) runs the scalar store
// otherwise. Then block i is elements 4i .. 4i + 3 of the chunk, all inside
// it, and one check against the buffer covers all four.
@group(0) @binding(1) var<storage, read_write> out: array<vec4<u32>>;

fn store_block(i: u32, v: vec4<u32>) {
    if (i < arrayLength(&out)) {
        out[i] = v;
    }
}
