//! Matrix products in integers for 4-bit weights (the bundled model's: values -8..7, one scale per 32 inputs).
//!
//! A product of a dozen query rows is bound by arithmetic, not memory: the f32 kernel of [`crate::bert`] runs near
//! the FMA units' peak. Here each row of activations is quantised to 8 bits (its own minimum and step, so
//! `x ≈ low + step·u` with `u` in 0..=255) and multiplied with the 4-bit weights as bytes: `vpmaddubsw` does 32
//! multiply-adds per instruction where an FMA does 8. Within a group of 32 inputs the products are summed exactly
//! in 16 bits (at most 8 × 2 × 255 × 8 = 32,640 in magnitude, so nothing saturates), then scaled by the group's
//! weight scale into f32:
//!
//! `y[r][c] = bias[c] + low[r]·Σₖ w[c][k] + step[r]·Σ_g scale[c][g]·Σ_{k∈g} u[r][k]·q[c][k]`
//!
//! The only approximation is the 8-bit activations; the vectors stay within a cosine of about 1e-3 of the f32
//! pass (a test bounds it), which is why the bundled model's id names the mode.
//!
//! There are three kernels giving the same bits: AVX-512BW (both halves of a panel in one register), AVX2, and
//! plain integers; the widest the CPU has is chosen at run time.
//!
//! Measured on one 2-core AMD EPYC (Zen 4) thread for a 12 × 384 → 1536 product: 99 G multiply-adds per second with
//! AVX2, against 54 G for the f32 kernel. On a 2-core Intel Xeon with AVX-512 (a busy one: figures vary by half
//! from run to run), AVX-512 against AVX2, three runs back to back: 67 / 60 / 88 G against 44 / 47 / 70 G
//! (`cargo test --release -p mc-embed --lib speed -- --ignored --nocapture --test-threads 1`).

use std::ops::Range;

/// Inputs per weight scale.
pub(crate) const GROUP: usize = 32;
/// Output columns per weight panel: two vectors of eight 32-bit lanes.
pub(crate) const NR: usize = 16;
/// Token rows per block.
const MR: usize = 6;
/// Inputs per step of the kernel: four bytes per 32-bit lane.
const STEP: usize = 4;

/// `y = x Wᵀ + b` for `W` of `n` rows (outputs) by `k` columns (inputs) of 4-bit values with a scale per 32.
pub(crate) struct Int8Linear {
    pub(crate) n: usize,
    pub(crate) k: usize,
    /// Panel `p`, group `g`, step `s`, half `h`: 32 bytes, column `j` of the half at `4j..4j+4` (inputs
    /// `32g + 4s ..+4`), at `((p·groups + g)·8 + s)·2 + h`.
    weights: Vec<[i8; 32]>,
    /// Panel `p`, group `g`: the scales of its 16 columns (0 past `n`), at `p·groups + g`.
    scales: Vec<[[f32; 8]; 2]>,
    /// `Σₖ w[c][k]` per column (the weights as values), which the rows' minimum multiplies.
    sums: Vec<f32>,
    bias: Vec<f32>,
}

/// Rows of activations as bytes, `x[r][k] ≈ low[r] + step[r]·u[r][k]`, packed for the kernel: blocks of [`MR`]
/// rows (the last one zero-padded), each as `k / 4` steps of `MR` words holding four consecutive bytes of a row.
#[derive(Default)]
pub(crate) struct Quantised {
    words: Vec<[u8; STEP]>,
    low: Vec<f32>,
    step: Vec<f32>,
    k: usize,
}

