// import net/transformer.wgsl

// The backward pass of the transformer: the LM
// loss's gradient, the norms', SwiGLU's, the rotary embedding's and
// attention's backward steps, and the element-wise helpers of the weight
// gradients' norms (||X^T dY||_F^2 = <X X^T, dY dY^T>, the Gram matrices
// multiplied element by element and summed). The same rules as the forward
// kernels: +, -, *, explicit fma, bit operations; opaque() on every product
// that an addition consumes; sums in a fixed order the CPU mirror follows.

@group(0) @binding(5) var<storage, read_write> t5: array<f32>;
@group(0) @binding(6) var<storage, read_write> t6: array<f32>;

// t2[i] = t1[i] over rows * width elements.
@compute @workgroup_size(EW_WG)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= ep.rows * ep.width || i >= arrayLength(&t1) || i >= arrayLength(&t2)) { return; }
    t2[i] = t1[i];
}

// t2[i] = gelu(t1[i]).
@compute @workgroup_size(EW_WG)
fn gelu_to(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= ep.rows * ep.width || i >= arrayLength(&t1) || i >= arrayLength(&t2)) { return; }
    t2[i] = act(t1[i]);
}

// t3[i] = silu(t1[i]) * t2[i] (SwiGLU, keeping the gate and up inputs).
@compute @workgroup_size(EW_WG)
fn swiglu_to(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= ep.rows * ep.width || i >= arrayLength(&t1) || i >= arrayLength(&t2)
        || i >= arrayLength(&t3)) { return; }
    let g = t1[i];
    t3[i] = (g * sigmoid2(g).x) * t2[i];
}

// Keeps t1[i] of a rows x rows Gram matrix (i = r rows + s, rows = ep.rows)
// where rows r and s share a key and zeroes it elsewhere: the token id (t2,
// one u32 word a row) with ep.heads = 0, except the padding id ep.hi - 1
// (ep.hi = 0: none), whose embedding row gets no gradient; the position
// (row % seq) with ep.heads = 1. What is left sums to the squared norm of
// an embedding table's gradient, whose row for a key is the sum of that
// key's rows.
@compute @workgroup_size(EW_WG)
fn same_key(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    let n = ep.rows;
    if (n == 0u || ep.seq == 0u || i >= n * n || i >= arrayLength(&t1)) { return; }
    let r = i / n;
    let s = i % n;
    var same = false;
    if (ep.heads == 1u) {
        same = r % ep.seq == s % ep.seq;
    } else if (r < arrayLength(&t2) && s < arrayLength(&t2)) {
        let id = bitcast<u32>(t2[r]);
        same = id == bitcast<u32>(t2[s]) && (ep.hi == 0u || id != ep.hi - 1u);
    }
    if (!same) { t1[i] = 0.0; }
}

// A tied table's cross term, one logits block at a time: M[r, row0 + b] =
// dlogits[b, id_r] for every row r (ep.rows of them) and the block's rows b
// < ep.lo, t1 = M (rows x rows), t2 = the block's dlogits ([lo, width]), t3
// = ids; 0 where id_r is the padding id ep.hi - 1 (ep.hi = 0: none), whose
// embedding row gets no gradient through the lookup.
@compute @workgroup_size(EW_WG)
fn tied_gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    let n = ep.rows;
    if (ep.lo == 0u || i >= n * ep.lo) { return; }
    let r = i / ep.lo;
    let b = i % ep.lo;
    let at = r * n + ep.row0 + b;
    if (at >= arrayLength(&t1) || r >= arrayLength(&t3)) { return; }
    let id = bitcast<u32>(t3[r]);
    var v = 0.0;
    if (id < ep.width && (ep.hi == 0u || id != ep.hi - 1u) && b * ep.width + id < arrayLength(&t2)) {
        v = t2[b * ep.width + id];
    }
    t1[at] = v;
}

