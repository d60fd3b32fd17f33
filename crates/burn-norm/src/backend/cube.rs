//! [`NormOps`] for Burn's CubeCL backend (wgpu, and any other CubeCL
//! runtime the application compiles in): launches the kernels of
//! [`cube_kernels`](super::cube_kernels).

use super::cube_blocks::{self, BLOCK_VALUES, COEFFICIENTS, MERGE_UNITS, PARTIALS};
use super::cube_kernels::{
    self, MAX_CUBE_SIZE, MAX_HELD, MAX_HELD_BACKWARD, MAX_HELD_FORWARD, MAX_SUMMED_CHANNELS,
    ParameterSums, Teams, rows_per_block, sum_lanes,
};
use super::layout::Groups;
use super::layout::{Centering, Grouping, Layout};
use super::submission::submit;
use super::{NormGrads, NormOps, Normalized, RunningUpdate, Statistics, settings};
use burn::backend::TensorMetadata;
use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::features::Plane;
use cubecl::prelude::TensorArg;
use cubecl::server::MemoryLayoutDescriptor;
use cubecl::{CubeCount, CubeDim};
use std::sync::OnceLock;

/// Values per vector of [`cube_kernels::row_parameter_grads`] (rows too
/// long to hold in registers, or `BURN_NORM_ONE_PASS=0`) for rows whose
/// other passes take vectors of `vector`: 1, or `vector` where
/// `BURN_NORM_ROW_SUM_VECTORS=1`. On lavapipe vectors made LayerNorm's and
/// RMSNorm's training steps 4-5% slower (it runs consecutive invocations as
/// the lanes of one SIMD register, so single values are already a vector
/// load there); on a GPU single-value loads move less (an H100: a CubeCL
/// copy at 1.63-1.68 TB/s against 2.56-2.69 with vectors of 4), so
/// `benches/gpu.sh` times both (docs/benchmarks.md, eighth session).
fn row_sum_vector(vector: usize) -> usize {
    static VECTORS: OnceLock<bool> = OnceLock::new();
    if *VECTORS.get_or_init(|| settings::on("BURN_NORM_ROW_SUM_VECTORS")) {
        vector
    } else {
        1
    }
}

/// Whether the backward takes the parameter gradients' sums in the same
/// pass as `dx` where it can (rows held in registers sweep them,
/// [`ParameterSums::Swept`]; GroupNorm's and InstanceNorm's groups of
/// [`summed_channels`] channels or fewer sum each channel,
/// [`ParameterSums::PerChannel`]), unless
/// `BURN_NORM_ONE_PASS=0`: the older second pass over `x` and `dy`, for
/// comparison (`benches/gpu.sh` times both).
fn one_pass() -> bool {
    static ONE_PASS: OnceLock<bool> = OnceLock::new();
    *ONE_PASS.get_or_init(|| !settings::off("BURN_NORM_ONE_PASS"))
}

/// Most channels per group of GroupNorm's and InstanceNorm's whose
/// parameter sums the backward takes in the same pass as `dx`
/// ([`ParameterSums::PerChannel`]; with [`one_pass`]): 1, InstanceNorm's
/// group, whose sums are the team sums the kernel takes anyway; or
/// `BURN_NORM_SUMMED_CHANNELS` (up to [`MAX_SUMMED_CHANNELS`]) where set.
/// A group of `k` channels takes `2k` team sums more; on an H200
/// (2026-11-28, 100 layers per read-back) GroupNorm [64, 128, 56, 56]'s
/// training step (4 channels per group) took 0.72-0.75 ms that way against
/// 0.61-0.63 ms with the second pass over `x` and `dy`
/// ([`cube_kernels::channel_parameter_grads`]); `benches/gpu.sh` times both.
fn summed_channels() -> usize {
    static CHANNELS: OnceLock<usize> = OnceLock::new();
    *CHANNELS.get_or_init(|| {
        settings::count("BURN_NORM_SUMMED_CHANNELS", 1..=MAX_SUMMED_CHANNELS).unwrap_or(1)
    })
}

/// Most vectors per unit of `x` and of `dy` that the backward holds in
/// registers: [`MAX_HELD_BACKWARD`], or `BURN_NORM_BACKWARD_HELD` (1 to
/// it) where set, for comparison on a GPU (8 was the limit before
/// 2026-11-27's thirteenth session; on an H200, 2026-11-28, LayerNorm
/// [32768, 768]'s training step took 0.534 ms with 8 and 0.538 with 16).
fn backward_held() -> usize {
    static HELD: OnceLock<usize> = OnceLock::new();
    *HELD.get_or_init(|| {
        settings::count("BURN_NORM_BACKWARD_HELD", 1..=MAX_HELD_BACKWARD)
            .unwrap_or(MAX_HELD_BACKWARD)
    })
}

/// Units a swept backward aims to launch: enough to fill a large GPU (an
/// H100 keeps 132 x 2,048 resident), so that a team takes several rows
/// only where there are more. `BURN_NORM_SWEEP_UNITS` sets another (CI
/// sets a small one, so that the tests' small shapes sweep many rows per
/// team).
fn sweep_units() -> usize {
    static UNITS: OnceLock<usize> = OnceLock::new();
    *UNITS.get_or_init(|| {
        settings::count("BURN_NORM_SWEEP_UNITS", 1..=usize::MAX).unwrap_or(SWEEP_UNITS)
    })
}

/// [`sweep_units`] unless told otherwise.
const SWEEP_UNITS: usize = 1 << 18;

/// Most rows one team sweeps: the kernel is written out once per row
/// (see `normalize_backward`), and lavapipe took 9x as long to compile the
/// tests' kernels with 16 as with one.
const MAX_SWEEP_STEPS: usize = 8;

