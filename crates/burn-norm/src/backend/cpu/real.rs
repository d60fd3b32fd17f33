//! The float types the CPU kernels run in.

use super::forward::RowBlock;
use super::sums::{RowSums, RowTerms, generic_centered_sum, generic_row_sums};

/// f32 and f64 (f16/bf16 are widened to f32 before they get here, as in
/// the composed path).
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::fmt::Debug
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// The nearest value.
    fn from_f64(v: f64) -> Self;
    /// Exact.
    fn to_f64(self) -> f64;
    /// The square root.
    fn sqrt(self) -> Self;

    /// The statistics passes: `Σ (v - shift)`, or with `square`
    /// `Σ ((v - shift) - m)²`.
    #[inline(always)]
    fn centered_sum(a: &[Self], shift: Self, m: Self, square: bool) -> Self {
        generic_centered_sum(a, shift, m, square)
    }

    /// The backward's first pass over one row: its [`RowSums`], and each
    /// value's `dy * xhat` and `dy` added to `dgamma`, `dbeta` (a block's
    /// sums, see `PARAM_ROWS`).
    #[inline(always)]
    fn row_sums(row: RowTerms<'_, Self>, dgamma: &mut [Self], dbeta: &mut [Self]) -> RowSums<Self> {
        generic_row_sums(row, dgamma, dbeta)
    }

    /// The forward over a block of whole rows, where a hand-vectorized
    /// kernel takes it: writes the block and returns `true`, or returns
    /// `false` for the generic loops to do it.
    #[inline(always)]
    fn forward_rows(_block: &mut RowBlock<'_, Self>) -> bool {
        false
    }
}

macro_rules! real {
    ($t:ty $(, $centered_sum:path, $row_sums:path, $forward_rows:path)?) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            $(
                #[inline(always)]
                fn centered_sum(a: &[Self], shift: Self, m: Self, square: bool) -> Self {
                    match $centered_sum(a, shift, m, square) {
                        Some(sum) => sum,
                        None => generic_centered_sum(a, shift, m, square),
                    }
                }

                #[inline(always)]
                fn row_sums(row: RowTerms<'_, Self>, dgamma: &mut [Self], dbeta: &mut [Self]) -> RowSums<Self> {
                    match $row_sums(&row, dgamma, dbeta) {
                        Some(sums) => sums,
                        None => generic_row_sums(row, dgamma, dbeta),
                    }
                }

                #[inline(always)]
                fn forward_rows(block: &mut RowBlock<'_, Self>) -> bool {
                    $forward_rows(block)
                }
            )?
        }
    };
}
// f32 has hand-written AVX2 and AVX-512 sums (see `sums_x86`) and a
// forward over rows (`rows_x86`).
real!(
    f32,
    super::sums_x86::centered_sum,
    super::sums_x86::row_sums,
    super::rows_x86::forward_rows
);
real!(f64);