impl Quantised {
    /// Quantises `rows` rows of `k` values (a multiple of 4), each to its own range. Inlined into the forward
    /// pass, so it is compiled for the vector unit chosen there.
    #[inline(always)]
    pub(crate) fn fill(&mut self, x: &[f32], rows: usize, k: usize) {
        let steps = k / STEP;
        self.k = k;
        self.words.clear();
        self.words.resize(rows.div_ceil(MR) * MR * steps, [0; STEP]);
        self.low.clear();
        self.step.clear();
        for (r, row) in x.chunks_exact(k).take(rows).enumerate() {
            // eight running extremes, so that the loop vectorises
            let (mut lows, mut highs) = ([f32::MAX; 8], [f32::MIN; 8]);
            for chunk in row.chunks(8) {
                for ((l, h), v) in lows.iter_mut().zip(&mut highs).zip(chunk) {
                    *l = if *v < *l { *v } else { *l };
                    *h = if *v > *h { *v } else { *h };
                }
            }
            let low = lows.iter().fold(f32::MAX, |a, v| a.min(*v));
            let high = highs.iter().fold(f32::MIN, |a, v| a.max(*v));
            let step = (high - low) / 255.0;
            let (step, inv) = if step > 0.0 && step.is_finite() { (step, 1.0 / step) } else { (1.0, 0.0) };
            let block = &mut self.words[(r / MR) * MR * steps..][..MR * steps];
            for (s, values) in row.chunks_exact(STEP).enumerate() {
                let word = &mut block[s * MR + r % MR];
                for (o, v) in word.iter_mut().zip(values) {
                    *o = ((v - low) * inv + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
            self.low.push(low);
            self.step.push(step);
        }
    }

    /// The packed block of rows `start..start + MR`.
    fn block(&self, start: usize) -> &[[u8; STEP]] {
        let steps = self.k / STEP;
        &self.words[start / MR * MR * steps..][..MR * steps]
    }
}

impl Int8Linear {
    /// From row-major values (`n` rows of `k`, each in -8..=7) and their scales (`n` rows of `k / 32`).
    pub(crate) fn new(values: &[i8], scales: &[f32], bias: Vec<f32>, n: usize, k: usize) -> Result<Self, String> {
        if n == 0 || k == 0 || !k.is_multiple_of(GROUP) {
            return Err(format!("a {n}×{k} weight does not split into groups of {GROUP} inputs"));
        }
        let groups = k / GROUP;
        if values.len() != n * k || scales.len() != n * groups || bias.len() != n {
            return Err(format!(
                "a {n}×{k} weight came with {} values, {} scales, {} biases",
                values.len(),
                scales.len(),
                bias.len()
            ));
        }
        if let Some(v) = values.iter().find(|v| !(-8..=7).contains(*v)) {
            return Err(format!("weight value {v} is not 4-bit"));
        }
        let panels = n.div_ceil(NR);
        let mut weights = vec![[0i8; 32]; panels * groups * (GROUP / STEP) * 2];
        let mut packed_scales = vec![[[0.0f32; 8]; 2]; panels * groups];
        let mut sums = Vec::with_capacity(n);
        for (c, row) in values.chunks_exact(k).enumerate() {
            let (p, j) = (c / NR, c % NR);
            let (h, lane) = (j / 8, j % 8);
            let mut sum = 0.0f64;
            for (kk, v) in row.iter().enumerate() {
                let (g, s) = (kk / GROUP, kk % GROUP / STEP);
                weights[((p * groups + g) * (GROUP / STEP) + s) * 2 + h][lane * STEP + kk % STEP] = *v;
                sum += f64::from(*v) * f64::from(scales[c * groups + g]);
            }
            for g in 0..groups {
                packed_scales[p * groups + g][h][lane] = scales[c * groups + g];
            }
            sums.push(sum as f32);
        }
        Ok(Self { n, k, weights, scales: packed_scales, sums, bias })
    }

    fn groups(&self) -> usize {
        self.k / GROUP
    }

    /// The columns of panels `range` for every row of `x` into `out`, whose rows are `stride` long and start at
    /// the range's first column.
    pub(crate) fn panels(&self, x: &Quantised, range: Range<usize>, out: &mut [f32], stride: usize) {
        self.panels_with(x, range, out, stride, Kernel::widest());
    }

    /// [`Self::panels`] with the given kernel.
    fn panels_with(&self, x: &Quantised, range: Range<usize>, out: &mut [f32], stride: usize, kernel: Kernel) {
        let rows = x.low.len();
        let first = range.start * NR;
        let mut tile = [[[0.0f32; 8]; 2]; MR];
        for p in range {
            let col = p * NR;
            let width = NR.min(self.n - col);
            for start in (0..rows).step_by(MR) {
                let block = Block { linear: self, x, panel: p, rows: start..rows.min(start + MR), tile: &mut tile };
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512(v4) => v4.vectorize(Avx512 { v4, block }),
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2(v3) => v3.vectorize(Avx2 { v3, block }),
                    Kernel::Portable => block.portable(),
                }
                for (r, t) in (start..rows.min(start + MR)).zip(&tile) {
                    let (low, step) = (x.low[r], x.step[r]);
                    let row = &mut out[r * stride + col - first..][..width];
                    for (j, o) in row.iter_mut().enumerate() {
                        let (c, acc) = (col + j, t[j / 8][j % 8]);
                        *o = self.bias[c] + low * self.sums[c] + step * acc;
                    }
                }
            }
        }
    }

    #[cfg(test)]
    fn panel_count(&self) -> usize {
        self.n.div_ceil(NR)
    }
}

/// The integer kernels, widest first. All give the same sums exactly: the products are integers, summed in 16
/// bits within a group (which cannot saturate, see the module's note) and scaled per group in the same order.
#[derive(Clone, Copy)]
enum Kernel {
    /// AVX-512BW: both halves of a panel (16 columns) in one register, 64 multiply-adds per instruction.
    #[cfg(target_arch = "x86_64")]
    Avx512(pulp::x86::V4),
    /// AVX2: 32 multiply-adds per instruction.
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
    Portable,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => "avx512",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) => "avx2",
            Kernel::Portable => "portable",
        })
    }
}

