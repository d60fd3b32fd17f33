//! Helpers shared by the suite: backends, tensor I/O and tolerances.

use burn::tensor::{DType, Device, Tensor, TensorData};

/// Generates one `#[test]` per backend for each listed function
/// `fn name(device: &Device)`, in modules `flex`, `ndarray` and `wgpu`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod flex {
            $(#[test] fn $name() { super::$name(&burn::tensor::Device::flex()) })*
        }
        // Burn 0.22 deprecates ndarray in favour of flex, but models still run on it.
        #[allow(deprecated)]
        mod ndarray {
            $(#[test] fn $name() { super::$name(&burn::tensor::Device::ndarray()) })*
        }
        #[cfg(feature = "wgpu")]
        mod wgpu {
            $(#[test] fn $name() { super::$name(&$crate::common::wgpu_device()) })*
        }
    };
}

/// The wgpu device the suite runs on: the default adapter (a real GPU, or
/// lavapipe on a machine without one).
#[cfg(feature = "wgpu")]
pub fn wgpu_device() -> Device {
    Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
}

/// Whether `device` differentiates in full f64: the forward and backward of
/// `sqrt` (the one non-polynomial op of a normalization) match f64 on the host.
/// Never on wgpu: on lavapipe Burn 0.22.1 stores f64 but its f64 `sqrt`
/// backward is wrong, and on an NVIDIA GPU (Vulkan) this very probe loses
/// the device ("driver implementation is at fault"), which fails every
/// later wgpu test of the process (seen on an H100, 2026-11-27).
pub fn supports_f64(device: &Device) -> bool {
    if name(device) == "wgpu" {
        return false;
    }
    let x = [2.0f64, 1.0 + 1e-12];
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = Tensor::<1>::from_data(
            TensorData::from(x),
            (&device.clone().autodiff(), DType::F64),
        )
        .require_grad();
        let y = t.clone().sqrt();
        let grads = y.clone().sum().backward();
        let y = values64(y.sum())[0];
        let dy = values64(t.grad(&grads).unwrap());
        (y - (x[0].sqrt() + x[1].sqrt())).abs() <= 1e-15
            && x.iter()
                .zip(&dy)
                .all(|(x, d)| (d - 0.5 / x.sqrt()).abs() <= 1e-15)
    }))
    .unwrap_or(false)
}

/// Whether `device` stores f16 tensors; says so on stderr when not
/// (burn-ndarray 0.22 has no f16 storage at all, "Unsupported dtype F16").
pub fn supports_f16(device: &Device) -> bool {
    let probe = std::panic::catch_unwind(|| {
        Tensor::<1>::from_data(TensorData::from([1.0f32]), (device, DType::F16)).into_data()
    });
    if probe.is_err() {
        eprintln!("this backend has no f16 tensors: nothing to check");
    }
    probe.is_ok()
}

/// An f32 tensor of `shape` from flat values.
pub fn tensor<const D: usize>(values: &[f32], shape: &[usize], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape.to_vec()), device)
}

/// The values of a tensor as f32, whatever its dtype.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// The values of a tensor as f64, whatever its dtype.
pub fn values64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

/// Asserts `actual` matches `expected` element by element:
/// `|a - e| <= rtol * max(|e|, rms(expected))`.
///
/// The error is relative to the element, floored at the tensor's RMS: for an
/// element that cancels to near zero (a centered value, a gradient), a
/// relative error measures only the cancellation, not the layer.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], rtol: f64) {
    assert_close_above(what, actual, expected, rtol, 0.0)
}

/// [`assert_close`] with the error floored at `floor` as well: the natural
/// scale of a result that is mathematically (close to) zero.
pub fn assert_close_above(what: &str, actual: &[f32], expected: &[f32], rtol: f64, floor: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let rms = (expected.iter().map(|&e| (e as f64).powi(2)).sum::<f64>()
        / expected.len().max(1) as f64)
        .sqrt();
    let mut worst = (0.0f64, 0usize);
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let (a, e) = (a as f64, e as f64);
        let err = (a - e).abs() / e.abs().max(rms).max(floor).max(f64::MIN_POSITIVE);
        // A NaN error is the worst there is.
        let err = if err.is_nan() { f64::INFINITY } else { err };
        if err > worst.0 {
            worst = (err, i);
        }
    }
    assert!(
        worst.0 <= rtol,
        "{what}: relative error {:.3e} > {rtol:.0e} at index {} (got {}, expected {})",
        worst.0,
        worst.1,
        actual[worst.1],
        expected[worst.1],
    );
}

/// Root mean square of a slice.
pub fn rms(v: &[f32]) -> f64 {
    (v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt()
}

/// Standard deviation of all values of a slice.
pub fn std(v: &[f32]) -> f64 {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// A short name for `device`'s backend, for file names.
pub fn name(device: &Device) -> &'static str {
    let text = format!("{device:?}").to_lowercase();
    ["flex", "ndarray", "wgpu"]
        .into_iter()
        .find(|n| text.contains(n))
        .unwrap_or("other")
}
