// Dead-unit count of a [rows, cols] activation tensor.

struct DeadParams {
    rows: u32,
    cols: u32,
    // Counter index in `dead`.
    slot: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> dp: DeadParams;
@group(0) @binding(1) var<storage, read> dead_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dead: array<atomic<u32>>;

// Counts the units (columns) that are exactly zero for every row of the batch.
@compute @workgroup_size(EW_WG)
fn dead_units(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= dp.cols || dp.slot >= arrayLength(&dead)) { return; }
    let n = arrayLength(&dead_x);
    for (var r = 0u; r < dp.rows; r++) {
        let i = r * dp.cols + j;
        if (i >= n || dead_x[i] != 0.0) { return; }
    }
    atomicAdd(&dead[dp.slot], 1u);
}