/// Rows per team of a swept backward of `groups` rows that aims at
/// launching `units` units.
fn sweep_steps(groups: usize, teams: Teams, units: usize) -> usize {
    (groups * teams.team as usize / units).clamp(1, MAX_SWEEP_STEPS)
}

/// The largest cube count of one grid dimension that every runtime takes.
const MAX_GRID: usize = 65_535;

/// `cubes` cubes, over two grid dimensions when there are many (the
/// kernels number them `CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X`).
fn grid(cubes: usize) -> CubeCount {
    layered_grid(cubes, 1)
}

/// [`grid`]'s cubes in each of `layers` layers (`CUBE_POS_Z`).
fn layered_grid(cubes: usize, layers: usize) -> CubeCount {
    let x = cubes.clamp(1, MAX_GRID);
    CubeCount::Static(
        x as u32,
        cubes.div_ceil(x).max(1) as u32,
        layers.max(1) as u32,
    )
}

/// One cube per `per_cube` groups.
fn cubes_for(groups: usize, teams: Teams) -> CubeCount {
    grid(groups.div_ceil(teams.per_cube as usize))
}

fn check_dtype(dtype: DType) {
    assert!(
        dtype == DType::F32,
        "burn-norm's CubeCL kernels take f32 tensors, got {dtype:?}"
    );
}

/// Uninitialized contiguous tensors of `shapes`, with `like`'s dtype and
/// device, in one request to the device.
///
/// CubeCL runs every allocation request, like every launch, as a task on
/// its device's thread, and those tasks are most of our operations' host
/// time: on lavapipe, a chain of 100 LayerNorms [8, 768] whose kernel
/// launch was skipped still took 240-280 us per layer with four requests,
/// 80 us with one. One request is one buffer, freed when the last of its
/// tensors is, and none of them can be written in place by a later
/// operation: a group holds tensors of one lifetime (an operation's
/// statistics, its temporaries), never an output that flows on.
fn empty_group<const K: usize>(like: &CubeTensor, shapes: [Vec<usize>; K]) -> [CubeTensor; K] {
    let size = like.dtype.size();
    let descriptors = shapes
        .iter()
        .map(|shape| MemoryLayoutDescriptor::contiguous(Shape::from(shape.clone()), size))
        .collect();
    let layouts = like.client.empty_tensors(descriptors);
    let mut tensors = shapes.into_iter().zip(layouts).map(|(shape, layout)| {
        CubeTensor::new_contiguous(
            like.client.clone(),
            like.device.clone(),
            Shape::from(shape),
            layout.memory,
            like.dtype,
        )
    });
    std::array::from_fn(|_| tensors.next().expect("one layout per shape"))
}

/// An uninitialized contiguous tensor of `shape`, alone in its buffer.
fn empty(like: &CubeTensor, shape: Vec<usize>) -> CubeTensor {
    let [tensor] = empty_group(like, [shape]);
    tensor
}

/// An empty tensor (`[0]`) over `like`'s buffer: what an operation returns
/// for statistics it was told to discard, without a request to the device.
fn no_values(like: &CubeTensor) -> CubeTensor {
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        Shape::from(vec![0]),
        like.handle.clone(),
        like.dtype,
    )
}

/// A parameter slot's tensor, `None` where the parameter is absent. An
/// absent parameter arrives as a stand-in (often `x` itself) that the
/// kernels never read: it is dropped on arrival, so that it neither holds
/// `x`'s buffer (which the output may go over) nor is made contiguous, and
/// its slot is bound to `x` ([`bound`]).
fn parameter((tensor, present): (CubeTensor, bool)) -> Option<CubeTensor> {
    present.then(|| into_contiguous(tensor))
}

/// The tensor to bind in a parameter's slot: the parameter, or `x` in an
/// absent one's.
fn bound(parameter: Option<CubeTensor>, x: &CubeTensor) -> CubeTensor {
    parameter.unwrap_or_else(|| x.clone())
}

/// Where a kernel writes an output of its input's shape.
enum Output {
    /// Over the input, which nothing else holds (an inference forward's
    /// input, consumed by the layer): no allocation, and the output is
    /// written where the input was read.
    OverInput(CubeTensor),
    /// A new buffer.
    New(CubeTensor),
}

impl Output {
    /// Over `input` where nothing else holds its buffer, else new. The
    /// kernels read each value before they write it, in the same unit.
    fn for_input(input: &CubeTensor) -> Self {
        if input.can_mut() {
            Output::OverInput(input.clone())
        } else {
            Output::New(empty(input, input.shape().to_vec()))
        }
    }

    /// The launch argument, with the input at position `input` of the
    /// kernel's inputs.
    fn arg(&self, input: usize) -> TensorArg {
        match self {
            Output::OverInput(tensor) => tensor.as_tensor_alias(input),
            Output::New(tensor) => tensor.clone().into_tensor_arg(),
        }
    }

    fn into_tensor(self) -> CubeTensor {
        match self {
            Output::OverInput(tensor) | Output::New(tensor) => tensor,
        }
    }
}

/// How the kernels' teams add up their values: the plane size, where the
/// device has plane (subgroup) operations with one fixed plane size that
/// divides `team`, else 0 (a tree in shared memory). An NVIDIA GPU through
/// Vulkan has planes of 32.
///
/// CubeCL leaves plane operations off on CPU adapters, so lavapipe takes
/// the shared-memory path, though its planes are there (8 wide).
/// `BURN_NORM_PLANE_REDUCE=1` takes them where the adapter reports one
/// fixed size, so that CI tests the planes' path too on lavapipe;
/// `BURN_NORM_SHARED_REDUCE=1` forces shared memory, so that both paths can
/// be tested and timed on one GPU.
fn plane_for(x: &CubeTensor, team: u32) -> u32 {
    static SHARED: OnceLock<bool> = OnceLock::new();
    static PLANES: OnceLock<bool> = OnceLock::new();
    if *SHARED.get_or_init(|| settings::on("BURN_NORM_SHARED_REDUCE")) {
        return 0;
    }
    let properties = x.client.properties();
    let (min, max) = (
        properties.hardware.plane_size_min,
        properties.hardware.plane_size_max,
    );
    let forced = || *PLANES.get_or_init(|| settings::on("BURN_NORM_PLANE_REDUCE"));
    if (properties.features.plane.contains(Plane::Ops) || forced())
        && min == max
        && min > 0
        && team.is_multiple_of(min)
    {
        min
    } else {
        0
    }
}

