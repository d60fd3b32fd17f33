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

/// Keeps freed memory in the process (glibc on Linux; elsewhere nothing).
///
/// Burn's CPU backends allocate a fresh buffer for most operations. By
/// default glibc hands large freed blocks back to the kernel and takes them
/// again on the next step, and every 4 KiB page of them costs a page fault
/// when first written. In the transformer example (60 steps) that was 1.27
/// million page faults; with this call, 97 thousand, and 6% to 10% more
/// tokens per second. Training reuses the same sizes step after step, so
/// keeping the memory is the right trade.
#[allow(dead_code)] // The demo is too short to care.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's <malloc.h>: M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3.
        unsafe extern "C" {
            fn mallopt(param: core::ffi::c_int, value: core::ffi::c_int) -> core::ffi::c_int;
        }
        const ONE_GIB: core::ffi::c_int = 1 << 30;
        // SAFETY: plain configuration calls, made before the heap is in use
        // by other threads.
        unsafe {
            mallopt(-1, ONE_GIB);
            mallopt(-3, 1 << 25);
        }
    }
}
