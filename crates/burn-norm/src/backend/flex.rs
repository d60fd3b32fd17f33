//! [`NormOps`] for the flex CPU backend: the slice kernels of [`cpu`]
//! on the tensors' storage.

use super::cpu::{self, Real};
use super::layout::{Groups, Layout};
use super::{NormGrads, NormOps, Normalized, RunningUpdate, Statistics};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Element, TensorData};

/// The storage of a contiguous tensor as a slice of `T`.
fn slice<T: Real + Element + bytemuck::Pod>(t: &FlexTensor) -> &[T] {
    t.as_slice::<T>()
        .expect("a contiguous tensor of the checked dtype")
}

fn tensor<T: Element>(values: Vec<T>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn forward<T: Real + Element + bytemuck::Pod>(
    x: FlexTensor,
    gamma: Option<FlexTensor>,
    beta: Option<FlexTensor>,
    running: Option<(FlexTensor, FlexTensor, RunningUpdate)>,
    groups: Groups,
    epsilon: f64,
) -> Normalized<Flex> {
    let x = x.to_contiguous();
    let (gamma, beta) = (
        gamma.map(|g| g.to_contiguous()),
        beta.map(|b| b.to_contiguous()),
    );
    let shape = x.layout().shape().to_vec();
    let (y, mut stats) = cpu::forward::<T>(
        slice(&x),
        groups,
        gamma.as_ref().map(slice),
        beta.as_ref().map(slice),
        epsilon,
    );
    if let Some((mean, var, update)) = running {
        let (mean, var) = (mean.to_contiguous(), var.to_contiguous());
        stats.fold_into_running(slice(&mean), slice(&var), update);
    }
    let k = groups.count();
    Normalized {
        output: tensor(y, shape),
        mean: tensor(stats.mean, vec![k]),
        var: tensor(stats.var, vec![k]),
        rstd: tensor(stats.rstd, vec![k]),
    }
}

fn backward<T: Real + Element + bytemuck::Pod>(
    x: FlexTensor,
    rstd: FlexTensor,
    gamma: Option<FlexTensor>,
    mut dy: FlexTensor,
    groups: Groups,
) -> NormGrads<Flex> {
    let (x, rstd) = (x.to_contiguous(), rstd.to_contiguous());
    let gamma = gamma.map(|g| g.to_contiguous());
    let shape = x.layout().shape().to_vec();
    let numel = x.layout().num_elements();
    let p = groups.params();
    let (x_values, rstd_values, gamma_values) =
        (slice(&x), slice(&rstd), gamma.as_ref().map(slice));
    // The upstream gradient is usually owned by this step alone: then dx
    // overwrites it instead of taking fresh pages.
    let dense = dy.layout().contiguous_offsets() == Some((0, numel));
    if dense && let Some(dy_dx) = dy.try_storage_mut::<T>().filter(|v| v.len() == numel) {
        let (dgamma, dbeta) =
            cpu::backward_in_place(x_values, groups, rstd_values, gamma_values, dy_dx);
        return NormGrads {
            dx: dy,
            dgamma: tensor(dgamma, vec![p]),
            dbeta: tensor(dbeta, vec![p]),
        };
    }
    let dy = dy.to_contiguous();
    let (dx, dgamma, dbeta) =
        cpu::backward(x_values, groups, rstd_values, gamma_values, slice(&dy));
    NormGrads {
        dx: tensor(dx, shape),
        dgamma: tensor(dgamma, vec![p]),
        dbeta: tensor(dbeta, vec![p]),
    }
}

impl NormOps for Flex {
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
        let groups = Groups::of(x.layout().shape().as_slice(), layout);
        let (gamma, beta) = (has_gamma.then_some(gamma), has_beta.then_some(beta));
        let running =
            (statistics == Statistics::Running).then_some((running_mean, running_var, update));
        match x.dtype() {
            DType::F32 => forward::<f32>(x, gamma, beta, running, groups, epsilon),
            DType::F64 => forward::<f64>(x, gamma, beta, running, groups, epsilon),
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
        let groups = Groups::of(x.layout().shape().as_slice(), layout);
        let gamma = has_gamma.then_some(gamma);
        match x.dtype() {
            DType::F32 => backward::<f32>(x, rstd, gamma, dy, groups),
            DType::F64 => backward::<f64>(x, rstd, gamma, dy, groups),
            other => cpu::unsupported(other),
        }
    }
}