/// Values per vector where runs of `s` contiguous values are read and
/// written: 4 where they split into whole vectors of 4, else 2 or 1.
fn vector_for(s: usize) -> usize {
    [4, 2, 1]
        .into_iter()
        .find(|&v| s.is_multiple_of(v))
        .unwrap_or(1)
}

/// One unit per vector of `values` values.
fn elementwise(values: usize, vector: usize) -> CubeCount {
    grid((values / vector).div_ceil(MAX_CUBE_SIZE as usize))
}

/// How groups go through [`cube_blocks`] (blocks of a group in parallel,
/// merged), where they do: a training BatchNorm's channels of more values
/// than one cube holds in registers, GroupNorm's and InstanceNorm's
/// groups that `teams` would stream, where their channels have at least
/// [`MIN_RUN_VALUES`] values, and LayerNorm's and RMSNorm's rows that
/// `teams` would stream; the last two where the groups are fewer than
/// [`BLOCKS_BELOW_GROUPS`];
/// not past one launch's grid (more than 65,535 runs, as BatchNorm1d over
/// 100,000 features, or of blocks per run), nor with
/// `BURN_NORM_GROUP_BLOCKS=0`. Those groups take one team each.
fn blocks_for(layout: &Groups, teams: Teams) -> Option<Blocks> {
    if wants_blocks(layout, teams) && group_blocks() {
        Blocks::of(layout, block_cubes())
    } else {
        None
    }
}

/// Whether [`blocks_for`] cuts `layout`'s groups into blocks, settings
/// aside.
fn wants_blocks(layout: &Groups, teams: Teams) -> bool {
    match layout.layout.grouping {
        Grouping::Channels => layout.size() > BLOCK_VALUES,
        Grouping::SampleChannels { .. } => {
            layout.layout.centering == Centering::Mean
                && teams.held == 0
                && layout.s >= MIN_RUN_VALUES
                && layout.count() < BLOCKS_BELOW_GROUPS
        }
        Grouping::Rows { .. } => teams.held == 0 && layout.count() < BLOCKS_BELOW_GROUPS,
    }
}

/// Groups (rows, or GroupNorm's and InstanceNorm's groups of a sample)
/// from which streamed groups take one team each rather than blocks: as
/// many teams as [`BLOCK_CUBES`] blocks, which keep a GPU busy alone, and
/// their passes after the first re-read a group that one cube streams (at
/// most a few hundred kilobytes) while the blocks' apply stage reads the
/// input again from memory and their merge is one launch more. A LayerNorm
/// over a whole `[C, H, W]` sample of a small batch (one row of 262,144
/// values per sample for `[64, 64, 64]`) was a handful of cubes on a GPU
/// of a hundred multiprocessors. On an H200 (2026-11-28, one run each,
/// 100 layers per read-back) the 256 groups of GroupNorm [8, 128, 128, 128]
/// and InstanceNorm [8, 32, 256, 256] took 0.13-0.14 ms forward streamed
/// against 0.15-0.18 in blocks, and 0.48-0.49 ms a training step against
/// 0.53-0.71; LayerNorm's 8 rows of 2,097,152 values 0.14 ms in blocks
/// against 2.7 streamed.
const BLOCKS_BELOW_GROUPS: usize = BLOCK_CUBES;

/// Fewest values per channel for GroupNorm's and InstanceNorm's long groups
/// to go in blocks: a block lies in one channel, so shorter channels would
/// leave most of a block's units idle (a group of many short channels
/// streams instead).
const MIN_RUN_VALUES: usize = BLOCK_VALUES / 2;

/// Whether long groups go in blocks ([`blocks_for`]): yes unless
/// `BURN_NORM_GROUP_BLOCKS=0`, which gives each group one team, as
/// GroupNorm's and InstanceNorm's had before 2026-11-27's fourteenth
/// session (`benches/gpu.sh` times both; CI tests it, BatchNorm's long
/// channels streamed included).
fn group_blocks() -> bool {
    static BLOCKS: OnceLock<bool> = OnceLock::new();
    *BLOCKS.get_or_init(|| !settings::off("BURN_NORM_GROUP_BLOCKS"))
}

/// Vectors per unit of [`cube_blocks`]' blocks for `runs` runs of
/// `run_values` values in vectors of `vector`: the most, up to
/// [`MAX_BLOCK_HELD`], that still gives `cubes` blocks ([`block_cubes`]); at least
/// [`MAX_HELD`] values. Each block costs its cube two team sums (a barrier
/// per level of a tree on lavapipe, where BatchNorm [8, 128, 56, 56]'s
/// forward took 28.7 ms with 8 values per unit and 16.0 with 64), so
/// large blocks where the GPU stays full.
fn block_held(vector: usize, runs: usize, run_values: usize, cubes: usize) -> usize {
    let least = (MAX_HELD / vector).max(1);
    let mut held = MAX_BLOCK_HELD;
    while held > least {
        let blocks = run_values.div_ceil(MAX_CUBE_SIZE as usize * held * vector);
        if runs * blocks >= cubes {
            break;
        }
        held /= 2;
    }
    held.max(least)
}

/// Most vectors per unit of a block.
const MAX_BLOCK_HELD: usize = 16;

