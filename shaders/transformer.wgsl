// The element-wise, row-wise and attention steps of a transformer's forward
// pass at initialization; the matrix multiplies are the GEMM variants'. Needs
// activation.wgsl (exp_neg, recip12, sigmoid2, act with ACT = GELU) and its
// generated constants.
//
// Statement for statement the CPU mirror in src/tfm/mirror.rs: only +, -, *,
// explicit fma, comparisons, selects and bit operations -- the norms' inverse
// square root is an integer seed and three Newton steps, the softmax's
// reciprocal an exponent split by integer operations and recip12 -- every sum
// sequential in index order, so a conforming device's results are reproduced
// bit for bit. Maxima are `select(m, x, x > m)`, whose NaN behaviour is fixed
// (the builtin max's is device-specific).
//
// Bindings: the parameters, then up to four f32 buffers t1..t4 whose role
// each entry point names (token ids travel as their bits).

struct TfParams {
    // Rows (batch * sequence) this launch covers, and the first one.
    rows: u32,
    row0: u32,
    // Row width (elements).
    width: u32,
    // Always 0: the constants are read through it (k() in activation.wgsl).
    zero: u32,
    // Sequence length (position = row % seq).
    seq: u32,
    // Attention: heads, key/value heads, head width, the q/k/v buffer's row
    // stride and the column where q, k and v start; norms: flags.
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    ld: u32,
    q_col: u32,
    k_col: u32,
    v_col: u32,
    // Embedding: the vocabulary rows [lo, hi) this chunk holds. Attention:
    // lo = the sliding window (0: none), hi = first word of this layer's rows.
    lo: u32,
    hi: u32,
    // Norms: 1 / width (rounded), epsilon. Attention: the score scale.
    inv_n: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> ep: TfParams;
@group(0) @binding(1) var<storage, read_write> t1: array<f32>;
@group(0) @binding(2) var<storage, read_write> t2: array<f32>;
@group(0) @binding(3) var<storage, read_write> t3: array<f32>;
@group(0) @binding(4) var<storage, read_write> t4: array<f32>;

// Norm flags (`heads` of a norm launch).
const NORM_RMS: u32 = 1u;
const NORM_BIAS: u32 = 2u;
// Embedding flag (`heads` of an embedding launch): add the position table t4.
const EMBED_POS: u32 = 1u;

// x, opaque to the compiler (XORed with the uniform zero): a product passed
// through it cannot be contracted with the addition that consumes it into an
// fma the CPU does not mirror.
fn opaque(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) ^ ep.zero);
}

fn flat(wid: vec3<u32>, lid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

// x[r][c] = table[tok - lo][c] (+ pos[r % seq][c]) for the rows whose token
// lies in this chunk [lo, hi) of the table: t1 = x, t2 = the chunk, t3 = the
// token ids, t4 = the position table.
@compute @workgroup_size(256)
fn embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (ep.width == 0u || i >= ep.rows * ep.width || i >= arrayLength(&t1)) { return; }
    let r = i / ep.width;
    let c = i % ep.width;
    if (r >= arrayLength(&t3)) { return; }
    let tok = bitcast<u32>(t3[r]);
    if (tok < ep.lo || tok >= ep.hi) { return; }
    let src = (tok - ep.lo) * ep.width + c;
    if (src >= arrayLength(&t2)) { return; }
    var v = t2[src];
    if ((ep.heads & EMBED_POS) != 0u) {
        let p = (r % ep.seq) * ep.width + c;
        if (p < arrayLength(&t4)) { v = v + t4[p]; }
    }
    t1[i] = v;
}

// 1 / sqrt(a) for a > 0: the integer seed 0x5f3759df - bits/2 (relative error
// under 3.5%) and three Newton steps y (1.5 - (a/2) y^2), each squaring the
// error: 3.5e-2, 1.8e-3, 5e-6, 4e-11 before rounding.
fn rsqrt_newton(a: f32) -> f32 {
    var y = bitcast<f32>(0x5f3759dfu - (bitcast<u32>(a) >> 1u));
    let h = a * 0.5;
    for (var s = 0u; s < 3u; s++) {
        let yy = y * y;
        y = y * fma(-h, yy, 1.5);
    }
    return y;
}

