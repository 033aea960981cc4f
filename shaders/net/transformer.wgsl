// import net/activation.wgsl

// The element-wise, row-wise and attention steps of a transformer's forward
// pass at initialization; the matrix multiplies are the GEMM variants'. From
// net/activation.wgsl: exp_neg, recip12, sigmoid2, and act with ACT = the
// model's GELU (tanh or erf form).
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
    // Always 0: the constants are read through it (k() in net/activation.wgsl).
    zero: u32,
    // Sequence length (position = row % seq).
    seq: u32,
    // Attention: heads, key/value heads, head width, the q/k/v buffer's row
    // stride and the column where q, k and v start (an attention tile: rows
    // row0 .. row0 + rows, `width` heads from head q_col); norms: flags.
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    ld: u32,
    q_col: u32,
    k_col: u32,
    v_col: u32,
    // Embedding: the vocabulary rows [lo, hi) this chunk holds. Attention:
    // lo = the sliding window (0: none), hi = first word of this layer's rows.
    // norm_var: lo = the first output word.
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

// Lanes' partial results of the row-wise kernels (norm, lm_loss).
var<workgroup> wg_f: array<f32, RED_WG>;

// Norm flags (`heads` of a norm launch).
const NORM_RMS: u32 = 1u;
const NORM_BIAS: u32 = 2u;
// Embedding flag (`heads` of an embedding launch): add the position table t4.
const EMBED_POS: u32 = 1u;

// 1 / x for x >= 1 (a softmax's sum): x = f 2^p with f in [1, 2) split by its
// bits, recip12(f), and p subtracted from the result's exponent field (the
// result is normal).
fn recip_ge1(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    let p = (bits >> 23u) - 127u;
    let f = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    return bitcast<f32>(bitcast<u32>(recip12(f)) - (p << 23u));
}

// x, opaque to the compiler (XORed with the uniform zero): a product passed
// through it cannot be contracted with the addition that consumes it into an
// fma the CPU does not mirror.
fn opaque(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) ^ ep.zero);
}

fn flat(wid: vec3<u32>, lid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * EW_WG + lid.x;
}

// x[r][c] = table[tok - lo][c] (+ pos[r % seq][c]) for the rows whose token
// lies in this chunk [lo, hi) of the table: t1 = x, t2 = the chunk, t3 = the
// token ids, t4 = the position table.
@compute @workgroup_size(EW_WG)
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

// Sum of the lanes' values in wg_f by the halving tree (partial_stats' order).
fn tree_sum(l: u32) -> f32 {
    workgroupBarrier();
    for (var s = RED_WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) { wg_f[l] = wg_f[l] + wg_f[l + s]; }
        workgroupBarrier();
    }
    let v = wg_f[0];
    workgroupBarrier();
    return v;
}

// The (mean, inverse root, sum of centred squares) of the row of t1 at
// `base` (width ep.width), for lane l of its workgroup: LayerNorm's mean (0
// for RMSNorm) as the tree sum times 1/width, the centred squares by fma, the
// inverse square root of their mean plus epsilon. The forward norm, its
// backward and `norm_var` share it.
fn norm_stats(base: u32, l: u32, rms: bool) -> vec3<f32> {
    let n = ep.width;
    var mean = 0.0;
    if (!rms) {
        var s = 0.0;
        for (var c = l; c < n; c += RED_WG) { s = s + t1[base + c]; }
        wg_f[l] = s;
        mean = opaque(tree_sum(l) * ep.inv_n);
    }
    var d2 = 0.0;
    for (var c = l; c < n; c += RED_WG) {
        let d = t1[base + c] - mean;
        d2 = fma(d, d, d2);
    }
    wg_f[l] = d2;
    let s2 = tree_sum(l);
    return vec3<f32>(mean, rsqrt_newton(fma(s2, ep.inv_n, ep.eps)), s2);
}