/// Blocks that [`block_held`] aims at: about two cubes per multiprocessor
/// of a large GPU (an H100 has 132), each unit with up to 16 loads in
/// flight, or `BURN_NORM_BLOCK_CUBES` where set (CI sets 1, so that the
/// tests' small shapes take the largest blocks too; `benches/gpu.sh`
/// times 1,024, smaller blocks).
fn block_cubes() -> usize {
    static CUBES: OnceLock<usize> = OnceLock::new();
    *CUBES.get_or_init(|| {
        settings::count("BURN_NORM_BLOCK_CUBES", 1..=usize::MAX).unwrap_or(BLOCK_CUBES)
    })
}

/// [`block_cubes`] unless told otherwise.
const BLOCK_CUBES: usize = 256;

/// How [`cube_blocks`] cuts an input's groups.
#[derive(Clone, Copy, Debug)]
struct Blocks {
    /// Runs: BatchNorm's channels (each its `n * s` values), or
    /// GroupNorm's and InstanceNorm's channels of each sample.
    runs: usize,
    /// Values per run.
    run_values: usize,
    /// Values per vector.
    vector: usize,
    /// Vectors per unit of a block.
    held: usize,
    /// Values per block (the last of a run may have fewer).
    block_values: usize,
    /// Blocks per run.
    blocks: usize,
}

impl Blocks {
    /// The blocks of `layout`'s groups, aiming at `cubes` blocks
    /// ([`block_held`]), or `None` past one launch's grid.
    fn of(layout: &Groups, cubes: usize) -> Option<Self> {
        let Groups { n, c, s, .. } = *layout;
        let (runs, run_values) = match layout.layout.grouping {
            Grouping::Channels => (c, n * s),
            _ => (n * c, s),
        };
        // A channel's runs of `s` values split into whole vectors.
        let vector = vector_for(s);
        let held = block_held(vector, runs, run_values, cubes);
        let block_values = MAX_CUBE_SIZE as usize * held * vector;
        let blocks = run_values.div_ceil(block_values);
        (blocks <= MAX_GRID && runs <= MAX_GRID).then_some(Blocks {
            runs,
            run_values,
            vector,
            held,
            block_values,
            blocks,
        })
    }

    /// The shapes of the launches' temporaries: the blocks' partial sums
    /// and the runs' coefficients. They go in one request with the
    /// operation's other small outputs, whose lifetime they share.
    fn temporaries(&self) -> [Vec<usize>; 2] {
        [
            vec![self.runs * self.blocks * PARTIALS],
            vec![self.runs * COEFFICIENTS],
        ]
    }
}

/// The running statistics a forward updates ([`Statistics::Running`]),
/// as the kernels bind them: elsewhere `stand_in`'s buffer in both slots
/// (bound, never read).
struct RunningSlots {
    mean: CubeTensor,
    var: CubeTensor,
    update: RunningUpdate,
    statistics: Statistics,
}

impl RunningSlots {
    fn new(
        running: Option<[CubeTensor; 2]>,
        stand_in: &CubeTensor,
        statistics: Statistics,
        update: RunningUpdate,
    ) -> Self {
        let [mean, var] = running.unwrap_or_else(|| [stand_in.clone(), stand_in.clone()]);
        RunningSlots {
            mean,
            var,
            update,
            statistics,
        }
    }

    /// The update's scalars as the kernels take them, each rounded to f32
    /// as a tensor's scalar operation rounds it: `1 - f`, `f`, `n / (n - 1)`.
    fn scalars(&self) -> [f32; 3] {
        let factor = self.update.factor;
        [
            (1.0 - factor) as f32,
            factor as f32,
            self.update.correction() as f32,
        ]
    }
}

/// The three launches of [`cube_blocks`]: block sums, merge, apply, with
/// `partial` and `coefficients` of [`Blocks::temporaries`]' shapes.
/// Forward (`dy` is `None`): returns `y` and fills `mean`, `var`, `rstd`.
/// Backward: returns `dx` and fills `dgamma`, `dbeta` (BatchNorm's
/// gradients; GroupNorm's and InstanceNorm's `[n, c]` partial sums),
/// reading `rstd`.
#[allow(clippy::too_many_arguments)]
fn groups_in_blocks(
    x: &CubeTensor,
    dy: Option<&CubeTensor>,
    gamma: CubeTensor,
    beta: CubeTensor,
    [has_gamma, has_beta]: [bool; 2],
    layout: &Groups,
    plan: Blocks,
    epsilon: f32,
    [mean, var, rstd, dgamma, dbeta]: [&CubeTensor; 5],
    [partial, coefficients]: [CubeTensor; 2],
    running: &RunningSlots,
) -> CubeTensor {
    let Groups { c, k, s, .. } = *layout;
    let Blocks {
        runs,
        run_values,
        vector,
        held,
        block_values,
        blocks,
    } = plan;
    let norm = layout.layout;
    let backward = dy.is_some();
    // The backward's `dx` may go over `dy`: the block sums have read it
    // when the last launch reads each value and writes its `dx`; not for
    // rows, whose parameter gradients read `dy` after. The forward's `y`
    // does not go over `x`, which is bound as `dy` too.
    let out = match dy {
        Some(dy) if !norm.grouping.is_rows() => Output::for_input(dy),
        _ => Output::New(empty(x, x.shape().to_vec())),
    };
    let dy = dy.unwrap_or(x);
    let dtype = dtype_to_storage_type(x.dtype);
    cube_blocks::block_sums::launch(
        &x.client,
        CubeCount::Static(blocks as u32, runs as u32, 1),
        CubeDim::new_1d(MAX_CUBE_SIZE),
        vector,
        x.clone().into_tensor_arg(),
        dy.clone().into_tensor_arg(),
        gamma.clone().into_tensor_arg(),
        partial.clone().into_tensor_arg(),
        c as u32,
        k as u32,
        (s / vector) as u32,
        norm,
        backward,
        has_gamma,
        held as u32,
        plane_for(x, MAX_CUBE_SIZE),
        dtype,
    );
    let groups = layout.count();
    let [keep, factor, correction] = running.scalars();
    cube_blocks::block_merge::launch(
        &x.client,
        grid(groups),
        CubeDim::new_1d(MERGE_UNITS),
        x.clone().into_tensor_arg(),
        partial.into_tensor_arg(),
        gamma.clone().into_tensor_arg(),
        beta.clone().into_tensor_arg(),
        mean.clone().into_tensor_arg(),
        var.clone().into_tensor_arg(),
        rstd.clone().into_tensor_arg(),
        dgamma.clone().into_tensor_arg(),
        dbeta.clone().into_tensor_arg(),
        coefficients.clone().into_tensor_arg(),
        running.mean.clone().into_tensor_arg(),
        running.var.clone().into_tensor_arg(),
        groups as u32,
        c as u32,
        k as u32,
        s as u32,
        blocks as u32,
        block_values as u32,
        run_values as u32,
        epsilon,
        keep,
        factor,
        correction,
        norm,
        backward,
        has_gamma,
        has_beta,
        running.statistics,
        plane_for(x, MERGE_UNITS),
        dtype,
    );
    cube_blocks::block_apply::launch(
        &x.client,
        elementwise(x.shape().num_elements(), vector),
        CubeDim::new_1d(MAX_CUBE_SIZE),
        vector,
        x.clone().into_tensor_arg(),
        dy.clone().into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        coefficients.into_tensor_arg(),
        out.arg(1),
        c as u32,
        (s / vector) as u32,
        norm,
        backward,
        has_gamma,
        has_beta,
        dtype,
    );
    out.into_tensor()
}

