// Activation functions and their derivatives, selected by the pipeline
// constant ACT, one of the ACT_* ids of the prelude (src/gpu/layout.rs). The
// CPU reference is `Activation::f` / `Activation::df` in src/act.rs. GELU is
// the tanh approximation, as PyTorch's approximate='tanh'.

override ACT: u32 = 1u;
override SLOPE: f32 = 0.01;

const SELU_LAMBDA: f32 = 1.0507009873554805;
const SELU_ALPHA: f32 = 1.6732632423543772;
const GELU_C: f32 = 0.7978845608028654; // sqrt(2 / pi)

// tanh without inf/inf and without cancellation near 0. For |x| >= 0.25:
// 1 - 2 / (exp(2|x|) + 1), where exp may overflow to +inf and 2 / inf = 0 (the
// relative error there is a few ULP of 1 / 0.245). For |x| < 0.25: the Taylor
// series to x^9, whose truncation error is below 2e-9 relative.
fn tanh_safe(x: f32) -> f32 {
    let ax = abs(x);
    if (ax < 0.25) {
        let x2 = x * x;
        return x * (1.0 + x2 * (-0.33333333333 + x2 * (0.13333333333 + x2 * (-0.05396825397 + x2 * 0.02186948854))));
    }
    let e = exp(2.0 * ax);
    return sign(x) * (1.0 - 2.0 / (e + 1.0));
}

// exp(x) - 1 without cancellation near 0 (WGSL has no expm1). For |x| < 2^-5:
// the Taylor series to x^5 (truncation below 1e-10 relative); beyond, exp(x) -
// 1 loses at most ulp(1) / (1 - exp(-2^-5)), i.e. 4e-6 relative. A plain
// exp(x) - 1 returns 0 or -6e-8 for every |x| < 6e-8: a vanishing SELU
// network would stall at that floor instead of vanishing.
fn expm1_safe(x: f32) -> f32 {
    if (abs(x) < 0.03125) {
        return x * (1.0 + x * (0.5 + x * (0.16666666667 + x * (0.04166666667 + x * 0.00833333333))));
    }
    return exp(x) - 1.0;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn act(x: f32) -> f32 {
    switch ACT {
        case ACT_RELU: { return max(x, 0.0); }
        case ACT_LEAKY_RELU: { return select(SLOPE * x, x, x > 0.0); }
        case ACT_TANH: { return tanh_safe(x); }
        case ACT_SIGMOID: { return sigmoid(x); }
        case ACT_SELU: { return SELU_LAMBDA * select(SELU_ALPHA * expm1_safe(x), x, x > 0.0); }
        case ACT_GELU: { return 0.5 * x * (1.0 + tanh_safe(GELU_C * (x + 0.044715 * x * x * x))); }
        default: { return x; }
    }
}

fn dact(x: f32) -> f32 {
    switch ACT {
        case ACT_RELU: { return select(0.0, 1.0, x > 0.0); }
        case ACT_LEAKY_RELU: { return select(SLOPE, 1.0, x > 0.0); }
        case ACT_TANH: { let t = tanh_safe(x); return 1.0 - t * t; }
        case ACT_SIGMOID: { let s = sigmoid(x); return s * (1.0 - s); }
        case ACT_SELU: { return SELU_LAMBDA * select(SELU_ALPHA * exp(x), 1.0, x > 0.0); }
        case ACT_GELU: {
            let u = GELU_C * (x + 0.044715 * x * x * x);
            let t = tanh_safe(u);
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
        }
        default: { return 1.0; }
    }
}
