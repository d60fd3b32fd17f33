//! The dtype the statistics are accumulated in.

use burn::tensor::{DType, FloatDType, Tensor};

/// The dtype a normalization accumulates its statistics in, or `None` when the
/// input's own dtype is wide enough.
///
/// Half-precision inputs are widened to f32, as PyTorch does: `f16` overflows
/// when squaring activations past ~256, and both `f16` and `bf16` lose most of
/// their mantissa when summing thousands of values.
pub fn accumulation_dtype(input: DType) -> Option<FloatDType> {
    matches!(input, DType::F16 | DType::BF16).then_some(FloatDType::F32)
}

/// Runs `f` on `x` (and the parameters) widened to the accumulation dtype, and
/// narrows the result back to the input's dtype. The parameters take the
/// dtype `f` computes in whatever theirs is (f32 parameters with an f64
/// input, say): the cast is differentiable, so their gradients keep theirs.
pub(crate) fn widened<const D: usize>(
    x: Tensor<D>,
    params: [Option<Tensor<1>>; 2],
    f: impl FnOnce(Tensor<D>, [Option<Tensor<1>>; 2]) -> Tensor<D>,
) -> Tensor<D> {
    let original = x.dtype();
    let x = match accumulation_dtype(original) {
        Some(wide) => x.cast(wide),
        None => x,
    };
    let dtype = x.dtype();
    let params = params.map(|p| p.map(|p| in_dtype(p, dtype)));
    let y = f(x, params);
    if y.dtype() == original {
        y
    } else {
        y.cast(FloatDType::from(original))
    }
}

/// `t` in `dtype`: as it is where it already is one, else cast
/// (differentiably).
pub(crate) fn in_dtype<const D: usize>(t: Tensor<D>, dtype: DType) -> Tensor<D> {
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}