// t1[i] *= t2[i].
@compute @workgroup_size(EW_WG)
fn hadamard(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= ep.rows * ep.width || i >= arrayLength(&t1) || i >= arrayLength(&t2)) { return; }
    t1[i] = t1[i] * t2[i];
}

// The mean loss's gradient in place over a logits block t1 ([rows, width],
// global rows row0 .., vocabulary columns lo ..): (softmax - onehot(target))
// / N, N = inv_n's reciprocal, from the row's largest logit and sum in t2 (3
// words a row, as lm_loss wrote them). The target is the id hi rows on (hi =
// 1: the next token, whose rows at a sequence's last position get 0; hi = 0:
// the row's own, a masked LM with labels = input ids). t3: ids.
@compute @workgroup_size(EW_WG)
fn dlogits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (ep.width == 0u || i >= ep.rows * ep.width || i >= arrayLength(&t1)) { return; }
    let r = i / ep.width;
    let c = i % ep.width;
    let gr = ep.row0 + r;
    if ((gr % ep.seq) + ep.hi >= ep.seq || 3u * gr + 2u >= arrayLength(&t2)
        || gr + ep.hi >= arrayLength(&t3)) {
        t1[i] = 0.0;
        return;
    }
    let m = t2[3u * gr];
    let inv = recip_ge1(t2[3u * gr + 1u]);
    let p = opaque(exp_neg(t1[i] - m) * inv);
    let one = select(0.0, 1.0, ep.lo + c == bitcast<u32>(t3[gr + ep.hi]));
    t1[i] = (p - one) * ep.inv_n;
}

// The norm's backward for row r: t1 = its input x, t2 = dy, t3 = weight;
// t4 += dx. The forward's mean and inverse root are recomputed by
// norm_stats. LayerNorm: dx = inv (g - mean(g) - xh mean(g xh)), RMSNorm:
// dx = inv (g - xh mean(g xh)), g = dy w, xh the normalised input.
@compute @workgroup_size(RED_WG)
fn norm_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.y * nwg.x + wid.x;
    let l = lid.x;
    let n = ep.width;
    if (r >= ep.rows || (r + 1u) * n > arrayLength(&t1) || (r + 1u) * n > arrayLength(&t2)
        || n > arrayLength(&t3) || (r + 1u) * n > arrayLength(&t4)) { return; }
    let base = r * n;
    let rms = (ep.heads & NORM_RMS) != 0u;
    let st = norm_stats(base, l, rms);
    let mean = st.x;
    let inv = st.y;
    var a = 0.0;
    if (!rms) {
        var s1 = 0.0;
        for (var c = l; c < n; c += RED_WG) { s1 = s1 + opaque(t2[base + c] * t3[c]); }
        wg_f[l] = s1;
        a = opaque(tree_sum(l) * ep.inv_n);
    }
    var s2 = 0.0;
    for (var c = l; c < n; c += RED_WG) {
        let xh = (t1[base + c] - mean) * inv;
        s2 = fma(opaque(t2[base + c] * t3[c]), xh, s2);
    }
    wg_f[l] = s2;
    let b = opaque(tree_sum(l) * ep.inv_n);
    for (var c = l; c < n; c += RED_WG) {
        let xh = (t1[base + c] - mean) * inv;
        let g = opaque(t2[base + c] * t3[c]);
        let t = fma(-xh, b, g - a);
        t4[base + c] = t4[base + c] + opaque(inv * t);
    }
}

// SwiGLU's backward: t1 = gate pre-activation g, t2 = up u, t3 = da (in;
// out: dg), t4 = du. silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
@compute @workgroup_size(EW_WG)
fn swiglu_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(wid, lid, nwg);
    if (i >= ep.rows * ep.width || i >= arrayLength(&t1) || i >= arrayLength(&t2)
        || i >= arrayLength(&t3) || i >= arrayLength(&t4)) { return; }
    let g = t1[i];
    let s = opaque(sigmoid2(g).x);
    let da = t3[i];
    t4[i] = da * (g * s);
    let ds = s * fma(g, 1.0 - s, 1.0);
    t3[i] = (da * t2[i]) * ds;
}

