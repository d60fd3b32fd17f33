//! [`NormOps`] for Burn's CubeCL backend (wgpu, and any other CubeCL
//! runtime the application compiles in): launches the kernels of
//! [`cube_kernels`](super::cube_kernels).

use super::cube_kernels::{self, MAX_CUBE_SIZE, Teams, rows_per_block};
use super::layout::Groups;
use super::layout::{Grouping, Layout};
use super::{NormGrads, NormOps, Normalized};
use burn::backend::TensorMetadata;
use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::{CubeCount, CubeDim};

/// The largest cube count of one grid dimension that every runtime takes.
const MAX_GRID: usize = 65_535;

/// One cube per `per_cube` groups, over two grid dimensions when there
/// are many.
fn cubes_for(groups: usize, teams: Teams) -> CubeCount {
    let cubes = groups.div_ceil(teams.per_cube as usize);
    let x = cubes.clamp(1, MAX_GRID);
    CubeCount::Static(x as u32, cubes.div_ceil(x).max(1) as u32, 1)
}

fn check_dtype(dtype: DType) {
    assert!(
        dtype == DType::F32,
        "burn-norm's CubeCL kernels take f32 tensors, got {dtype:?}"
    );
}

/// BatchNorm's channel statistics are one channel per group: the kernel
/// writes `dgamma[g]` for group `g`.
fn check_layout(layout: &Groups) {
    assert!(
        layout.layout.grouping != Grouping::Channels || layout.k == 1,
        "burn-norm's CubeCL kernels group channels over the batch one at a time, got {} per group",
        layout.k
    );
}

fn empty(like: &CubeTensor, shape: Vec<usize>) -> CubeTensor {
    empty_device_dtype(
        like.client.clone(),
        like.device.clone(),
        Shape::from(shape),
        like.dtype,
    )
}

impl NormOps for CubeBackend {
    fn normalize(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        [has_gamma, has_beta]: [bool; 2],
        norm: Layout,
        epsilon: f64,
    ) -> Normalized<Self> {
        check_dtype(x.dtype);
        let layout = Groups::of(x.shape().as_slice(), norm);
        check_layout(&layout);
        let Groups { c, k, s, .. } = layout;
        let groups = layout.count();
        let teams = Teams::new(groups, layout.size());
        let (x, gamma, beta) = (
            into_contiguous(x),
            into_contiguous(gamma),
            into_contiguous(beta),
        );
        let y = empty(&x, layout.shape());
        let (mean, var, rstd) = (
            empty(&x, vec![groups]),
            empty(&x, vec![groups]),
            empty(&x, vec![groups]),
        );
        cube_kernels::normalize_forward::launch(
            &x.client,
            cubes_for(groups, teams),
            CubeDim::new_1d(teams.units()),
            x.clone().into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            mean.clone().into_tensor_arg(),
            var.clone().into_tensor_arg(),
            rstd.clone().into_tensor_arg(),
            groups as u32,
            c as u32,
            k as u32,
            s as u32,
            epsilon as f32,
            norm,
            has_gamma,
            has_beta,
            teams.units(),
            teams.team,
            teams.held,
            dtype_to_storage_type(x.dtype),
        );
        Normalized {
            output: y,
            mean,
            var,
            rstd,
        }
    }

