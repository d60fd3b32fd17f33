//! [`CombineOps`]: a per-channel sum taken over data-parallel replicas, as
//! one differentiable operation whose backward sums the gradient over the
//! same replicas. What a synchronized BatchNorm needs and Burn's autodiff
//! cannot compose: the backward must talk to the other replicas.

// Burn 0.22 deprecates ndarray in favour of flex but still ships it.
#![allow(deprecated)]

// The `Fusion` arm of the extension macro names `burn::backend::fusion`;
// see `fusion.rs`.
#[cfg(feature = "wgpu")]
use super::fusion::burn;
use crate::sync;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata, backend_extension};
use burn::tensor::TensorData;

/// The sum over replicas as a backend operation. The forward's sum is
/// taken before the call (on the host, through the replica's
/// [`Combiner`](sync::Combiner)) and passed in as `combined`; the
/// operation returns it and, on the autodiff backend, records that the
/// gradient of `local` is the sum of the output's gradient over the
/// replicas of `replica` (see [`sync::SyncReplica`]).
///
/// flex, ndarray and wgpu (with or without Burn's fusion): the replicas
/// of the in-process combiner are threads of one process; the layer
/// refuses other devices.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(feature = "wgpu"),
    Fusion: cfg(feature = "wgpu"),
    Autodiff
)]
pub trait CombineOps: Backend {
    /// Returns `combined`; see the trait docs.
    #[fusion(dtype = combined, shape = combined)]
    fn combined(
        local: FloatTensor<Self>,
        combined: FloatTensor<Self>,
        replica: u64,
    ) -> FloatTensor<Self>;
}

/// The inner backends only pass the combined value on: the sum itself is
/// taken on the host, and only the autodiff backend records anything.
macro_rules! passes_combined_on {
    ($($feature:literal => $backend:ty),* $(,)?) => {$(
        #[cfg(feature = $feature)]
        impl CombineOps for $backend {
            fn combined(
                _local: FloatTensor<Self>,
                combined: FloatTensor<Self>,
                _replica: u64,
            ) -> FloatTensor<Self> {
                combined
            }
        }
    )*};
}

passes_combined_on!(
    "flex" => burn::backend::flex::Flex,
    "ndarray" => burn::backend::ndarray::NdArray,
    "wgpu" => burn_cubecl::CubeBackend,
);

/// `d local = Σ_replicas d out`.
#[derive(Debug)]
struct CombineBackward;

impl<B: Backend> Backward<B, 1> for CombineBackward {
    /// The replica's number.
    type State = u64;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let Some(node) = node else {
            return;
        };
        let (shape, dtype, device) = (grad.shape(), grad.dtype(), grad.device());
        let local = burn::tensor::read_sync(B::float_into_data(grad))
            .expect("burn-norm: read a gradient for the replicas' sum")
            .convert::<f64>()
            .to_vec::<f64>()
            .expect("f64 values");
        let total = sync::combiner(ops.state).sum(&local);
        let data = TensorData::new(total, shape).convert_dtype(dtype);
        grads.register::<B>(node.id, B::float_from_data(data, &device));
    }
}

impl<B: CombineOps, C: CheckpointStrategy> CombineOps for Autodiff<B, C> {
    fn combined(
        local: FloatTensor<Self>,
        combined: FloatTensor<Self>,
        replica: u64,
    ) -> FloatTensor<Self> {
        let combined = combined.into_primitive();
        match CombineBackward
            .prepare::<C>([local.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(replica, combined),
            OpsKind::UnTracked(prep) => prep.finish(combined),
        }
    }
}