// Row r's variance as the norm sees it (LayerNorm: about the row's mean;
// RMSNorm: the mean square), the sum of `norm_stats` times 1/width, into
// t2[ep.lo + r]: the input of the norms' output-variance check.
@compute @workgroup_size(RED_WG)
fn norm_var(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.y * nwg.x + wid.x;
    let l = lid.x;
    let n = ep.width;
    if (r >= ep.rows || (r + 1u) * n > arrayLength(&t1) || ep.lo + r >= arrayLength(&t2)) {
        return;
    }
    let st = norm_stats(r * n, l, (ep.heads & NORM_RMS) != 0u);
    if (l == 0u) { t2[ep.lo + r] = st.z * ep.inv_n; }
}

// LayerNorm or RMSNorm of row r of t1 into t2, weight t3, bias t4: one
// workgroup of RED_WG lanes per row, lane l folding elements l, l + RED_WG,
// ... in order, the lanes combined by the halving tree.
@compute @workgroup_size(RED_WG)
fn norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.y * nwg.x + wid.x;
    let l = lid.x;
    let n = ep.width;
    if (r >= ep.rows || (r + 1u) * n > arrayLength(&t1) || (r + 1u) * n > arrayLength(&t2)
        || n > arrayLength(&t3)) { return; }
    let base = r * n;
    let rms = (ep.heads & NORM_RMS) != 0u;
    let bias = (ep.heads & NORM_BIAS) != 0u && n <= arrayLength(&t4);
    let st = norm_stats(base, l, rms);
    let mean = st.x;
    let inv = st.y;
    for (var c = l; c < n; c += RED_WG) {
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
@compute @workgroup_size(EW_WG)
fn add_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (ep.width == 0u || i >= ep.rows * ep.width || i >= arrayLength(&t1)) { return; }
    let j = i % ep.width;
    if (j < arrayLength(&t2)) { t1[i] = t1[i] + t2[j]; }
}

// t1[i] += t2[i] (a residual addition).
@compute @workgroup_size(EW_WG)
fn residual(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= ep.rows * ep.width || i >= arrayLength(&t1) || i >= arrayLength(&t2)) { return; }
    t1[i] = t1[i] + t2[i];
}

// Rotary embedding of the heads starting at column q_col of t1 (row stride
// ld; `heads` heads of head_dim), rotate-half pairing (i, i + head_dim/2), with
// the tables t2 = cos and t3 = sin, [seq, head_dim/2] each. One invocation
// per (row, head, pair). Its backward, the rotation's transpose, is this
// kernel with the sine table negated (negation is exact, so
// fma(a, c, -(b * -s)) is fma(a, c, b * s) bit for bit).
@compute @workgroup_size(EW_WG)
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

// Lanes of an attention workgroup.
const ATT_WG: u32 = 64u;
var<workgroup> att_a: array<f32, ATT_WG>;
var<workgroup> att_b: array<f32, ATT_WG>;

// The halving tree over att_a (sums, or maxima with `is_max`) and att_b (sums).
fn att_tree(l: u32, is_max: bool) {
    workgroupBarrier();
    for (var s = ATT_WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) {
            let o = att_a[l + s];
            if (is_max) {
                att_a[l] = select(att_a[l], o, o > att_a[l]);
            } else {
                att_a[l] = att_a[l] + o;
                att_b[l] = att_b[l] + att_b[l + s];
            }
        }
        workgroupBarrier();
    }
}

// The first key row query row r sees, and how many: its sequence's rows up
// to r, the last `lo` of them under a sliding window (lo > 0), or every row
// of its sequence (lo = 0xffffffff: bidirectional). The forward and the
// backward kernels share it.
fn key_range(r: u32) -> vec2<u32> {
    let t = r % ep.seq;
    // lo = 0xffffffff: bidirectional (an encoder), every row of the sequence.
    if (ep.lo == 0xffffffffu) { return vec2<u32>(r - t, ep.seq); }
    var j0 = r - t;
    if (ep.lo != 0u && t + 1u > ep.lo) { j0 = r + 1u - ep.lo; }
    return vec2<u32>(j0, r + 1u - j0);
}

// Attention works on tiles: whole consecutive sequences (rows row0 .. row0
// + rows; short sequences are packed) and a group of `width` query heads
// starting at head q_col. The GEMM variants fill t1 with the tile's raw
// scores q_t . k_u (each the ascending-d fma chain), [width][rows][rows]
// (head, query t, key u), and attention's products run through them too
// (P V, dS K, ...), every chain over all the tile's keys (or queries) in
// ascending order, the ones a query does not see (later tokens, other
// sequences) with probability exactly 0 -- as PyTorch's math path does.