// D[r, h] = dO_r,h . O_r,h (ascending d): t1 = dO, t2 = O, t3 = D. One
// invocation per (row, head).
@compute @workgroup_size(64)
fn att_dot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid.x;
    let hd = ep.head_dim;
    if (idx >= ep.rows * ep.heads || (idx + 1u) * hd > arrayLength(&t1)
        || (idx + 1u) * hd > arrayLength(&t2) || idx >= arrayLength(&t3)) { return; }
    var acc = 0.0;
    for (var d = 0u; d < hd; d++) { acc = fma(t1[idx * hd + d], t2[idx * hd + d], acc); }
    t3[idx] = acc;
}

// The backward pass's tile (see att_softmax): from the raw scores t1 and
// the raw dO_t . v_u chains t2 ([width][rows][rows], as the GEMM variants
// wrote them), with the forward's largest score and sum (t3 words hi + 3
// (r * heads + h)) and D (t4, per (row, head)): the probability
// p = e^(s - m) / S recomputed from the scaled score s, and the score's
// gradient dS = p (dP - D) scale: dS into t2 in place, P and dS transposed
// ([width][key][query]) into t5 and t6 (P itself is read only transposed,
// by dV = P^T dO); both are 0 where the query does not see the key. One
// invocation per element.
@compute @workgroup_size(EW_WG)
fn att_tile(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    let n = ep.rows;
    if (n == 0u || idx >= ep.width * n * n || ep.q_col + ep.width > ep.heads
        || idx >= arrayLength(&t1) || idx >= arrayLength(&t2)) { return; }
    let hh = idx / (n * n);
    let t = (idx / n) % n;
    let u = idx % n;
    let r = ep.row0 + t;
    let h = ep.q_col + hh;
    let tr = (hh * n + u) * n + t;
    let a = ep.hi + 3u * (r * ep.heads + h);
    if (tr >= arrayLength(&t5) || tr >= arrayLength(&t6) || a + 3u > arrayLength(&t3)
        || r * ep.heads + h >= arrayLength(&t4)) { return; }
    let kr = key_range(r);
    var p = 0.0;
    var ds = 0.0;
    if (ep.row0 + u >= kr.x && ep.row0 + u < kr.x + kr.y) {
        let s = opaque(t1[idx] * ep.inv_n);
        p = opaque(exp_neg(s - t3[a + 2u]) * recip_ge1(t3[a]));
        ds = opaque(p * (t2[idx] - t4[r * ep.heads + h]) * ep.inv_n);
    }
    t2[idx] = ds;
    t5[tr] = p;
    t6[tr] = ds;
}

// Sums the per-head parts t1 ([rows, heads * head_dim]) over each key/value
// head's group, ascending, into columns q_col + g head_dim .. of t2 (row
// stride ld). One invocation per (row, kv head, d).
@compute @workgroup_size(EW_WG)
fn group_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(wid, lid, nwg);
    let hd = ep.head_dim;
    if (ep.kv_heads == 0u || idx >= ep.rows * ep.kv_heads * hd) { return; }
    let r = idx / (ep.kv_heads * hd);
    let g = (idx / hd) % ep.kv_heads;
    let d = idx % hd;
    let rep = ep.heads / ep.kv_heads;
    let dst = r * ep.ld + ep.q_col + g * hd + d;
    if ((r + 1u) * ep.heads * hd > arrayLength(&t1) || dst >= arrayLength(&t2)) { return; }
    var acc = t1[(r * ep.heads + g * rep) * hd + d];
    for (var e = 1u; e < rep; e++) { acc = acc + t1[(r * ep.heads + g * rep + e) * hd + d]; }
    t2[dst] = acc;
}
