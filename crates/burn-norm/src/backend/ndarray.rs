//! [`NormOps`] for the ndarray CPU backend: the slice kernels of [`cpu`]
//! on the arrays' storage (as for flex; ndarray has no in-place gradient).
//! Burn 0.22 deprecates ndarray in favour of flex, but still ships it.
#![allow(deprecated)]

use super::cpu::{self, Real};
use super::layout::{Groups, Layout};
use super::{NormGrads, NormOps, Normalized, RunningUpdate, Statistics};
use burn::backend::ndarray::{NdArray, NdArrayTensor};
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Element, TensorData};
use std::borrow::Cow;

/// The float types with a kernel, and their values in an ndarray tensor.
trait Values: Real + Element {
    /// The values in row-major order: borrowed when the array is already
    /// laid out so, copied otherwise.
    fn values(t: &NdArrayTensor) -> Cow<'_, [Self]>;
}

macro_rules! values {
    ($t:ty, $variant:ident) => {
        impl Values for $t {
            fn values(t: &NdArrayTensor) -> Cow<'_, [Self]> {
                let NdArrayTensor::$variant(storage) = t else {
                    unreachable!("dtype checked by the caller");
                };
                match storage.view().to_slice() {
                    Some(slice) => Cow::Borrowed(slice),
                    None => Cow::Owned(storage.view().iter().copied().collect()),
                }
            }
        }
    };
}
values!(f32, F32);
values!(f64, F64);

fn tensor<T: Element>(values: Vec<T>, shape: Vec<usize>) -> NdArrayTensor {
    NdArrayTensor::from_data(TensorData::new(values, shape))
}

fn shape(t: &NdArrayTensor) -> Vec<usize> {
    burn::backend::TensorMetadata::shape(t).to_vec()
}

fn forward<T: Values>(
    x: &NdArrayTensor,
    gamma: Option<&NdArrayTensor>,
    beta: Option<&NdArrayTensor>,
    running: Option<(&NdArrayTensor, &NdArrayTensor, RunningUpdate)>,
    groups: Groups,
    epsilon: f64,
) -> Normalized<NdArray> {
    let (gamma, beta) = (gamma.map(T::values), beta.map(T::values));
    let (y, mut stats) = cpu::forward(
        &T::values(x),
        groups,
        gamma.as_deref(),
        beta.as_deref(),
        epsilon,
    );
    if let Some((mean, var, update)) = running {
        stats.fold_into_running(&T::values(mean), &T::values(var), update);
    }
    let k = groups.count();
    Normalized {
        output: tensor(y, shape(x)),
        mean: tensor(stats.mean, vec![k]),
        var: tensor(stats.var, vec![k]),
        rstd: tensor(stats.rstd, vec![k]),
    }
}

fn backward<T: Values>(
    x: &NdArrayTensor,
    rstd: &NdArrayTensor,
    gamma: Option<&NdArrayTensor>,
    dy: &NdArrayTensor,
    groups: Groups,
) -> NormGrads<NdArray> {
    let (x_values, rstd, gamma, dy) = (
        T::values(x),
        T::values(rstd),
        gamma.map(T::values),
        T::values(dy),
    );
    let (dx, dgamma, dbeta) = cpu::backward(&x_values, groups, &rstd, gamma.as_deref(), &dy);
    let p = groups.params();
    NormGrads {
        dx: tensor(dx, shape(x)),
        dgamma: tensor(dgamma, vec![p]),
        dbeta: tensor(dbeta, vec![p]),
    }
}

impl NormOps for NdArray {
    fn normalize(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        running_mean: FloatTensor<Self>,
        running_var: FloatTensor<Self>,
        [has_gamma, has_beta]: [bool; 2],
        layout: Layout,
        epsilon: f64,
        // The CPU kernel computes the statistics as it goes: returning them
        // costs a few kilobytes, not a pass.
        statistics: Statistics,
        update: RunningUpdate,
    ) -> Normalized<Self> {
        let groups = Groups::of(&shape(&x), layout);
        let (gamma, beta) = (has_gamma.then_some(&gamma), has_beta.then_some(&beta));
        let running =
            (statistics == Statistics::Running).then_some((&running_mean, &running_var, update));
        match burn::backend::TensorMetadata::dtype(&x) {
            DType::F32 => forward::<f32>(&x, gamma, beta, running, groups, epsilon),
            DType::F64 => forward::<f64>(&x, gamma, beta, running, groups, epsilon),
            other => cpu::unsupported(other),
        }
    }

    fn normalize_backward(
        x: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        has_gamma: bool,
        layout: Layout,
        dy: FloatTensor<Self>,
    ) -> NormGrads<Self> {
        let groups = Groups::of(&shape(&x), layout);
        let gamma = has_gamma.then_some(&gamma);
        match burn::backend::TensorMetadata::dtype(&x) {
            DType::F32 => backward::<f32>(&x, &rstd, gamma, &dy, groups),
            DType::F64 => backward::<f64>(&x, &rstd, gamma, &dy, groups),
            other => cpu::unsupported(other),
        }
    }
}