// The softmax of the scores, in place, one workgroup of ATT_WG lanes per
// (head, query row) of the tile: the scaled score s_u = opaque(raw * scale)
// of each key the row sees, e_u = e^(s_u - m) for the largest m, and the row
// of probabilities e_u / S (0 for the keys it does not see). t2 words hi + 3
// (r * heads + h) get S = sum_u e_u, A = sum_u e_u (s_u - m) and m (the
// backward pass recomputes the probabilities from m and S), from which the
// host computes the row's entropy ln S - A / S and its largest probability
// 1 / S. Lane l folds keys l, l + ATT_WG, ... of the row's range in order;
// the lanes are combined by the halving tree. Every element a lane writes it
// alone reads.
@compute @workgroup_size(ATT_WG)
fn att_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = wid.y * nwg.x + wid.x;
    let l = lid.x;
    let n = ep.rows;
    if (n == 0u || idx >= ep.width * n || ep.q_col + ep.width > ep.heads) { return; }
    let t = idx % n;
    let r = ep.row0 + t;
    let kr = key_range(r);
    // The row's first key, counted from the tile's first row.
    let j0 = kr.x - ep.row0;
    let keys = kr.y;
    let base = idx * n;
    let a = ep.hi + 3u * (r * ep.heads + ep.q_col + idx / n);
    if (base + n > arrayLength(&t1) || a + 3u > arrayLength(&t2)) { return; }
    // -inf: a row of NaN scores has no largest one.
    var m = bitcast<f32>(0xff800000u);
    for (var i = l; i < keys; i += ATT_WG) {
        let s = opaque(t1[base + j0 + i] * ep.inv_n);
        t1[base + j0 + i] = s;
        m = select(m, s, s > m);
    }
    att_a[l] = m;
    att_tree(l, true);
    let mx = att_a[0];
    workgroupBarrier();
    var sum = 0.0;
    var ent = 0.0;
    for (var i = l; i < keys; i += ATT_WG) {
        let z = t1[base + j0 + i] - mx;
        let e = exp_neg(z);
        t1[base + j0 + i] = e;
        sum = sum + e;
        ent = fma(e, z, ent);
    }
    att_a[l] = sum;
    att_b[l] = ent;
    att_tree(l, false);
    let total = att_a[0];
    let inv = recip_ge1(total);
    // Key j0 + i for i < n - j0, then the keys before j0 (i - (n - j0)):
    // lane l reads only what it wrote above.
    for (var i = l; i < n; i += ATT_WG) {
        var at = base + j0 + i;
        if (i >= n - j0) { at = base + i - (n - j0); }
        t1[at] = select(0.0, t1[at] * inv, i < keys);
    }
    if (l == 0u) {
        t2[a] = total;
        t2[a + 1u] = att_b[0];
        t2[a + 2u] = mx;
    }
}

// Per row of a logits block t1 ([rows, width], global rows row0 ..), one
// workgroup of RED_WG lanes: the largest logit m, S = sum_j e^(l_j - m) and
// the logit of the target, the token ep.lo rows on (t2 = token ids; 1: the
// next token, and rows at a sequence's last position have none: 0; 0: the
// row's own), into t3 words 3 (row0 + row) ..; the host forms the loss
// ln S + m - l_target. Lane l folds elements l, l + RED_WG, ... in
// order, then the halving tree combines the lanes (as partial_stats does).
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
    let total = tree_sum(l);
    if (l == 0u) {
        var l_next = 0.0;
        // The target: the next token (ep.lo = 1, a causal LM) or the row's
        // own (ep.lo = 0, a masked LM with labels = input ids).
        if ((gr % ep.seq) + ep.lo < ep.seq && gr + ep.lo < arrayLength(&t2)) {
            let tok = bitcast<u32>(t2[gr + ep.lo]);
            if (tok < n) { l_next = t1[base + tok]; }
        }
        t3[out] = mx;
        t3[out + 1u] = total;
        t3[out + 2u] = l_next;
    }
}
