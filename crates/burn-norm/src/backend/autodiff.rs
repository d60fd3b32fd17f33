//! [`NormOps`] for the autodiff backend: one recorded operation with a
//! handwritten backward that calls the inner backend's kernel.

use super::layout::Layout;
use super::{NormGrads, NormOps, Normalized, RunningUpdate, Statistics};
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;

/// The autodiff backend's tensor (its type is not exported by name).
type AutodiffTensor<B, C> = FloatTensor<Autodiff<B, C>>;

/// The backward step.
#[derive(Debug)]
struct NormalizeBackward;

/// What the gradient needs and nothing more: the input, the per-group
/// `rstd` and `gamma` (the mean is recomputed from the input, see the CPU
/// kernel's notes), and the layout.
#[derive(Clone, Debug)]
struct SavedForBackward<B: NormOps> {
    x: FloatTensor<B>,
    rstd: FloatTensor<B>,
    gamma: FloatTensor<B>,
    has_gamma: bool,
    layout: Layout,
}

impl<B: NormOps> Backward<B, 3> for NormalizeBackward {
    type State = SavedForBackward<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let SavedForBackward {
            x,
            rstd,
            gamma,
            has_gamma,
            layout,
        } = ops.state;
        let NormGrads { dx, dgamma, dbeta } =
            B::normalize_backward(x, rstd, gamma, has_gamma, layout, dy);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, dgamma);
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, dbeta);
        }
    }
}

impl<B: NormOps, C: CheckpointStrategy> NormOps for Autodiff<B, C> {
    fn normalize(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        running_mean: FloatTensor<Self>,
        running_var: FloatTensor<Self>,
        [has_gamma, has_beta]: [bool; 2],
        layout: Layout,
        epsilon: f64,
        statistics: Statistics,
        running: RunningUpdate,
    ) -> Normalized<Self> {
        // An absent parameter's stand-in must not receive a gradient: its
        // place among the parents goes to an untracked leaf.
        let untracked = || AutodiffTensor::<B, C>::new(x.primitive().clone()).node();
        let gamma_node = if has_gamma { gamma.node() } else { untracked() };
        let beta_node = if has_beta { beta.node() } else { untracked() };
        let constant = AutodiffTensor::<B, C>::new;
        let affine = [has_gamma, has_beta];
        // Running statistics are buffers, never differentiated.
        let (running_mean, running_var) =
            (running_mean.into_primitive(), running_var.into_primitive());

        match NormalizeBackward
            .prepare::<C>([x.node(), gamma_node, beta_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
                // The backward reads `rstd`, whatever the caller does.
                let statistics = match statistics {
                    Statistics::Running => Statistics::Running,
                    Statistics::Returned | Statistics::Discarded => Statistics::Returned,
                };
                let out = B::normalize(
                    x.clone(),
                    gamma.clone(),
                    beta.into_primitive(),
                    running_mean,
                    running_var,
                    affine,
                    layout,
                    epsilon,
                    statistics,
                    running,
                );
                let saved = SavedForBackward {
                    x,
                    rstd: out.rstd.clone(),
                    gamma,
                    has_gamma,
                    layout,
                };
                Normalized {
                    output: prep.finish(saved, out.output),
                    mean: constant(out.mean),
                    var: constant(out.var),
                    rstd: constant(out.rstd),
                }
            }
            OpsKind::UnTracked(prep) => {
                let out = B::normalize(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    running_mean,
                    running_var,
                    affine,
                    layout,
                    epsilon,
                    statistics,
                    running,
                );
                Normalized {
                    output: prep.finish(out.output),
                    mean: constant(out.mean),
                    var: constant(out.var),
                    rstd: constant(out.rstd),
                }
            }
        }
    }

    /// Computed on the inner backend; the result is not differentiable
    /// again (no double backward through the fused operation).
    fn normalize_backward(
        x: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        has_gamma: bool,
        layout: Layout,
        dy: FloatTensor<Self>,
    ) -> NormGrads<Self> {
        let grads = B::normalize_backward(
            x.into_primitive(),
            rstd.into_primitive(),
            gamma.into_primitive(),
            has_gamma,
            layout,
            dy.into_primitive(),
        );
        let constant = AutodiffTensor::<B, C>::new;
        NormGrads {
            dx: constant(grads.dx),
            dgamma: constant(grads.dgamma),
            dbeta: constant(grads.dbeta),
        }
    }
}