impl Kernel {
    /// The widest kernel this CPU runs within the cap of [`crate::simd::ENV_SIMD`].
    fn widest() -> Self {
        Self::of(crate::simd::arch())
    }

    /// The kernel for the unit that runs the f32 loops.
    fn of(arch: pulp::Arch) -> Self {
        match arch {
            #[cfg(target_arch = "x86_64")]
            pulp::Arch::V4(v4) => Kernel::Avx512(v4),
            #[cfg(target_arch = "x86_64")]
            pulp::Arch::V3(v3) => Kernel::Avx2(v3),
            _ => Kernel::Portable,
        }
    }

    /// Every kernel this CPU runs, for tests that compare them.
    #[cfg(test)]
    fn available() -> Vec<Self> {
        crate::simd::every_unit().into_iter().map(Self::of).collect()
    }
}

/// One block of up to [`MR`] rows times one panel: `tile[r]` gets `Σ_g scale·Σ_{k∈g} u·q` for the panel's columns.
struct Block<'a> {
    linear: &'a Int8Linear,
    x: &'a Quantised,
    panel: usize,
    rows: Range<usize>,
    tile: &'a mut [[[f32; 8]; 2]; MR],
}

impl Block<'_> {
    /// The same sums in plain integer arithmetic, for CPUs without AVX2.
    fn portable(self) {
        let Block { linear, x, panel, rows, tile } = self;
        let groups = linear.groups();
        let words = x.block(rows.start);
        for (row, t) in tile.iter_mut().enumerate().take(rows.len()) {
            *t = [[0.0; 8]; 2];
            for g in 0..groups {
                let scales = &linear.scales[panel * groups + g];
                for h in 0..2 {
                    for lane in 0..8 {
                        let mut sum = 0i32;
                        for s in 0..GROUP / STEP {
                            let w = &linear.weights[((panel * groups + g) * (GROUP / STEP) + s) * 2 + h];
                            let u = &words[(g * GROUP / STEP + s) * MR + row];
                            for (j, u) in u.iter().enumerate() {
                                sum += i32::from(*u) * i32::from(w[lane * STEP + j]);
                            }
                        }
                        t[h][lane] = (sum as f32).mul_add(scales[h][lane], t[h][lane]);
                    }
                }
            }
        }
    }
}