// LayerNorm or RMSNorm of row r of t1 into t2, weight t3, bias t4: one
// invocation per row, every sum sequential.
@compute @workgroup_size(64)
fn norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = (wid.y * nwg.x + wid.x) * 64u + lid.x;
    let n = ep.width;
    if (r >= ep.rows || (r + 1u) * n > arrayLength(&t1) || (r + 1u) * n > arrayLength(&t2)
        || n > arrayLength(&t3)) { return; }
    let base = r * n;
    let rms = (ep.heads & NORM_RMS) != 0u;
    let bias = (ep.heads & NORM_BIAS) != 0u && n <= arrayLength(&t4);
    var mean = 0.0;
    if (!rms) {
        var s = 0.0;
        for (var c = 0u; c < n; c++) { s = s + t1[base + c]; }
        mean = opaque(s * ep.inv_n);
    }
    var d2 = 0.0;
    for (var c = 0u; c < n; c++) {
        let d = t1[base + c] - mean;
        d2 = fma(d, d, d2);
    }
    let inv = rsqrt_newton(fma(d2, ep.inv_n, ep.eps));
    for (var c = 0u; c < n; c++) {
        if (rms) {
            t2[base + c] = t3[c] * (t1[base + c] * inv);
        } else {
            let y = (t1[base + c] - mean) * inv;
            if (bias) {
                t2[base + c] = fma(y, t3[c], t4[c]);
            } else {
                t2[base + c] = y * t3[c];
            }
        }
    }
}

// t1[i] += t2[i % width] over rows * width elements (a bias).
@compute @workgroup_size(256)
fn add_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (ep.width == 0u || i >= ep.rows * ep.width || i >= arrayLength(&t1)) { return; }
    let j = i % ep.width;
    if (j < arrayLength(&t2)) { t1[i] = t1[i] + t2[j]; }
}

// t1[i] += t2[i] (a residual addition).
@compute @workgroup_size(256)
fn residual(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= ep.rows * ep.width || i >= arrayLength(&t1) || i >= arrayLength(&t2)) { return; }
    t1[i] = t1[i] + t2[i];
}

// t1[i] = gelu(t1[i]) (the tanh form, GPT-2's gelu_new).
@compute @workgroup_size(256)
fn gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= ep.rows * ep.width || i >= arrayLength(&t1)) { return; }
    t1[i] = act(t1[i]);
}

// t1[i] = silu(t1[i]) * t2[i], silu(g) = g sigmoid(g) (SwiGLU: gate, up).
@compute @workgroup_size(256)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= ep.rows * ep.width || i >= arrayLength(&t1) || i >= arrayLength(&t2)) { return; }
    let g = t1[i];
    t1[i] = (g * sigmoid2(g).x) * t2[i];
}

// Rotary embedding of the heads starting at column q_col of t1 (row stride
// ld; `heads` heads of head_dim), rotate-half pairing (i, i + head_dim/2), with
// the tables t2 = cos and t3 = sin, [seq, head_dim/2] each. One invocation
// per (row, head, pair).
@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    let half = ep.head_dim / 2u;
    if (half == 0u || idx >= ep.rows * ep.heads * half) { return; }
    let r = idx / (ep.heads * half);
    let h = (idx / half) % ep.heads;
    let i = idx % half;
    let a_at = r * ep.ld + ep.q_col + h * ep.head_dim + i;
    let b_at = a_at + half;
    let t_at = (r % ep.seq) * half + i;
    if (b_at >= arrayLength(&t1) || t_at >= arrayLength(&t2) || t_at >= arrayLength(&t3)) { return; }
    let a = t1[a_at];
    let b = t1[b_at];
    let c = t2[t_at];
    let s = t3[t_at];
    t1[a_at] = fma(a, c, -(b * s));
    t1[b_at] = fma(b, c, a * s);
}

// Largest head width the attention kernel holds in registers.
const MAX_HEAD_DIM: u32 = 256u;

// Score of query row r against key row j of head h (kv head g): the
// ascending-d fma chain of q . k, times the scale.
fn score(r: u32, j: u32, h: u32, g: u32) -> f32 {
    let q = r * ep.ld + ep.q_col + h * ep.head_dim;
    let k = j * ep.ld + ep.k_col + g * ep.head_dim;
    var s = 0.0;
    for (var d = 0u; d < ep.head_dim; d++) { s = fma(t1[q + d], t1[k + d], s); }
    return opaque(s * ep.inv_n);
}

