//! [`NormOps`](super::NormOps) under Burn's `Fusion` backend: the output
//! metadata that lets fusion queue the operation without running it, and
//! the `burn` paths that `#[backend_extension]`'s generated code names.

use burn_fusion::custom::TensorSpec;

use super::layout::{Groups, Layout};
use super::{NormGradsMetadata, NormalizedMetadata, RunningUpdate, Statistics};

/// `burn` as the extension macro's generated code sees it: Burn itself,
/// with `burn::backend::fusion` always present (Burn re-exports its fusion
/// crate there only under its own `fusion` feature, which would turn fusion
/// on for the whole application).
pub mod burn {
    pub use ::burn::*;

    /// Burn's backend module, plus its fusion crate.
    pub mod backend {
        pub use ::burn::backend::*;
        pub use burn_fusion as fusion;
    }
}

/// A float tensor's spec of `shape`, with `like`'s dtype.
fn spec(like: &TensorSpec, shape: Vec<usize>) -> TensorSpec {
    TensorSpec::new(shape.into(), like.dtype)
}

/// Outputs of `normalize`: `y` as `x`, and `mean`, `var`, `rstd` with one
/// value per group, or none where they are discarded (as the CubeCL
/// kernels return them).
#[allow(clippy::too_many_arguments)]
pub fn normalize_metadata(
    x: &TensorSpec,
    _gamma: &TensorSpec,
    _beta: &TensorSpec,
    _running_mean: &TensorSpec,
    _running_var: &TensorSpec,
    _affine: &[bool; 2],
    layout: &Layout,
    _epsilon: &f64,
    statistics: &Statistics,
    _running: &RunningUpdate,
) -> NormalizedMetadata {
    let groups = match statistics {
        Statistics::Returned | Statistics::Running => {
            Groups::of(x.shape.as_slice(), *layout).count()
        }
        Statistics::Discarded => 0,
    };
    NormalizedMetadata {
        output: x.clone(),
        mean: spec(x, vec![groups]),
        var: spec(x, vec![groups]),
        rstd: spec(x, vec![groups]),
    }
}

/// Outputs of `normalize_backward`: `dx` as `x`, and `dgamma`, `dbeta`
/// with one value per parameter.
pub fn normalize_backward_metadata(
    x: &TensorSpec,
    _rstd: &TensorSpec,
    _gamma: &TensorSpec,
    _has_gamma: &bool,
    layout: &Layout,
    _dy: &TensorSpec,
) -> NormGradsMetadata {
    let params = Groups::of(x.shape.as_slice(), *layout).params();
    NormGradsMetadata {
        dx: x.clone(),
        dgamma: spec(x, vec![params]),
        dbeta: spec(x, vec![params]),
    }
}
