//! The math of every layer in this crate, as plain functions on tensors.
//!
//! The modules ([`BatchNorm`](crate::BatchNorm), [`LayerNorm`](crate::LayerNorm))
//! only hold state and configuration and call into here. All layers share one
//! core ([`moments`], [`standardize`], [`affine`]): a layer is a choice of the
//! axes to reduce and of the shape its parameters broadcast to.
//!
//! Gradients come from Burn's autodiff through these composed tensor
//! operations, on every backend.

mod accumulation;
mod batch_norm;
mod core;
mod layer_norm;

pub use accumulation::accumulation_dtype;
pub use batch_norm::{BatchStatistics, batch_norm, batch_norm_train, update_running_statistics};
pub use core::{Moments, affine, moments, standardize};
pub use layer_norm::layer_norm;