// Causal multi-head attention (grouped-query when kv_heads < heads), one
// invocation per (row, head): t1 = q|k|v rows (stride ld, columns q_col,
// k_col, v_col), t2 = the output [rows, heads * head_dim], t3 = per-row
// softmax sums: words hi + 2 (row * heads + h) get S = sum_j e^(s_j - m) and
// A = sum_j e^(s_j - m) (s_j - m), from which the host computes the row's
// entropy ln S - A / S and its largest probability 1 / S. Scores are
// recomputed in each of the three sweeps (maximum, sums, output), the same
// bits each time, so no score matrix is stored.
@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid.x;
    let hd = ep.head_dim;
    if (idx >= ep.rows * ep.heads || hd > MAX_HEAD_DIM || ep.kv_heads == 0u) { return; }
    let r = idx / ep.heads;
    let h = idx % ep.heads;
    let g = h / (ep.heads / ep.kv_heads);
    let t = r % ep.seq;
    let first_row = r - t;
    var j0 = first_row;
    if (ep.lo != 0u && t + 1u > ep.lo) { j0 = r + 1u - ep.lo; }
    let last_word = r * ep.ld + ep.v_col + (g + 1u) * hd;
    if (last_word > arrayLength(&t1) || r * ep.ld + ep.q_col + (h + 1u) * hd > arrayLength(&t1)
        || (r * ep.heads + h + 1u) * hd > arrayLength(&t2)
        || ep.hi + 2u * (r * ep.heads + h) + 2u > arrayLength(&t3)) { return; }
    var m = score(r, j0, h, g);
    for (var j = j0 + 1u; j <= r; j++) {
        let s = score(r, j, h, g);
        m = select(m, s, s > m);
    }
    var sum = 0.0;
    var ent = 0.0;
    for (var j = j0; j <= r; j++) {
        let z = score(r, j, h, g) - m;
        let e = exp_neg(z);
        sum = sum + e;
        ent = fma(e, z, ent);
    }
    // 1 / sum: sum = f 2^p with f in [1, 2) split by its bits, recip12(f),
    // and -p added to the exponent field (sum >= 1, so the result is normal).
    let bits = bitcast<u32>(sum);
    let p = (bits >> 23u) - 127u;
    let f = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    let inv = bitcast<f32>(bitcast<u32>(recip12(f)) - (p << 23u));
    var acc: array<f32, MAX_HEAD_DIM>;
    for (var d = 0u; d < hd; d++) { acc[d] = 0.0; }
    for (var j = j0; j <= r; j++) {
        let w = exp_neg(score(r, j, h, g) - m) * inv;
        let v = j * ep.ld + ep.v_col + g * hd;
        for (var d = 0u; d < hd; d++) { acc[d] = fma(w, t1[v + d], acc[d]); }
    }
    let o = (r * ep.heads + h) * hd;
    for (var d = 0u; d < hd; d++) { t2[o + d] = acc[d]; }
    let a = ep.hi + 2u * (r * ep.heads + h);
    t3[a] = sum;
    t3[a + 1u] = ent;
}

// Per row of a logits block t1 ([rows, width], global rows row0 ..), one
// workgroup of RED_WG lanes: the largest logit m, S = sum_j e^(l_j - m) and
// the logit of the next token (t2 = token ids; rows at a sequence's last
// position have none: 0), into t3 words 3 (row0 + row) ..; the host forms
// the loss ln S + m - l_next. Lane l folds elements l, l + RED_WG, ... in
// order, then the halving tree combines the lanes (as partial_stats does).
var<workgroup> wg_f: array<f32, RED_WG>;

@compute @workgroup_size(RED_WG)
fn lm_loss(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.y * nwg.x + wid.x;
    let l = lid.x;
    let n = ep.width;
    let gr = ep.row0 + r;
    let out = 3u * gr;
    if (r >= ep.rows || n == 0u || (r + 1u) * n > arrayLength(&t1) || out + 3u > arrayLength(&t3)) {
        return;
    }
    let base = r * n;
    // -inf: a row of NaN has no largest logit.
    var m = bitcast<f32>(0xff800000u);
    for (var c = l; c < n; c += RED_WG) {
        let x = t1[base + c];
        m = select(m, x, x > m);
    }
    wg_f[l] = m;
    workgroupBarrier();
    for (var s = RED_WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) {
            let o = wg_f[l + s];
            wg_f[l] = select(wg_f[l], o, o > wg_f[l]);
        }
        workgroupBarrier();
    }
    let mx = wg_f[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var c = l; c < n; c += RED_WG) { sum = sum + exp_neg(t1[base + c] - mx); }
    wg_f[l] = sum;
    workgroupBarrier();
    for (var s = RED_WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) { wg_f[l] = wg_f[l] + wg_f[l + s]; }
        workgroupBarrier();
    }
    if (l == 0u) {
        var l_next = 0.0;
        if ((gr % ep.seq) + 1u < ep.seq && gr + 1u < arrayLength(&t2)) {
            let tok = bitcast<u32>(t2[gr + 1u]);
            if (tok < n) { l_next = t1[base + tok]; }
        }
        t3[out] = mx;
        t3[out + 1u] = wg_f[0];
        t3[out + 2u] = l_next;
    }
}