/// [`NormOps::normalize`]'s launches.
#[allow(clippy::too_many_arguments)]
fn launch_forward(
    x: FloatTensor<CubeBackend>,
    gamma: FloatTensor<CubeBackend>,
    beta: FloatTensor<CubeBackend>,
    [running_mean, running_var]: [FloatTensor<CubeBackend>; 2],
    [has_gamma, has_beta]: [bool; 2],
    norm: Layout,
    epsilon: f64,
    statistics: Statistics,
    update: RunningUpdate,
) -> Normalized<CubeBackend> {
    check_dtype(x.dtype);
    let layout = Groups::of(x.shape().as_slice(), norm).compiled();
    let norm = layout.layout;
    let Groups { c, k, s, .. } = layout;
    let groups = layout.count();
    // A channel's run of `s` values (a row, for LayerNorm and RMSNorm)
    // splits into whole vectors: none straddles two channels.
    let vector = vector_for(s);
    let teams = Teams::new(groups, layout.size() / vector, MAX_HELD_FORWARD);
    let x = into_contiguous(x);
    let [gamma, beta] = [(gamma, has_gamma), (beta, has_beta)].map(parameter);
    // Stand-ins are dropped on arrival, as absent parameters are.
    let running = (statistics == Statistics::Running)
        .then(|| [running_mean, running_var].map(into_contiguous));
    if let Some(plan) = blocks_for(&layout, teams) {
        let [gamma, beta] = [gamma, beta].map(|parameter| bound(parameter, &x));
        let running = RunningSlots::new(running, &x, statistics, update);
        // `unused` fills the backward's parameter-gradient slots: four
        // bytes kept with the statistics, as are the temporaries (one
        // request fewer: a few kilobytes, freed with `rstd`).
        let [partial, coefficients] = plan.temporaries();
        let [mean, var, rstd, unused, partial, coefficients] = empty_group(
            &x,
            [
                vec![groups],
                vec![groups],
                vec![groups],
                vec![1],
                partial,
                coefficients,
            ],
        );
        let output = groups_in_blocks(
            &x,
            None,
            gamma,
            beta,
            [has_gamma, has_beta],
            &layout,
            plan,
            epsilon as f32,
            [&mean, &var, &rstd, &unused, &unused],
            [partial, coefficients],
            &running,
        );
        // The blocks' last launch reads the statistics: they are made
        // either way, and come back empty where discarded.
        let [mean, var, rstd] = match statistics {
            Statistics::Returned | Statistics::Running => [mean, var, rstd],
            Statistics::Discarded => [&mean, &var, &rstd].map(no_values),
        };
        return Normalized {
            output,
            mean,
            var,
            rstd,
        };
    }
    // Before any binding of `x` for an absent parameter: `y` goes over `x`
    // where nothing else holds it.
    let y = Output::for_input(&x);
    let [gamma, beta] = [gamma, beta].map(|parameter| bound(parameter, &x));
    let running = RunningSlots::new(running, &gamma, statistics, update);
    // Discarded statistics are not written, and their three slots take
    // `gamma`'s buffer (or `x`'s) rather than one of their own: one request
    // to the device fewer. CubeCL binds every buffer read-write, so sharing
    // one with `y` is allowed, and nothing is written there but `y`.
    let [mean, var, rstd] = match statistics {
        Statistics::Returned | Statistics::Running => {
            empty_group(&x, [vec![groups], vec![groups], vec![groups]])
        }
        Statistics::Discarded => std::array::from_fn(|_| no_values(&gamma)),
    };
    let [keep, factor, correction] = running.scalars();
    cube_kernels::normalize_forward::launch(
        &x.client,
        cubes_for(groups, teams),
        CubeDim::new_1d(teams.units()),
        vector,
        x.clone().into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        y.arg(0),
        mean.clone().into_tensor_arg(),
        var.clone().into_tensor_arg(),
        rstd.clone().into_tensor_arg(),
        running.mean.clone().into_tensor_arg(),
        running.var.clone().into_tensor_arg(),
        groups as u32,
        c as u32,
        k as u32,
        (s / vector) as u32,
        epsilon as f32,
        keep,
        factor,
        correction,
        norm,
        has_gamma,
        has_beta,
        statistics,
        teams.units(),
        teams.team,
        teams.held,
        plane_for(&x, teams.team),
        dtype_to_storage_type(x.dtype),
    );
    Normalized {
        output: y.into_tensor(),
        mean,
        var,
        rstd,
    }
}