/// A SIMD kernel compiled for each count of rows in a block (so that its accumulators stay in registers).
#[cfg(target_arch = "x86_64")]
trait RowKernel {
    fn rows(&self) -> usize;
    fn kernel<const M: usize>(self);
}

/// Runs the kernel compiled for the block's row count.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn by_rows<K: RowKernel>(k: K) {
    match k.rows() {
        1 => k.kernel::<1>(),
        2 => k.kernel::<2>(),
        3 => k.kernel::<3>(),
        4 => k.kernel::<4>(),
        5 => k.kernel::<5>(),
        _ => k.kernel::<MR>(),
    }
}

#[cfg(target_arch = "x86_64")]
struct Avx2<'a> {
    v3: pulp::x86::V3,
    block: Block<'a>,
}

#[cfg(target_arch = "x86_64")]
impl pulp::NullaryFnOnce for Avx2<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        by_rows(self)
    }
}

#[cfg(target_arch = "x86_64")]
impl RowKernel for Avx2<'_> {
    #[inline(always)]
    fn rows(&self) -> usize {
        self.block.rows.len()
    }

    /// `M` rows: per group, 2·M sums of 16-bit pairs in registers (plus two weight vectors and a broadcast: 15 of
    /// 16 registers at `M` = 6), widened and scaled into the tile once per group.
    #[inline(always)]
    fn kernel<const M: usize>(self) {
        use std::arch::x86_64::{__m256, __m256i};
        let Avx2 { v3, block: Block { linear, x, panel, rows, tile } } = self;
        let (avx, avx2, fma) = (v3.avx, v3.avx2, v3.fma);
        let groups = linear.groups();
        let words = x.block(rows.start);
        let ones = avx._mm256_set1_epi16(1);
        let mut out = [[avx._mm256_setzero_ps(); 2]; M];
        let panel_weights = &linear.weights[panel * groups * (GROUP / STEP) * 2..][..groups * (GROUP / STEP) * 2];
        for (g, (weights, words)) in
            panel_weights.chunks_exact((GROUP / STEP) * 2).zip(words.chunks_exact((GROUP / STEP) * MR)).enumerate()
        {
            let mut acc = [[avx._mm256_setzero_si256(); 2]; M];
            for (w, a) in weights.chunks_exact(2).zip(words.chunks_exact(MR)) {
                let w0: __m256i = pulp::cast(w[0]);
                let w1: __m256i = pulp::cast(w[1]);
                for (acc, a) in acc.iter_mut().zip(a) {
                    let a = avx._mm256_set1_epi32(i32::from_le_bytes(*a));
                    acc[0] = avx2._mm256_add_epi16(acc[0], avx2._mm256_maddubs_epi16(a, w0));
                    acc[1] = avx2._mm256_add_epi16(acc[1], avx2._mm256_maddubs_epi16(a, w1));
                }
            }
            let scales = &linear.scales[panel * groups + g];
            let s0: __m256 = pulp::cast(scales[0]);
            let s1: __m256 = pulp::cast(scales[1]);
            for (o, acc) in out.iter_mut().zip(&acc) {
                let v0 = avx._mm256_cvtepi32_ps(avx2._mm256_madd_epi16(acc[0], ones));
                let v1 = avx._mm256_cvtepi32_ps(avx2._mm256_madd_epi16(acc[1], ones));
                o[0] = fma._mm256_fmadd_ps(v0, s0, o[0]);
                o[1] = fma._mm256_fmadd_ps(v1, s1, o[1]);
            }
        }
        for (t, o) in tile.iter_mut().zip(&out) {
            t[0] = pulp::cast(o[0]);
            t[1] = pulp::cast(o[1]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
struct Avx512<'a> {
    v4: pulp::x86::V4,
    block: Block<'a>,
}

#[cfg(target_arch = "x86_64")]
impl pulp::NullaryFnOnce for Avx512<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        by_rows(self)
    }
}

