//! Picking the backend by name, shared by the examples and benchmarks.
//! Burn 0.22 chooses the backend from the device at run time.

use burn::tensor::Device;

/// The device for `flex`, `ndarray` or `wgpu` (the latter with the `wgpu`
/// feature; `CUBECL_WGPU_DEFAULT_DEVICE=Cpu` forces lavapipe).
pub fn device_named(name: &str) -> Result<Device, String> {
    match name {
        "flex" => Ok(Device::flex()),
        // Deprecated in Burn 0.22 in favour of flex, still supported.
        #[allow(deprecated)]
        "ndarray" => Ok(Device::ndarray()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        other => Err(format!(
            "unknown device `{other}`: expected flex, ndarray or wgpu (wgpu needs the `wgpu` feature)"
        )),
    }
}