/// [`NormOps::normalize_backward`]'s launches.
fn launch_backward(
    x: FloatTensor<CubeBackend>,
    rstd: FloatTensor<CubeBackend>,
    gamma: FloatTensor<CubeBackend>,
    has_gamma: bool,
    norm: Layout,
    dy: FloatTensor<CubeBackend>,
) -> NormGrads<CubeBackend> {
    check_dtype(x.dtype);
    let layout = Groups::of(x.shape().as_slice(), norm).compiled();
    let norm = layout.layout;
    let Groups { n, c, k, s, .. } = layout;
    let per_channel = norm.grouping == Grouping::Channels;
    let (groups, params) = (layout.count(), layout.params());
    // A channel's run of `s` values (a row, for LayerNorm and RMSNorm)
    // splits into whole vectors: none straddles two channels.
    let vector = vector_for(s);
    let teams = Teams::new(groups, layout.size() / vector, backward_held());
    let (x, rstd, dy) = (
        into_contiguous(x),
        into_contiguous(rstd),
        into_contiguous(dy),
    );
    let gamma = bound(parameter((gamma, has_gamma)), &x);
    let per_block = rows_per_block(groups);
    let blocks = groups.div_ceil(per_block).max(1);
    if let Some(plan) = blocks_for(&layout, teams) {
        // The parameter gradients' sums per run: a channel (BatchNorm), a
        // channel of a sample (GroupNorm, InstanceNorm: `[n, c]`, the
        // samples added below), or per block of rows (LayerNorm, RMSNorm:
        // taken after, from the runs' coefficients). `unused` fills the
        // forward's statistics slots; the temporaries go in the same
        // request.
        let sums = if norm.grouping.is_rows() {
            vec![blocks, params]
        } else {
            vec![plan.runs]
        };
        let [partial, coefficients] = plan.temporaries();
        let [dgamma, dbeta, unused, partial, coefficients] =
            empty_group(&x, [sums.clone(), sums, vec![1], partial, coefficients]);
        let dx = groups_in_blocks(
            &x,
            Some(&dy),
            gamma.clone(),
            gamma,
            [has_gamma, false],
            &layout,
            plan,
            0.0,
            [&unused, &unused, &rstd, &dgamma, &dbeta],
            [partial, coefficients.clone()],
            &RunningSlots::new(None, &x, Statistics::Returned, RunningUpdate::NONE),
        );
        if per_channel {
            return NormGrads { dx, dgamma, dbeta };
        }
        if norm.grouping.is_rows() {
            let centers = Centers {
                tensor: coefficients,
                stride: COEFFICIENTS,
            };
            row_column_sums(&x, &dy, rstd, centers, [&dgamma, &dbeta], layout);
            return parameter_totals(&x, dx, [dgamma, dbeta], blocks, params);
        }
        return parameter_totals(&x, dx, [dgamma, dbeta], n, params);
    }
    // Channel groups of one channel (or a few, `summed_channels`) sum each
    // channel's parameter gradients in the kernel (BatchNorm's channels
    // always: they are the gradients); rows held in registers sweep.
    let sums = if per_channel
        || (matches!(norm.grouping, Grouping::SampleChannels { .. })
            && k <= summed_channels()
            && one_pass())
    {
        ParameterSums::PerChannel { channels: k as u32 }
    } else if norm.grouping.is_rows() && (1..=MAX_HELD as u32).contains(&teams.held) && one_pass() {
        ParameterSums::Swept
    } else {
        ParameterSums::Centers
    };
    // `dx` may go over `dy` where nothing reads `dy` after the kernel, which
    // reads each value before it writes it, in the same unit; with
    // `Centers` the sums of the parameter gradients read `dy` after it.
    let dx = if sums == ParameterSums::Centers {
        Output::New(empty(&x, x.shape().to_vec()))
    } else {
        Output::for_input(&dy)
    };
    // For BatchNorm's channels the kernel writes the parameter gradients
    // themselves, for GroupNorm's and InstanceNorm's their sums per channel
    // and sample. A sweep leaves one row of partial sums per cube.
    // Otherwise it leaves each group's centre for their sums, taken in two
    // stages (see `column_sums`): per channel and sample (GroupNorm's
    // groups of more than 16 channels) or per block of rows (LayerNorm's,
    // RMSNorm's longest rows), then added. Slots that a path does not use
    // hold one value.
    let steps = if sums == ParameterSums::Swept {
        sweep_steps(groups, teams, sweep_units())
    } else {
        1
    };
    let cubes = grid(groups.div_ceil(teams.per_cube as usize * steps));
    let launched = match cubes {
        CubeCount::Static(x, y, z) => (x * y * z) as usize,
        CubeCount::Dynamic(_) => unreachable!("`grid` counts cubes on the host"),
    };
    let [dgamma, dbeta, centers, partial_gamma, partial_beta] = match (sums, norm.grouping) {
        (ParameterSums::PerChannel { .. }, _) => empty_group(
            &x,
            [
                vec![groups * k],
                vec![groups * k],
                vec![1],
                vec![1],
                vec![1],
            ],
        ),
        (ParameterSums::Swept, _) => empty_group(
            &x,
            [
                vec![launched, params],
                vec![launched, params],
                vec![1],
                vec![1],
                vec![1],
            ],
        ),
        (ParameterSums::Centers, Grouping::SampleChannels { .. }) => empty_group(
            &x,
            [vec![1], vec![1], vec![2 * groups], vec![n, c], vec![n, c]],
        ),
        (ParameterSums::Centers, _) => empty_group(
            &x,
            [
                vec![1],
                vec![1],
                vec![2 * groups],
                vec![blocks, params],
                vec![blocks, params],
            ],
        ),
    };
    cube_kernels::normalize_backward::launch(
        &x.client,
        cubes,
        CubeDim::new_1d(teams.units()),
        vector,
        x.clone().into_tensor_arg(),
        rstd.clone().into_tensor_arg(),
        gamma.into_tensor_arg(),
        dy.clone().into_tensor_arg(),
        dx.arg(3),
        dgamma.clone().into_tensor_arg(),
        dbeta.clone().into_tensor_arg(),
        centers.clone().into_tensor_arg(),
        groups as u32,
        c as u32,
        k as u32,
        (s / vector) as u32,
        norm,
        has_gamma,
        sums,
        steps as u32,
        teams.units(),
        teams.team,
        teams.held,
        plane_for(&x, teams.team),
        dtype_to_storage_type(x.dtype),
    );
    let dx = dx.into_tensor();
    if per_channel {
        return NormGrads { dx, dgamma, dbeta };
    }
    let totals = |partial_gamma, partial_beta, rows| {
        parameter_totals(&x, dx, [partial_gamma, partial_beta], rows, params)
    };
    match sums {
        ParameterSums::Swept => return totals(dgamma, dbeta, launched),
        // GroupNorm's and InstanceNorm's `[n, c]` sums: the samples added.
        ParameterSums::PerChannel { .. } => return totals(dgamma, dbeta, n),
        ParameterSums::Centers => {}
    }
    if matches!(norm.grouping, Grouping::SampleChannels { .. }) {
        // One sum per channel and sample, then the samples added.
        let runs = n * c;
        let teams = Teams::new(runs, s / vector, MAX_HELD);
        cube_kernels::channel_parameter_grads::launch(
            &x.client,
            cubes_for(runs, teams),
            CubeDim::new_1d(teams.units()),
            vector,
            x.clone().into_tensor_arg(),
            rstd.into_tensor_arg(),
            centers.into_tensor_arg(),
            dy.into_tensor_arg(),
            partial_gamma.clone().into_tensor_arg(),
            partial_beta.clone().into_tensor_arg(),
            runs as u32,
            k as u32,
            (s / vector) as u32,
            teams.units(),
            teams.team,
            plane_for(&x, teams.team),
            dtype_to_storage_type(x.dtype),
        );
        return totals(partial_gamma, partial_beta, n);
    }
    let centers = Centers {
        tensor: centers,
        stride: 2,
    };
    row_column_sums(
        &x,
        &dy,
        rstd,
        centers,
        [&partial_gamma, &partial_beta],
        layout,
    );
    totals(partial_gamma, partial_beta, blocks)
}

