// Generation output, one word at a time: any chunk (any first element, any
// count). Each lane is checked against the chunk and the buffer.
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

// Stores the lanes of block i that lie inside [0, count) of this chunk.
fn store_block(i: u32, v: vec4<u32>) {
    let base = 4u * i;
    for (var j = 0u; j < 4u; j++) {
        let pos = base + j;
        if (pos >= params.lane_offset) {
            let o = pos - params.lane_offset;
            if (o < params.count && o < arrayLength(&out)) {
                out[o] = v[j];
            }
        }
    }
}
