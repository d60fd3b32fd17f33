//! PyTorch checkpoints in and out, through Burn's burn-store, for models
//! that use this crate's layers (feature `pytorch`).
//!
//! burn-store's PyTorch adapter already renames `weight`/`bias` to
//! `gamma`/`beta` for modules named `BatchNorm`, `LayerNorm`, `GroupNorm`
//! and `RmsNorm` (ours have those names) and transposes `Linear` weights.
//! Two things are ours: `InstanceNorm`'s `weight`/`bias` (the adapter does
//! not list it), and `num_batches_tracked`, a scalar (`[]`, int64) in
//! PyTorch and a `[1]` integer tensor in the record of [`RunningCounter`](crate::RunningCounter).
//! [`NormAdapter`] handles both, in each direction. Loading checks that every
//! key lands: missing keys, unexpected keys and shape mismatches are one
//! error listing them.

use crate::error::NormError;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{DType, Tensor};
use burn_store::burn_pack::Tensor as PackTensor;
use burn_store::{
    ApplyResult, BurnToPyTorchAdapter, ModuleAdapter, ModuleContext, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore, bridge,
};
use std::collections::HashMap;
use std::path::Path;

/// PyTorch's counter buffer.
const COUNTER: &str = "num_batches_tracked";
/// The module type burn-store's adapters do not rename.
const INSTANCE_NORM: &str = "Struct:InstanceNorm";

/// Which way [`NormAdapter`] converts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// PyTorch names and shapes to this crate's.
    FromPytorch,
    /// This crate's names and shapes to PyTorch's.
    ToPytorch,
}

/// burn-store adapter for what its PyTorch adapters leave out; chain it
/// after [`PyTorchToBurnAdapter`] (loading) or [`BurnToPyTorchAdapter`]
/// (saving): [`load_pytorch`] and [`save_pytorch`] do.
#[derive(Clone, Copy, Debug)]
pub struct NormAdapter(pub Direction);

impl ModuleAdapter for NormAdapter {
    fn adapt(&self, tensor: PackTensor, ctx: ModuleContext<'_>) -> PackTensor {
        let param = tensor.name.rsplit('.').next().unwrap_or("").to_string();
        if param == COUNTER {
            let name = tensor.name.clone();
            let dtype = tensor.dtype;
            return match self.0 {
                // `[]` -> `[1]`: the same single value.
                Direction::FromPytorch if tensor.shape.is_empty() => {
                    bridge::map_data(tensor, name, dtype, [1].into(), |data| {
                        let value = data.convert::<i64>().iter::<i64>().next().unwrap_or(0);
                        burn::tensor::TensorData::new(vec![value], [1])
                    })
                }
                Direction::ToPytorch => bridge::map_data(
                    tensor,
                    name,
                    DType::I64,
                    Vec::<usize>::new().into(),
                    |data| {
                        let value = data.convert::<i64>().iter::<i64>().next().unwrap_or(0);
                        burn::tensor::TensorData::new(vec![value], Vec::<usize>::new())
                    },
                ),
                Direction::FromPytorch => tensor,
            };
        }
        if ctx.module_type() == Some(INSTANCE_NORM) {
            let renamed = match (self.0, param.as_str()) {
                (Direction::FromPytorch, "weight") => Some("gamma"),
                (Direction::FromPytorch, "bias") => Some("beta"),
                (Direction::ToPytorch, "gamma") => Some("weight"),
                (Direction::ToPytorch, "beta") => Some("bias"),
                _ => None,
            };
            if let Some(new) = renamed {
                let mut tensor = tensor;
                let keep = tensor.name.rfind('.').map_or(0, |i| i + 1);
                tensor.name.truncate(keep);
                tensor.name.push_str(new);
                return tensor;
            }
        }
        tensor
    }

