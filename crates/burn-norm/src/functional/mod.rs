//! The math of every layer in this crate, as plain functions on tensors.
//!
//! The modules ([`BatchNorm`](crate::BatchNorm), [`LayerNorm`](crate::LayerNorm))
//! only hold state and configuration and call into here. All layers share one
//! core ([`moments`], [`standardize`], [`affine`]): a layer is a choice of the
//! axes to reduce and of the shape its parameters broadcast to.
//!
//! Composed from Burn's tensor operations, these functions run on every
//! backend with gradients from Burn's autodiff; where [`crate::backend`]
//! has a fused kernel, LayerNorm and training BatchNorm call it instead (one
//! operation, handwritten backward, the same formula).

mod accumulation;
mod batch_norm;
mod core;
mod layer_norm;

pub use accumulation::accumulation_dtype;
pub use batch_norm::{BatchStatistics, batch_norm, batch_norm_train, update_running_statistics};
pub use core::{Moments, affine, moments, standardize};
pub use layer_norm::layer_norm;
