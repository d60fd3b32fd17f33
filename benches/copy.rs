//! The copy bandwidth of a plain CubeCL kernel on wgpu: the most a
//! memory-bound kernel of ours can reach through the same runtime.
//!
//! ```sh
//! cargo bench --bench copy            # [32768, 768] f32, vectors of 4 and 1
//! cargo bench --bench copy -- --rows 64   # [64, 768]: a quick check on lavapipe
//! ```
//!
//! Each unit copies one vector (one value); 256 units per cube. Prints, per
//! vector size, the median over 20 timed batches (after 3 warm-up batches)
//! of 100 launches each, one synchronization per batch, and the bandwidth
//! counting the read and the write: the card's wgpu ceiling, to hold
//! against `benches/gpu.sh`'s PyTorch clone and our forward's GB/s.

use cubecl::prelude::*;
use cubecl::zspace::{Shape, Strides};
use cubecl::{CubeCount, CubeDim, future};

#[path = "common/timing.rs"]
mod timing;
use timing::median;

const WIDTH: usize = 768;
const UNITS: u32 = 256;
const LAUNCHES: usize = 100;

#[cube(launch)]
fn copy<N: Size>(x: &Tensor<Vector<f32, N>>, y: &mut Tensor<Vector<f32, N>>) {
    let i = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize * CUBE_DIM_X as usize
        + UNIT_POS_X as usize;
    if i < x.len() {
        y[i] = x[i];
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .map_or(32768, |r| r.parse().expect("--rows takes a count"));
    let values = rows * WIDTH;
    let client = cubecl::Device::default().client();
    let x = client.create_from_slice(zero_bytes(values));
    let y = client.empty(values * 4);
    println!("device: {:?}", client.properties().hardware);
    for vector in [4usize, 1] {
        let units = values / vector;
        let cubes = units.div_ceil(UNITS as usize);
        let (cx, cy) = (cubes.min(65_535), cubes.div_ceil(65_535));
        // SAFETY: both handles hold `values` contiguous f32s.
        let arg = |h: &cubecl::server::Handle| unsafe {
            TensorArg::from_raw_parts(h.clone(), Strides::new(&[1]), Shape::new([values]))
        };
        let batch = || {
            for _ in 0..LAUNCHES {
                copy::launch(
                    &client,
                    CubeCount::Static(cx as u32, cy as u32, 1),
                    CubeDim::new_1d(UNITS),
                    vector,
                    arg(&x),
                    arg(&y),
                );
            }
            future::block_on(client.sync()).expect("the device stays up");
        };
        let t = median(batch).as_secs_f64() / LAUNCHES as f64;
        println!(
            "copy [{rows}, {WIDTH}] f32, vectors of {vector}: {:.1} us per launch, {:.0} GB/s (read + write)",
            t * 1e6,
            2.0 * (values * 4) as f64 / t / 1e9
        );
    }
}

/// `values` zero f32s as bytes.
fn zero_bytes(values: usize) -> &'static [u8] {
    Box::leak(vec![0u8; values * 4].into_boxed_slice())
}