    fn normalize_backward(
        x: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        has_gamma: bool,
        norm: Layout,
        dy: FloatTensor<Self>,
    ) -> NormGrads<Self> {
        check_dtype(x.dtype);
        let layout = Groups::of(x.shape().as_slice(), norm);
        check_layout(&layout);
        let Groups { n, c, k, s, .. } = layout;
        let per_channel = norm.grouping == Grouping::Channels;
        let (groups, params) = (layout.count(), layout.params());
        let teams = Teams::new(groups, layout.size());
        let (x, rstd, gamma, dy) = (
            into_contiguous(x),
            into_contiguous(rstd),
            into_contiguous(gamma),
            into_contiguous(dy),
        );
        let dx = empty(&x, layout.shape());
        // For BatchNorm's channels the kernel writes the parameter gradients
        // itself; otherwise it leaves each group's centre for the sums below.
        let (dgamma, dbeta, centers) = if per_channel {
            (empty(&x, vec![c]), empty(&x, vec![c]), empty(&x, vec![1]))
        } else {
            (
                empty(&x, vec![1]),
                empty(&x, vec![1]),
                empty(&x, vec![2 * groups]),
            )
        };
        cube_kernels::normalize_backward::launch(
            &x.client,
            cubes_for(groups, teams),
            CubeDim::new_1d(teams.units()),
            x.clone().into_tensor_arg(),
            rstd.clone().into_tensor_arg(),
            gamma.into_tensor_arg(),
            dy.clone().into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            dgamma.clone().into_tensor_arg(),
            dbeta.clone().into_tensor_arg(),
            centers.clone().into_tensor_arg(),
            groups as u32,
            c as u32,
            k as u32,
            s as u32,
            norm,
            has_gamma,
            teams.units(),
            teams.team,
            teams.held,
            dtype_to_storage_type(x.dtype),
        );
        if per_channel {
            return NormGrads { dx, dgamma, dbeta };
        }
        let total = |partial: CubeTensor, blocks: usize| {
            let out = empty(&partial, vec![params]);
            cube_kernels::column_sums::launch(
                &partial.client,
                CubeCount::Static(params.div_ceil(MAX_CUBE_SIZE as usize).max(1) as u32, 1, 1),
                CubeDim::new_1d(MAX_CUBE_SIZE),
                partial.clone().into_tensor_arg(),
                out.clone().into_tensor_arg(),
                blocks as u32,
                params as u32,
                dtype_to_storage_type(partial.dtype),
            );
            out
        };
        if norm.grouping == Grouping::SampleChannels {
            // One sum per channel and sample, then the samples added.
            let runs = n * c;
            let (partial_gamma, partial_beta) = (empty(&x, vec![n, c]), empty(&x, vec![n, c]));
            let cubes = runs.div_ceil(MAX_CUBE_SIZE as usize).max(1);
            let grid_x = cubes.clamp(1, MAX_GRID);
            cube_kernels::channel_parameter_grads::launch(
                &x.client,
                CubeCount::Static(grid_x as u32, cubes.div_ceil(grid_x) as u32, 1),
                CubeDim::new_1d(MAX_CUBE_SIZE),
                x.clone().into_tensor_arg(),
                rstd.into_tensor_arg(),
                centers.into_tensor_arg(),
                dy.into_tensor_arg(),
                partial_gamma.clone().into_tensor_arg(),
                partial_beta.clone().into_tensor_arg(),
                runs as u32,
                k as u32,
                s as u32,
                dtype_to_storage_type(x.dtype),
            );
            return NormGrads {
                dx,
                dgamma: total(partial_gamma, n),
                dbeta: total(partial_beta, n),
            };
        }
        // Column sums in two stages: blocks of rows, then the blocks.
        let per_block = rows_per_block(groups);
        let blocks = groups.div_ceil(per_block).max(1);
        let (partial_gamma, partial_beta) = (
            empty(&x, vec![blocks, params]),
            empty(&x, vec![blocks, params]),
        );
        cube_kernels::row_parameter_grads::launch(
            &x.client,
            CubeCount::Static(
                params.div_ceil(MAX_CUBE_SIZE as usize).max(1) as u32,
                blocks as u32,
                1,
            ),
            CubeDim::new_1d(MAX_CUBE_SIZE),
            x.clone().into_tensor_arg(),
            rstd.into_tensor_arg(),
            centers.into_tensor_arg(),
            dy.into_tensor_arg(),
            partial_gamma.clone().into_tensor_arg(),
            partial_beta.clone().into_tensor_arg(),
            groups as u32,
            params as u32,
            per_block as u32,
            dtype_to_storage_type(x.dtype),
        );
        NormGrads {
            dx,
            dgamma: total(partial_gamma, blocks),
            dbeta: total(partial_beta, blocks),
        }
    }
}