/// Each row's shift and shifted mean, at `tensor[r * stride]` and the
/// value after it.
struct Centers {
    tensor: CubeTensor,
    stride: usize,
}

/// Stage one of LayerNorm's and RMSNorm's parameter gradients, column sums
/// over blocks of rows ([`rows_per_block`]): `[blocks, s]` partial sums of
/// `dy * xhat` into `partial_gamma` and of `dy` into `partial_beta`.
fn row_column_sums(
    x: &CubeTensor,
    dy: &CubeTensor,
    rstd: CubeTensor,
    centers: Centers,
    [partial_gamma, partial_beta]: [&CubeTensor; 2],
    layout: Groups,
) {
    let (rows, params) = (layout.count(), layout.params());
    let per_block = rows_per_block(rows);
    let row_vector = row_sum_vector(vector_for(layout.s));
    cube_kernels::row_parameter_grads::launch(
        &x.client,
        layered_grid(
            (params / row_vector).div_ceil(MAX_CUBE_SIZE as usize),
            rows.div_ceil(per_block),
        ),
        CubeDim::new_1d(MAX_CUBE_SIZE),
        row_vector,
        x.clone().into_tensor_arg(),
        rstd.into_tensor_arg(),
        centers.tensor.into_tensor_arg(),
        dy.clone().into_tensor_arg(),
        partial_gamma.clone().into_tensor_arg(),
        partial_beta.clone().into_tensor_arg(),
        rows as u32,
        (params / row_vector) as u32,
        per_block as u32,
        centers.stride as u32,
        dtype_to_storage_type(x.dtype),
    );
}

/// The parameter gradients from `[rows, params]` partial sums of each
/// (`column_sums`: both totals in one request, and one launch), with `dx`.
fn parameter_totals(
    x: &CubeTensor,
    dx: CubeTensor,
    [partial_gamma, partial_beta]: [CubeTensor; 2],
    rows: usize,
    params: usize,
) -> NormGrads<CubeBackend> {
    let [dgamma, dbeta] = empty_group(x, [vec![params], vec![params]]);
    let lanes = sum_lanes(rows);
    cube_kernels::column_sums::launch(
        &x.client,
        layered_grid(params.div_ceil((MAX_CUBE_SIZE / lanes) as usize), 2),
        CubeDim::new_2d(MAX_CUBE_SIZE / lanes, lanes),
        partial_gamma.into_tensor_arg(),
        partial_beta.into_tensor_arg(),
        dgamma.clone().into_tensor_arg(),
        dbeta.clone().into_tensor_arg(),
        rows as u32,
        params as u32,
        lanes,
        dtype_to_storage_type(x.dtype),
    );
    NormGrads { dx, dgamma, dbeta }
}

impl NormOps for CubeBackend {
    fn normalize(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        running_mean: FloatTensor<Self>,
        running_var: FloatTensor<Self>,
        affine: [bool; 2],
        norm: Layout,
        epsilon: f64,
        statistics: Statistics,
        update: RunningUpdate,
    ) -> Normalized<Self> {
        let out = launch_forward(
            x,
            gamma,
            beta,
            [running_mean, running_var],
            affine,
            norm,
            epsilon,
            statistics,
            update,
        );
        submit(&out.output);
        out
    }

