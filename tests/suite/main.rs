//! The burn-norm test suite: one binary, so that Burn is linked once.
//!
//! Every test that touches tensors runs on each backend: `flex`, `ndarray`,
//! and `wgpu` (with the `wgpu` feature; on machines without a GPU it runs on
//! the CPU through Mesa's lavapipe, so shapes are kept small).

#[macro_use]
mod common;

mod absent_parameters;
mod checkpoints;
mod drop_in;
mod dtypes;
mod empty;
mod errors;
mod fold;
mod fused;
mod fusion_neighbours;
mod ghost;
mod gradcheck;
mod hostile;
mod nonfinite;
mod parity;
mod records;
mod renorm;
mod scalers;
mod statistics;
mod synced;
mod views;
