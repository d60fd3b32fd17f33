//! The math of every layer in this crate, as plain functions on tensors.
//!
//! The modules ([`BatchNorm`](crate::BatchNorm), [`LayerNorm`](crate::LayerNorm),
//! [`RmsNorm`](crate::RmsNorm), [`GroupNorm`](crate::GroupNorm),
//! [`InstanceNorm`](crate::InstanceNorm)) only hold state and configuration
//! and call into here. Every layer is one call of a single helper that
//! normalizes the groups a [`Layout`](crate::backend::Layout) describes: the
//! fused kernel where the backend has one ([`crate::backend`]), else the
//! shared core ([`moments`], [`standardize`], [`affine`]) composed from
//! Burn's tensor operations and differentiated by Burn's autodiff. Both
//! compute the same formula.

mod accumulation;
mod batch_norm;
mod core;
mod group_norm;
mod grouped;
mod layer_norm;
mod renorm;
mod running;
mod synced;

pub use accumulation::accumulation_dtype;
pub use batch_norm::{
    BatchStatistics, RunningBatch, batch_norm, batch_norm_train, batch_norm_train_running,
    ghost_batch_norm_train,
};
pub(crate) use core::has_no_values;
pub use core::{Moments, affine, moments, standardize};
pub use group_norm::{
    InstanceStatistics, group_norm, instance_norm_train, instance_norm_train_running,
};
pub use layer_norm::{layer_norm, rms_norm};
pub use renorm::{RenormLimits, RenormStatistics, batch_renorm_train};
pub use running::{ChannelMoments, RunningMoments, update_running_statistics};
pub use synced::batch_norm_train_synced;