    fn normalize_backward(
        x: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        has_gamma: bool,
        norm: Layout,
        dy: FloatTensor<Self>,
    ) -> NormGrads<Self> {
        let grads = launch_backward(x, rstd, gamma, has_gamma, norm, dy);
        submit(&grads.dx);
        grads
    }
}

#[cfg(test)]
mod tests {
    use super::{
        BLOCK_CUBES, Blocks, Groups, Layout, MAX_HELD, MAX_HELD_FORWARD, SWEEP_UNITS, Teams,
        block_held, sweep_steps, wants_blocks,
    };

    #[test]
    fn blocks_stay_within_one_launch_grid() {
        let batch = |shape: [usize; 4]| Groups::of(&shape, Layout::BATCH);
        let plan = Blocks::of(&batch([64, 128, 1, 3136]), BLOCK_CUBES).unwrap();
        assert_eq!((plan.runs, plan.blocks, plan.vector), (128, 13, 4));
        // BatchNorm1d over 100,000 features of a batch of 4,096: more runs
        // than one grid dimension holds, so one team per channel instead.
        assert!(Blocks::of(&batch([4096, 100_000, 1, 1]), BLOCK_CUBES).is_none());
        assert!(Blocks::of(&batch([4096, 65_535, 1, 1]), BLOCK_CUBES).is_some());
        // GroupNorm: a run per channel and sample.
        let group = Groups::of(&[2, 128, 16384], Layout::group(4));
        let plan = Blocks::of(&group, BLOCK_CUBES).unwrap();
        assert_eq!((plan.runs, plan.run_values), (256, 16384));
        let group = Groups::of(&[600, 128, 16384], Layout::group(4));
        assert!(Blocks::of(&group, BLOCK_CUBES).is_none());
        // LayerNorm over [128, 128, 128] samples, 8 of them: a run per row,
        // 128 blocks of 16 vectors of 4 per unit.
        let rows = Groups::of(&[8, 1, 1, 128 * 128 * 128], Layout::LAYER);
        let plan = Blocks::of(&rows, BLOCK_CUBES).unwrap();
        assert_eq!((plan.runs, plan.blocks, plan.held), (8, 128, 16));
    }

    #[test]
    fn long_groups_go_in_blocks_only_where_too_few_to_fill_a_gpu() {
        let wanted = |shape: [usize; 4], norm| {
            let layout = Groups::of(&shape, norm);
            let teams = Teams::new(layout.count(), layout.size() / 4, MAX_HELD_FORWARD);
            wants_blocks(&layout, teams)
        };
        // GroupNorm, 32 groups of [128, 128, 128] samples: 32 groups of
        // 65,536 values for one sample, 256 for eight.
        assert!(wanted([1, 128, 1, 16384], Layout::group(4)));
        assert!(wanted([7, 128, 1, 16384], Layout::group(4)));
        assert!(!wanted([8, 128, 1, 16384], Layout::group(4)));
        // LayerNorm over 2,097,152 values: 8 rows in blocks, 256 streamed.
        assert!(wanted([8, 1, 1, 1 << 21], Layout::LAYER));
        assert!(!wanted([256, 1, 1, 1 << 21], Layout::LAYER));
        // Groups held in registers never go in blocks.
        assert!(!wanted([1, 128, 1, 784], Layout::group(4)));
        assert!(!wanted([1, 1, 1, 768], Layout::LAYER));
    }

    #[test]
    fn blocks_are_as_large_as_a_full_gpu_allows() {
        // BatchNorm [64, 128, 56, 56]: 128 channels of 200,704 values, 13
        // blocks each of 16 vectors of 4 per unit.
        assert_eq!(block_held(4, 128, 64 * 3136, BLOCK_CUBES), 16);
        // [8, 128, 56, 56]: 2 such blocks per channel are still 256 cubes.
        assert_eq!(block_held(4, 128, 8 * 3136, BLOCK_CUBES), 16);
        // [128, 16, 28, 28]: 16 channels need 25 blocks each (4 vectors).
        assert_eq!(block_held(4, 16, 128 * 784, BLOCK_CUBES), 4);
        // GroupNorm [1, 128, 128, 128]: 128 runs of 16,384 values, 2 blocks.
        assert_eq!(block_held(4, 128, 16384, BLOCK_CUBES), 8);
        // Few short runs: the smallest blocks, 8 values per unit.
        assert_eq!(block_held(1, 8, 4355, BLOCK_CUBES), 8);
        assert_eq!(block_held(2, 2, 4095, BLOCK_CUBES), 4);
        assert_eq!(block_held(4, 2, 8464, BLOCK_CUBES), 2);
        // Aiming at one cube: the largest.
        assert_eq!(block_held(4, 2, 8464, 1), 16);
        assert_eq!(block_held(1, 2, 8464, 1), 16);
    }

    #[test]
    fn a_team_sweeps_several_rows_only_where_the_gpu_would_be_full() {
        let steps = |rows, d: usize| {
            sweep_steps(
                rows,
                Teams::aiming_at(rows, d / 4, 4, MAX_HELD),
                SWEEP_UNITS,
            )
        };
        // The GPU shape: 8 rows per team of 64, 4,096 teams.
        assert_eq!(steps(32768, 768), 8);
        // The transformer's [4096, 128] and smaller: one row per team.
        assert_eq!(steps(4096, 128), 1);
        assert_eq!(steps(3, 768), 1);
        // Past that, at most 8 (the kernel is written out once per row).
        assert_eq!(steps(1 << 20, 768), 8);
        assert_eq!(steps(65536, 128), 8);
        assert_eq!(steps(32768, 128), 4);
    }
}
