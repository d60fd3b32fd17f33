//! A step counter that lives in a module's record, like PyTorch's
//! `num_batches_tracked` buffer.

use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
    Param, ParamId,
};
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::sync::{Arc, Mutex};

/// A count that `forward(&self)` can advance and that records save and load.
///
/// Burn's [`RunningState`](burn::module::RunningState) only holds float
/// tensors, and a float counter stops being exact after 2^24 steps. The count
/// is kept on the host, so that reading it (for PyTorch's cumulative moving
/// average) never waits on the device; it becomes an `Int` tensor of shape `[1]`
/// only when a record is written. Clones share the count, as clones of
/// `RunningState` share their value.
#[derive(Clone, Debug)]
pub struct RunningCounter {
    id: ParamId,
    count: Arc<Mutex<u64>>,
    device: Device,
}

impl RunningCounter {
    /// A counter at zero, recorded on `device`.
    pub fn new(device: &Device) -> Self {
        Self::with_count(ParamId::new(), 0, device.clone())
    }

    fn with_count(id: ParamId, count: u64, device: Device) -> Self {
        Self {
            id,
            count: Arc::new(Mutex::new(count)),
            device,
        }
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        *self.count.lock().expect("counter lock poisoned")
    }

    /// Adds one and returns the new count.
    pub fn increment(&self) -> u64 {
        let mut count = self.count.lock().expect("counter lock poisoned");
        *count += 1;
        *count
    }

    fn to_param(&self) -> Param<Tensor<1, Int>> {
        let data = TensorData::from([self.get() as i64]);
        Param::initialized(self.id, Tensor::from_data(data, &self.device))
    }
}

impl Module for RunningCounter {
    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        visitor.visit_int(&self.to_param());
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        let (id, tensor, _) = mapper.map_int(self.to_param()).consume();
        let device = tensor.device();
        // Records may hold the count as i32 or i64 depending on the backend.
        let count = tensor
            .into_data()
            .convert::<i64>()
            .iter::<i64>()
            .next()
            .unwrap_or(0);
        Self::with_count(id, count.max(0) as u64, device)
    }

    fn to_device(self, device: &Device) -> Self {
        Self {
            device: device.clone(),
            ..self
        }
    }

    fn fork(self, device: &Device) -> Self {
        self.to_device(device)
    }

    fn collect_devices(&self, mut devices: Devices) -> Devices {
        if !devices.contains(&self.device) {
            devices.push(self.device.clone());
        }
        devices
    }

    fn materialize(self) -> Self {
        self
    }

    fn valid(&self) -> Self {
        // A snapshot, like `RunningState::valid`: evaluation never counts.
        Self::with_count(self.id, self.get(), self.device.clone())
    }

    fn train(self) -> Self {
        self
    }
}

impl ModuleDisplayDefault for RunningCounter {
    fn content(&self, content: Content) -> Option<Content> {
        content.add_formatted(&self.get()).optional()
    }
}

impl ModuleDisplay for RunningCounter {}