    fn get_alternative_param_name(&self, param_name: &str, module_type: &str) -> Option<String> {
        if module_type != INSTANCE_NORM {
            return None;
        }
        let other = match (self.0, param_name) {
            (Direction::FromPytorch, "gamma") => "weight",
            (Direction::FromPytorch, "beta") => "bias",
            (Direction::ToPytorch, "weight") => "gamma",
            (Direction::ToPytorch, "bias") => "beta",
            _ => return None,
        };
        Some(other.to_string())
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}

/// Loads a PyTorch `state_dict` into `model`: a `.pt`/`.pth` file
/// (`torch.save(model.state_dict(), ..)`) or a `.safetensors` file.
/// Parameters, running statistics and `num_batches_tracked` all land; the
/// module tree's field names must be the PyTorch module's attribute names.
///
/// # Errors
/// [`NormError::Checkpoint`] if the file cannot be read, or if any of the
/// model's tensors is missing from it, any of its tensors has no place in
/// the model, or a shape differs (all of them listed).
pub fn load_pytorch<M: ModuleSnapshot>(
    model: &mut M,
    path: impl AsRef<Path>,
) -> Result<(), NormError> {
    let path = path.as_ref();
    let fail = |problem: String| NormError::Checkpoint {
        path: path.display().to_string(),
        problem,
    };
    let tensors: Vec<PackTensor> = if is_safetensors(path) {
        let mut store = SafetensorsStore::from_file(path);
        store
            .get_all_tensors()
            .map_err(|e| fail(e.to_string()))?
            .values()
            .cloned()
            .collect()
    } else {
        let mut store = PytorchStore::from_file(path);
        store
            .get_all_tensors()
            .map_err(|e| fail(e.to_string()))?
            .values()
            .cloned()
            .collect()
    };
    let adapter = PyTorchToBurnAdapter.chain(NormAdapter(Direction::FromPytorch));
    // burn-store keeps each loaded tensor's dtype, so a half-precision
    // checkpoint would turn an f32 model into an f16 one (whose f32 inputs
    // then stop inside Burn's convolutions; on ndarray, which stores no
    // f16, the process aborts). PyTorch's `load_state_dict` copies into the
    // model's tensors: the model keeps its dtypes. The file's floats are
    // converted before they land where the model holds its floats in one
    // dtype (the usual case), and cast back after, tensor by tensor, where
    // it holds several.
    let dtypes = FloatDTypes::of(model);
    let single = dtypes.single();
    let tensors = match single {
        Some(dtype) => tensors.into_iter().map(|t| cast_float(t, dtype)).collect(),
        None => tensors,
    };
    let result = model.apply(tensors, None, Some(Box::new(adapter)), false);
    check(&result).map_err(fail)?;
    if single.is_none() {
        *model = model.clone().map(&mut dtypes.restorer());
    }
    Ok(())
}

/// `tensor` in `dtype` if it holds floats of another.
fn cast_float(tensor: PackTensor, dtype: DType) -> PackTensor {
    if !tensor.dtype.is_float() || tensor.dtype == dtype {
        return tensor;
    }
    let (name, shape) = (tensor.name.clone(), tensor.shape.clone());
    bridge::map_data(tensor, name, dtype, shape, move |data| {
        data.convert_dtype(dtype)
    })
}

/// The dtype of each of a module's float tensors (parameters and running
/// buffers), by parameter id.
struct FloatDTypes(HashMap<ParamId, DType>);

impl FloatDTypes {
    fn of<M: Module>(module: &M) -> Self {
        let mut dtypes = FloatDTypes(HashMap::new());
        module.visit(&mut dtypes);
        dtypes
    }

    /// The one dtype of all of them, if they share one.
    fn single(&self) -> Option<DType> {
        let mut dtypes = self.0.values();
        let first = *dtypes.next()?;
        dtypes.all(|&d| d == first).then_some(first)
    }

    fn restorer(&self) -> RestoreDTypes<'_> {
        RestoreDTypes(&self.0)
    }
}

impl ModuleVisitor for FloatDTypes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.insert(param.id, param.val().dtype());
    }
}

/// Casts each float tensor back to the dtype [`FloatDTypes`] recorded.
struct RestoreDTypes<'a>(&'a HashMap<ParamId, DType>);

impl ModuleMapper for RestoreDTypes<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.0.get(&param.id) {
            Some(&dtype) if param.val().dtype() != dtype => param.map(|t| t.cast(dtype)),
            _ => param,
        }
    }
}

/// Writes `model` as a safetensors file that PyTorch loads with
/// `model.load_state_dict(safetensors.torch.load_file(path), strict=True)`:
/// PyTorch's names (`weight`, `bias`, `running_mean`, `running_var`,
/// `num_batches_tracked` as an int64 scalar) and layouts (`Linear` weights
/// `[out, in]`).
///
/// # Errors
/// [`NormError::Checkpoint`] if the file cannot be written.
pub fn save_pytorch<M: ModuleSnapshot>(model: &M, path: impl AsRef<Path>) -> Result<(), NormError> {
    let path = path.as_ref();
    let mut store = SafetensorsStore::from_file(path)
        .overwrite(true)
        .with_to_adapter(BurnToPyTorchAdapter.chain(NormAdapter(Direction::ToPytorch)));
    model
        .save_into(&mut store)
        .map_err(|e| NormError::Checkpoint {
            path: path.display().to_string(),
            problem: e.to_string(),
        })
}

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// Every key landed, nothing left over, no shape conflict; else the lists.
fn check(result: &ApplyResult) -> Result<(), String> {
    let mut problems = Vec::new();
    if !result.missing.is_empty() {
        let keys: Vec<&str> = result.missing.iter().map(|(k, _)| k.as_str()).collect();
        problems.push(format!("missing keys: {}", keys.join(", ")));
    }
    if !result.unused.is_empty() {
        problems.push(format!("unexpected keys: {}", result.unused.join(", ")));
    }
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
        problems.push(errors.join("; "));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
