//! Which x86 vector instructions the CPU kernels run with.

use std::sync::OnceLock;

/// The instruction sets the CPU kernels are compiled for, each pass once per
/// set, and chosen at run time (no `-C target-cpu` asked of users).
/// AVX-512 and AVX2 compute the same operations in the same order, so they
/// give the same bits (the tests compare them); the baseline's statistics
/// sums keep one accumulator of eight lanes instead of four (more made
/// LLVM's vectorizer worse, see `sums`), so they round differently.
///
/// Ordered best first (`Avx512 < Avx2 < Baseline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// AVX-512F: 16 f32 per instruction, half the instructions of AVX2 for
    /// the same work.
    Avx512,
    /// AVX2: 8 f32 per instruction.
    Avx2,
    /// The x86-64 baseline (SSE2), or another architecture: what LLVM makes
    /// of the generic code.
    Baseline,
}

impl Isa {
    /// The set this thread runs: the best the CPU has (detected once), or in
    /// the unit tests the one `Isa::force` set.
    #[inline(always)]
    pub fn current() -> Isa {
        #[cfg(test)]
        if let Some(forced) = FORCED.with(|f| f.get()) {
            return forced;
        }
        Self::detected()
    }

    /// The best set the CPU has, capped by `BURN_NORM_CPU_CAPABILITY`
    /// (`avx2` or `default`, as PyTorch's `ATEN_CPU_CAPABILITY`): on CPUs
    /// that lower their clock for 512-bit instructions (Intel's Skylake
    /// servers), other code on the core may run slower. Other values,
    /// and sets the CPU lacks, change nothing.
    #[inline(always)]
    fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let capability = std::env::var("BURN_NORM_CPU_CAPABILITY").ok();
            Self::best().capped(capability.as_deref())
        })
    }

    /// `self`, or the set `capability` names where that is lower.
    fn capped(self, capability: Option<&str>) -> Isa {
        let cap = match capability {
            Some("avx2") => Isa::Avx2,
            Some("default") => Isa::Baseline,
            _ => Isa::Avx512,
        };
        self.max(cap)
    }

    /// The best set the CPU has.
    fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            // std caches the CPU's features.
            if std::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    /// The sets this CPU can run, best first.
    #[cfg(test)]
    pub fn available() -> Vec<Isa> {
        let best = Self::best();
        [Isa::Avx512, Isa::Avx2, Isa::Baseline]
            .into_iter()
            .skip_while(|&isa| isa != best)
            .collect()
    }

    /// Runs `f` with the kernels of this thread on `isa` (one of
    /// `Isa::available`). Helper threads keep their own choice, so the
    /// tests give `f` one chunk of work.
    #[cfg(test)]
    pub fn force<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
        assert!(Self::available().contains(&isa), "{isa:?} on this CPU");
        FORCED.with(|forced| forced.set(Some(isa)));
        let result = f();
        FORCED.with(|forced| forced.set(None));
        result
    }
}

#[cfg(test)]
thread_local! {
    static FORCED: std::cell::Cell<Option<Isa>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::Isa;

    /// `BURN_NORM_CPU_CAPABILITY` only lowers the set, and ignores what it
    /// does not know.
    #[test]
    fn the_capability_caps_the_set() {
        let cases = [
            (Isa::Avx512, None, Isa::Avx512),
            (Isa::Avx512, Some("avx2"), Isa::Avx2),
            (Isa::Avx512, Some("default"), Isa::Baseline),
            (Isa::Avx2, Some("avx512"), Isa::Avx2),
            (Isa::Baseline, Some("avx2"), Isa::Baseline),
            (Isa::Avx512, Some("AVX2 "), Isa::Avx512),
        ];
        for (best, capability, want) in cases {
            assert_eq!(best.capped(capability), want, "{best:?} {capability:?}");
        }
    }
}