#[cfg(target_arch = "x86_64")]
impl RowKernel for Avx512<'_> {
    #[inline(always)]
    fn rows(&self) -> usize {
        self.block.rows.len()
    }

    /// The AVX2 kernel with the panel's two halves side by side in one 512-bit register: per step one load of
    /// 64 weight bytes and, per row, one broadcast and one `vpmaddubsw` (M + 2 of 32 registers).
    #[inline(always)]
    fn kernel<const M: usize>(self) {
        use std::arch::x86_64::{__m512, __m512i};
        let Avx512 { v4, block: Block { linear, x, panel, rows, tile } } = self;
        let (f, bw) = (v4.avx512f, v4.avx512bw);
        let groups = linear.groups();
        let words = x.block(rows.start);
        let ones = f._mm512_set1_epi16(1);
        let mut out = [f._mm512_setzero_ps(); M];
        let panel_weights = &linear.weights[panel * groups * (GROUP / STEP) * 2..][..groups * (GROUP / STEP) * 2];
        for (g, (weights, words)) in
            panel_weights.chunks_exact((GROUP / STEP) * 2).zip(words.chunks_exact((GROUP / STEP) * MR)).enumerate()
        {
            let mut acc = [f._mm512_setzero_si512(); M];
            for (w, a) in weights.chunks_exact(2).zip(words.chunks_exact(MR)) {
                let w: __m512i = pulp::cast([w[0], w[1]]);
                for (acc, a) in acc.iter_mut().zip(a) {
                    let a = f._mm512_set1_epi32(i32::from_le_bytes(*a));
                    *acc = bw._mm512_add_epi16(*acc, bw._mm512_maddubs_epi16(a, w));
                }
            }
            let scales: __m512 = pulp::cast(linear.scales[panel * groups + g]);
            for (o, acc) in out.iter_mut().zip(&acc) {
                let v = f._mm512_cvtepi32_ps(bw._mm512_madd_epi16(*acc, ones));
                *o = f._mm512_fmadd_ps(v, scales, *o);
            }
        }
        for (t, o) in tile.iter_mut().zip(&out) {
            *t = pulp::cast(*o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the product of the dequantised activations and weights in f64, with and without AVX2, for shapes
    /// that leave partial panels and blocks; and near the product of the unquantised activations.
    #[test]
    fn integer_product_matches_the_plain_one() {
        for (rows, n, k) in [(1, 1, 32), (5, 17, 64), (7, 40, 96), (13, 33, 384)] {
            let groups = k / GROUP;
            let values: Vec<i8> = (0..n * k).map(|i| ((i * 7919) % 16) as i8 - 8).collect();
            let scales: Vec<f32> = (0..n * groups).map(|i| 0.01 + (i % 7) as f32 * 0.003).collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
            let linear = Int8Linear::new(&values, &scales, bias.clone(), n, k).expect("linear");
            let x: Vec<f32> = (0..rows * k).map(|i| ((i * 104_729) % 97) as f32 / 48.0 - 0.7).collect();
            let mut q = Quantised::default();
            q.fill(&x, rows, k);
            let steps = k / STEP;
            let byte = |r: usize, kk: usize| q.words[(r / MR * MR * steps) + kk / STEP * MR + r % MR][kk % STEP];
            let mut first: Option<Vec<f32>> = None;
            for kernel in Kernel::available() {
                let mut out = vec![f32::NAN; rows * n];
                linear.panels_with(&q, 0..linear.panel_count(), &mut out, n, kernel);
                for r in 0..rows {
                    for c in 0..n {
                        let w = |kk: usize| f64::from(values[c * k + kk]) * f64::from(scales[c * groups + kk / GROUP]);
                        let dequantised =
                            |kk: usize| f64::from(q.low[r]) + f64::from(q.step[r]) * f64::from(byte(r, kk));
                        let want = f64::from(bias[c]) + (0..k).map(|kk| dequantised(kk) * w(kk)).sum::<f64>();
                        let plain = f64::from(bias[c]) + (0..k).map(|kk| f64::from(x[r * k + kk]) * w(kk)).sum::<f64>();
                        let got = f64::from(out[r * n + c]);
                        let what = format!("[{r}][{c}] of {rows}×{n}×{k}, {kernel:?}");
                        assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{what}: {got} vs {want}");
                        // each activation is off by at most half a step
                        let bound: f64 = (0..k).map(|kk| w(kk).abs() * f64::from(q.step[r]) / 2.0).sum();
                        assert!((got - plain).abs() <= bound + 1e-5, "{what}: {got} vs unquantised {plain}");
                    }
                }
                // the kernels differ only in how many products one instruction makes: same bits
                match &first {
                    None => first = Some(out),
                    Some(want) => assert!(
                        out.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{rows}×{n}×{k}: {kernel:?} differs from the portable kernel"
                    ),
                }
            }
        }
    }

    /// The largest sums a group can make (every byte 255 against every weight -8, or 7) come out exactly, with every
    /// kernel: nothing saturates in 16 bits.
    #[test]
    fn extreme_groups_do_not_saturate() {
        for w in [-8i8, 7] {
            let (rows, n, k) = (7, 16, 64);
            let linear =
                Int8Linear::new(&vec![w; n * k], &vec![1.0; n * k / GROUP], vec![0.0; n], n, k).expect("linear");
            // each row spans 0..=1 so that its step is 1/255 and its largest value the byte 255
            let x: Vec<f32> = (0..rows * k).map(|i| if i % k == 0 { 0.0 } else { 1.0 }).collect();
            let mut q = Quantised::default();
            q.fill(&x, rows, k);
            for kernel in Kernel::available() {
                let mut out = vec![f32::NAN; rows * n];
                linear.panels_with(&q, 0..linear.panel_count(), &mut out, n, kernel);
                let want = f32::from(w) * (k - 1) as f32;
                for got in &out {
                    assert!((got - want).abs() < 1e-3, "{kernel:?}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn bad_weights_are_refused() {
        assert!(Int8Linear::new(&[0; 16], &[1.0], vec![0.0], 1, 16).is_err(), "not a whole group");
        assert!(Int8Linear::new(&[8; 32], &[1.0], vec![0.0], 1, 32).is_err(), "not 4-bit");
        assert!(Int8Linear::new(&[0; 32], &[], vec![0.0], 1, 32).is_err(), "no scales");
    }

    #[test]
    fn a_constant_row_is_exact() {
        let mut q = Quantised::default();
        q.fill(&[2.5; 32], 1, 32);
        let linear = Int8Linear::new(&[1; 32], &[0.5], vec![1.0], 1, 32).expect("linear");
        let mut out = [0.0];
        linear.panels(&q, 0..1, &mut out, 1);
        assert_eq!(out[0], 1.0 + 2.5 * 0.5 * 32.0);
    }

    /// `cargo test --release -p mc-embed --lib int8 -- --ignored --nocapture`: multiply-adds per second of one
    /// query-sized product on one thread.
    #[test]
    #[ignore]
    fn speed() {
        let (rows, n, k) = (12, 1536, 384);
        let values: Vec<i8> = (0..n * k).map(|i| ((i * 7919) % 16) as i8 - 8).collect();
        let scales: Vec<f32> = (0..n * k / GROUP).map(|i| 0.01 + (i % 7) as f32 * 0.001).collect();
        let lin = Int8Linear::new(&values, &scales, vec![0.0; n], n, k).expect("linear");
        let x: Vec<f32> = (0..rows * k).map(|i| ((i * 104_729) % 97) as f32 / 48.0 - 1.0).collect();
        let mut q = Quantised::default();
        let mut out = vec![0.0; rows * n];
        for kernel in Kernel::available() {
            let t = std::time::Instant::now();
            for _ in 0..1000 {
                q.fill(&x, rows, k);
                lin.panels_with(&q, 0..lin.panel_count(), &mut out, n, kernel);
            }
            let e = t.elapsed() / 1000;
            let rate = (rows * n * k) as f64 / e.as_secs_f64() / 1e9;
            println!("int8 {rows}x{n}x{k}, {kernel:?}: {e:?} = {rate:.1} GMAC/s");
        }
    }
}
