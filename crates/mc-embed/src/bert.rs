//! The BERT encoder forward pass of the in-process sentence models (paraphrase-MiniLM-L3-v2, all-MiniLM-L6-v2 and
//! their kin), with every weight matrix packed once, at load, into the layout its matrix product reads.
//!
//! Why not candle: for the few rows of a query (a dozen tokens) candle's matrix product repacks each weight matrix
//! on every call and spends more time moving weights than multiplying. Here:
//! - each `Linear` keeps its weights in panels of [`NR`] output columns, `k` rows deep, so that one panel is read
//!   front to back while [`MR`] token rows accumulate in registers;
//! - the texts of a batch are not padded to a common length: their tokens are stacked, every matrix product runs
//!   over all of them at once, and only attention looks at one text at a time;
//! - everything runs inside one [`pulp::Arch::dispatch`], so the loops are compiled for the widest vector unit the
//!   CPU has (AVX-512, else AVX2 and FMA, on x86-64), chosen at run time. With AVX-512 a panel of 16 columns is
//!   one register: on a 2-core Intel Xeon the f32 product of 12 × 384 → 1536 ran at 33–35 G multiply-adds per
//!   second against 26–27 G with AVX2 (the `speed` test below); the integer kernel of [`int8`] is widened too.
//!
//! Numerics follow Hugging Face's `BertModel` (post-layer-norm blocks, exact erf GELU, softmax attention scaled by
//! `1/sqrt(head size)`). The tests check the outputs against `pocket-encoder`'s (candle, same weights) to 2e-5 and
//! all-MiniLM-L6-v2's against the similarities sentence-transformers publishes to 2e-4.

use std::ops::Range;

use pulp::{Arch, Simd, WithSimd};

use crate::int8::{self, GROUP, Int8Linear, Quantised};

/// Output columns per weight panel.
const NR: usize = 16;
/// Token rows per block of the matrix product.
const MR: usize = 6;
/// Multiply-adds of one matrix product above which it is split between two threads (about 40 µs of work; the
/// smallest product of a 9-token query, 1.3 M, is split).
const PARALLEL_MACS: usize = 1 << 20;

/// The sizes of a BERT encoder, as in its `config.json`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BertShape {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub vocab: usize,
    pub layer_norm_eps: f32,
}

impl BertShape {
    /// Reads the sizes from a Hugging Face BERT `config.json`; only the exact-erf `gelu` activation is supported.
    pub fn from_config(config: &serde_json::Value) -> Result<Self, String> {
        let size = |key: &str| {
            config[key].as_u64().filter(|v| *v > 0).map(|v| v as usize).ok_or_else(|| format!("config lacks {key}"))
        };
        match config["hidden_act"].as_str() {
            Some("gelu") => {}
            other => return Err(format!("hidden_act {other:?} is not supported (only \"gelu\")")),
        }
        Ok(Self {
            hidden: size("hidden_size")?,
            heads: size("num_attention_heads")?,
            layers: size("num_hidden_layers")?,
            intermediate: size("intermediate_size")?,
            max_positions: size("max_position_embeddings")?,
            type_vocab: size("type_vocab_size")?,
            vocab: size("vocab_size")?,
            layer_norm_eps: config["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
        })
    }
}

/// A table of embedding rows, kept as stored: 4-bit rows are expanded only when looked up.
pub(crate) enum Table {
    F32 {
        rows: usize,
        dim: usize,
        data: Vec<f32>,
    },
    /// 4-bit values `nibble - 8`, two per byte (low nibble first), times one scale per group of 32.
    Q4 {
        rows: usize,
        dim: usize,
        nibbles: Vec<u8>,
        scales: Vec<f32>,
    },
}

impl Table {
    fn rows(&self) -> usize {
        match self {
            Table::F32 { rows, .. } | Table::Q4 { rows, .. } => *rows,
        }
    }

    fn dim(&self) -> usize {
        match self {
            Table::F32 { dim, .. } | Table::Q4 { dim, .. } => *dim,
        }
    }

    /// `out += row`; the caller checked `row < rows()` and `out.len() == dim()`.
    #[inline(always)]
    fn add_row(&self, row: usize, out: &mut [f32]) {
        match self {
            Table::F32 { dim, data, .. } => {
                for (o, v) in out.iter_mut().zip(&data[row * dim..(row + 1) * dim]) {
                    *o += v;
                }
            }
            Table::Q4 { dim, nibbles, scales, .. } => {
                let start = row * dim;
                for (i, o) in out.iter_mut().enumerate() {
                    let at = start + i;
                    *o += f32::from(int4_at(nibbles, at)) * scales[at / 32];
                }
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        let (rows, dim) = (self.rows(), self.dim());
        let count = rows.checked_mul(dim).ok_or("table too large")?;
        let ok = match self {
            Table::F32 { data, .. } => data.len() == count,
            Table::Q4 { nibbles, scales, .. } => nibbles.len() * 2 >= count && scales.len() * 32 >= count,
        };
        if ok { Ok(()) } else { Err(format!("embedding table of {rows}×{dim} has the wrong length")) }
    }
}

/// Value `i` of packed 4-bit data: `nibble - 8`, two per byte, low nibble first (the bundled format).
#[inline(always)]
pub(crate) fn int4_at(nibbles: &[u8], i: usize) -> i8 {
    ((nibbles[i / 2] >> ((i % 2) * 4)) & 15) as i8 - 8
}

/// A matrix of 4-bit values (-8..=7, row-major) with one scale per 32 of them (as in [`Table::Q4`]): shape, values,
/// scales.
pub(crate) type Int4 = (Vec<usize>, Vec<i8>, Vec<f32>);

/// Where the weights come from: named tensors in Hugging Face's BERT naming (`embeddings.word_embeddings.weight`,
/// `encoder.layer.0.attention.self.query.weight`, ...), row-major, as f32.
pub(crate) trait Weights {
    /// The tensor's shape and values.
    fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String>;
    /// A matrix stored as 4-bit values with one scale per 32 of them; `None` if it is stored otherwise.
    fn int4(&self, _name: &str) -> Option<Result<Int4, String>> {
        None
    }
    /// An embedding table; by default the tensor itself.
    fn table(&self, name: &str) -> Result<Table, String> {
        let (shape, data) = self.tensor(name)?;
        match shape[..] {
            [rows, dim] => Ok(Table::F32 { rows, dim, data }),
            _ => Err(format!("{name} has shape {shape:?}, expected two dimensions")),
        }
    }
}

/// `y = x Wᵀ + b` for `W` of `n` rows (outputs) by `k` columns (inputs), packed in panels.
struct Linear {
    n: usize,
    k: usize,
    /// Panel `p` holds columns `p*NR..p*NR+NR` of `Wᵀ`: `panels[(p*k + kk)*NR + j] = W[p*NR + j][kk]`, zero past `n`.
    panels: Vec<f32>,
    bias: Vec<f32>,
}

impl Linear {
    fn new(weight: &[f32], bias: Vec<f32>, n: usize, k: usize) -> Self {
        let count = n.div_ceil(NR);
        let mut panels = vec![0.0; count * k * NR];
        for (col, row) in weight.chunks_exact(k).enumerate() {
            let (p, j) = (col / NR, col % NR);
            for (kk, w) in row.iter().enumerate() {
                panels[(p * k + kk) * NR + j] = *w;
            }
        }
        Self { n, k, panels, bias }
    }

    /// The weight (`n` rows of `k`) and bias of the linear layer `prefix`, shapes checked.
    fn read(weights: &dyn Weights, prefix: &str, n: usize, k: usize) -> Result<(Vec<f32>, Vec<f32>), String> {
        let (shape, weight) = weights.tensor(&format!("{prefix}.weight"))?;
        if shape != [n, k] {
            return Err(format!("{prefix}.weight has shape {shape:?}, expected [{n}, {k}]"));
        }
        Ok((weight, Self::read_bias(weights, prefix, n)?))
    }

    fn read_bias(weights: &dyn Weights, prefix: &str, n: usize) -> Result<Vec<f32>, String> {
        let (shape, bias) = weights.tensor(&format!("{prefix}.bias"))?;
        if shape != [n] {
            return Err(format!("{prefix}.bias has shape {shape:?}, expected [{n}]"));
        }
        Ok(bias)
    }

    /// One linear for several with the same input (query, key and value): their rows stacked, packed once.
    fn stacked(weights: &dyn Weights, prefixes: &[String], n: usize, k: usize) -> Result<Self, String> {
        let (mut weight, mut bias) =
            (Vec::with_capacity(prefixes.len() * n * k), Vec::with_capacity(prefixes.len() * n));
        for prefix in prefixes {
            let (w, b) = Self::read(weights, prefix, n, k)?;
            weight.extend(w);
            bias.extend(b);
        }
        Ok(Self::new(&weight, bias, prefixes.len() * n, k))
    }

    #[cfg(test)]
    fn unpacked(&self) -> Vec<f32> {
        let mut weight = vec![0.0; self.n * self.k];
        for (col, row) in weight.chunks_exact_mut(self.k).enumerate() {
            let (p, j) = (col / NR, col % NR);
            for (kk, w) in row.iter_mut().enumerate() {
                *w = self.panels[(p * self.k + kk) * NR + j];
            }
        }
        weight
    }

    /// `out[r][c] = bias[c] + Σ x[r][kk]·W[c][kk]` for `rows` rows; `packed` is `x` from [`pack_rows`].
    #[inline(always)]
    fn forward<S: Simd>(&self, simd: S, packed: &[f32], rows: usize, out: &mut [f32], scratch: &mut Vec<f32>) {
        in_two(NR, self.n, rows * self.n * self.k, out, scratch, |range, out, stride| {
            simd.vectorize(Panels { linear: self, packed, rows, range, out, stride })
        });
    }

    /// The columns of panels `range` into `out`, whose rows are `stride` long and start at the range's first column.
    #[inline(always)]
    fn panels<S: Simd>(
        &self,
        simd: S,
        packed: &[f32],
        rows: usize,
        range: Range<usize>,
        out: &mut [f32],
        stride: usize,
    ) {
        let k = self.k;
        let first = range.start * NR;
        let mut block = [[0.0f32; NR]; MR];
        for p in range {
            let panel = &self.panels[p * k * NR..(p + 1) * k * NR];
            let col = p * NR;
            let width = NR.min(self.n - col);
            for (b, a) in packed.chunks_exact(k * MR).enumerate() {
                // The last block multiplies only its real rows: a 9-token text costs 9 rows, not 12.
                match rows - b * MR {
                    1 => micro_kernel::<S, 1>(simd, a, panel, &mut block),
                    2 => micro_kernel::<S, 2>(simd, a, panel, &mut block),
                    3 => micro_kernel::<S, 3>(simd, a, panel, &mut block),
                    4 => micro_kernel::<S, 4>(simd, a, panel, &mut block),
                    5 => micro_kernel::<S, 5>(simd, a, panel, &mut block),
                    _ => micro_kernel::<S, MR>(simd, a, panel, &mut block),
                }
                for (r, acc) in block.iter().enumerate().take(rows.saturating_sub(b * MR)) {
                    let row = &mut out[(b * MR + r) * stride + col - first..][..width];
                    for ((o, v), bias) in row.iter_mut().zip(acc).zip(&self.bias[col..col + width]) {
                        *o = v + bias;
                    }
                }
            }
        }
    }
}

/// Runs `panels(range, out, stride)` over the panels (of `width` columns, `n` in all) of a product of `macs`
/// multiply-adds: on this thread, or, with more than one model thread and enough work, with the second half of
/// the panels on another thread of the pool (into `scratch`, then copied in place).
#[inline(always)]
fn in_two<F>(width: usize, n: usize, macs: usize, out: &mut [f32], scratch: &mut Vec<f32>, panels: F)
where
    F: Fn(Range<usize>, &mut [f32], usize) + Sync,
{
    let count = n.div_ceil(width);
    if count < 2 || macs < PARALLEL_MACS || rayon::current_num_threads() < 2 {
        panels(0..count, out, n);
        return;
    }
    let mid = count / 2;
    let split = mid * width;
    let width = n - split;
    let rows = out.len() / n;
    scratch.clear();
    scratch.resize(rows * width, 0.0);
    rayon::join(|| panels(0..mid, &mut *out, n), || panels(mid..count, &mut scratch[..], width));
    for (row, part) in out.chunks_exact_mut(n).zip(scratch.chunks_exact(width)) {
        row[split..].copy_from_slice(part);
    }
}

/// A weight matrix as its product runs: f32 panels, or 4-bit integers that multiply 8-bit activations.
enum Product {
    F32(Linear),
    Int8(Int8Linear),
}

/// How the 4-bit weights of a model multiply: as f32 (exact), or in integers with activations quantised to 8 bits
/// per row (the products about twice as fast; vectors within about 1e-3 cosine of the exact ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arithmetic {
    Exact,
    Int8,
}

/// Buffers reused by every product of a forward pass.
#[derive(Default)]
struct Scratch {
    packed: Vec<f32>,
    quantised: Quantised,
    split: Vec<f32>,
}

impl Product {
    /// The linear layers `prefixes` (the same input; their outputs stacked), `n` outputs each from `k` inputs.
    fn load(
        weights: &dyn Weights,
        prefixes: &[String],
        n: usize,
        k: usize,
        arithmetic: Arithmetic,
    ) -> Result<Self, String> {
        if arithmetic == Arithmetic::Int8 && k.is_multiple_of(GROUP) {
            let mut parts = Vec::with_capacity(prefixes.len());
            for prefix in prefixes {
                let name = format!("{prefix}.weight");
                match weights.int4(&name) {
                    Some(found) => parts.push((prefix, name, found?)),
                    None => break,
                }
            }
            if parts.len() == prefixes.len() {
                let (mut values, mut scales, mut bias) = (Vec::new(), Vec::new(), Vec::new());
                for (prefix, name, (shape, v, sc)) in parts {
                    if shape != [n, k] {
                        return Err(format!("{name} has shape {shape:?}, expected [{n}, {k}]"));
                    }
                    values.extend(v);
                    scales.extend(sc);
                    bias.extend(Linear::read_bias(weights, prefix, n)?);
                }
                let linear = Int8Linear::new(&values, &scales, bias, prefixes.len() * n, k)?;
                return Ok(Self::Int8(linear));
            }
        }
        Ok(Self::F32(Linear::stacked(weights, prefixes, n, k)?))
    }

    fn one(weights: &dyn Weights, prefix: &str, n: usize, k: usize, arithmetic: Arithmetic) -> Result<Self, String> {
        Self::load(weights, &[prefix.to_owned()], n, k, arithmetic)
    }

    /// `out = x Wᵀ + b` for the first `rows` rows of `x`.
    #[inline(always)]
    fn forward<S: Simd>(&self, simd: S, x: &[f32], rows: usize, out: &mut [f32], scratch: &mut Scratch) {
        match self {
            Product::F32(linear) => {
                pack_rows(x, rows, linear.k, &mut scratch.packed);
                linear.forward(simd, &scratch.packed, rows, out, &mut scratch.split);
            }
            Product::Int8(linear) => {
                scratch.quantised.fill(x, rows, linear.k);
                let quantised = &scratch.quantised;
                // Integer products run about twice as fast as f32 ones, and handing half of one to another
                // thread costs the same: a query's products (a few dozen rows) stay on one thread, which also
                // leaves the other core to the search that runs meanwhile; batches still split.
                let macs = rows * linear.n * linear.k / 16;
                in_two(int8::NR, linear.n, macs, out, &mut scratch.split, |range, out, stride| {
                    linear.panels(quantised, range, out, stride)
                });
            }
        }
    }
}

/// [`Linear::panels`] as an operation to run, on another thread, in the vector unit's context.
struct Panels<'a> {
    linear: &'a Linear,
    packed: &'a [f32],
    rows: usize,
    range: Range<usize>,
    out: &'a mut [f32],
    stride: usize,
}

impl WithSimd for Panels<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        self.linear.panels(simd, self.packed, self.rows, self.range, self.out, self.stride);
    }
}

/// Copies `rows` rows of `k` values into blocks of [`MR`] rows stored column by column (`MR` values per input
/// column), zero-padded to a whole block: the layout [`micro_kernel`] reads.
#[inline(always)]
fn pack_rows(x: &[f32], rows: usize, k: usize, packed: &mut Vec<f32>) {
    packed.clear();
    packed.resize(rows.div_ceil(MR) * MR * k, 0.0);
    for (r, row) in x.chunks_exact(k).take(rows).enumerate() {
        let (b, i) = (r / MR, r % MR);
        let block = &mut packed[b * MR * k..(b + 1) * MR * k];
        for (kk, v) in row.iter().enumerate() {
            block[kk * MR + i] = *v;
        }
    }
}

/// The first `M` (at most [`MR`]) rows of a block times one `NR`-column panel, accumulated in vector registers
/// over the whole depth.
#[inline(always)]
fn micro_kernel<S: Simd, const M: usize>(simd: S, a: &[f32], panel: &[f32], out: &mut [[f32; NR]; MR]) {
    if S::F32_LANES * 2 == NR {
        micro_kernel_2::<S, M>(simd, a, panel, out);
        return;
    }
    let vectors = NR / S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; NR]; M];
    for (x, w) in a.chunks_exact(MR).zip(panel.chunks_exact(NR)) {
        let (w, _) = S::as_simd_f32s(w);
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = simd.splat_f32s(x[r]);
            for v in 0..vectors {
                acc[v] = simd.mul_add_e_f32s(x, w[v], acc[v]);
            }
        }
    }
    for (o, acc) in out.iter_mut().zip(&acc) {
        let (o, _) = S::as_mut_simd_f32s(o);
        o[..vectors].copy_from_slice(&acc[..vectors]);
    }
}

/// [`micro_kernel`] for a panel of two vectors (8-lane AVX2), written out so that both halves of a panel row are
/// multiplied with one broadcast: 12 accumulators, 2 weight vectors and 1 broadcast fill 15 of 16 registers.
#[inline(always)]
fn micro_kernel_2<S: Simd, const M: usize>(simd: S, a: &[f32], panel: &[f32], out: &mut [[f32; NR]; MR]) {
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; 2]; M];
    for (x, w) in a.chunks_exact(MR).zip(panel.chunks_exact(NR)) {
        let (w, _) = S::as_simd_f32s(w);
        let (w0, w1) = (w[0], w[1]);
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = simd.splat_f32s(x[r]);
            acc[0] = simd.mul_add_e_f32s(x, w0, acc[0]);
            acc[1] = simd.mul_add_e_f32s(x, w1, acc[1]);
        }
    }
    for (o, acc) in out.iter_mut().zip(&acc) {
        let (o, _) = S::as_mut_simd_f32s(o);
        o[..2].copy_from_slice(acc);
    }
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn load(weights: &dyn Weights, prefix: &str, dim: usize, eps: f32) -> Result<Self, String> {
        let get = |suffix: &str| {
            let name = format!("{prefix}.{suffix}");
            let (shape, values) = weights.tensor(&name)?;
            if shape != [dim] {
                return Err(format!("{name} has shape {shape:?}, expected [{dim}]"));
            }
            Ok(values)
        };
        Ok(Self { gamma: get("weight")?, beta: get("bias")?, eps })
    }

    #[inline(always)]
    fn apply(&self, rows: &mut [f32]) {
        let dim = self.gamma.len();
        for row in rows.chunks_exact_mut(dim) {
            let mean = row.iter().sum::<f32>() / dim as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

struct Layer {
    qkv: Product,
    attention_out: Product,
    attention_norm: LayerNorm,
    up: Product,
    down: Product,
    output_norm: LayerNorm,
}

/// A loaded BERT encoder. Immutable; share it between threads.
pub(crate) struct Bert {
    shape: BertShape,
    arch: Arch,
    words: Table,
    positions: Vec<f32>,
    types: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl std::fmt::Debug for Bert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bert").field("shape", &self.shape).finish_non_exhaustive()
    }
}

/// One text's tokens: ids and token type ids, of equal length.
pub(crate) type Tokens<'a> = (&'a [u32], &'a [u32]);

impl Bert {
    pub fn load(weights: &dyn Weights, shape: BertShape, arithmetic: Arithmetic) -> Result<Self, String> {
        let h = shape.hidden;
        if h == 0 || shape.heads == 0 || !h.is_multiple_of(shape.heads) {
            return Err(format!("hidden size {h} is not a multiple of {} heads", shape.heads));
        }
        let words = weights.table("embeddings.word_embeddings.weight")?;
        words.check()?;
        if words.dim() != h || words.rows() != shape.vocab {
            return Err(format!("word embeddings are {}×{}, expected {}×{h}", words.rows(), words.dim(), shape.vocab));
        }
        let table = |name: &str, rows: usize| -> Result<Vec<f32>, String> {
            let (got, values) = weights.tensor(name)?;
            if got != [rows, h] {
                return Err(format!("{name} has shape {got:?}, expected [{rows}, {h}]"));
            }
            Ok(values)
        };
        let positions = table("embeddings.position_embeddings.weight", shape.max_positions)?;
        let types = table("embeddings.token_type_embeddings.weight", shape.type_vocab)?;
        let eps = shape.layer_norm_eps;
        let embedding_norm = LayerNorm::load(weights, "embeddings.LayerNorm", h, eps)?;
        let mut layers = Vec::with_capacity(shape.layers);
        for l in 0..shape.layers {
            let p = format!("encoder.layer.{l}");
            let qkv: Vec<String> =
                ["query", "key", "value"].iter().map(|part| format!("{p}.attention.self.{part}")).collect();
            let a = arithmetic;
            layers.push(Layer {
                qkv: Product::load(weights, &qkv, h, h, a)?,
                attention_out: Product::one(weights, &format!("{p}.attention.output.dense"), h, h, a)?,
                attention_norm: LayerNorm::load(weights, &format!("{p}.attention.output.LayerNorm"), h, eps)?,
                up: Product::one(weights, &format!("{p}.intermediate.dense"), shape.intermediate, h, a)?,
                down: Product::one(weights, &format!("{p}.output.dense"), h, shape.intermediate, a)?,
                output_norm: LayerNorm::load(weights, &format!("{p}.output.LayerNorm"), h, eps)?,
            });
        }
        Ok(Self { shape, arch: crate::simd::arch(), words, positions, types, embedding_norm, layers })
    }

    /// The width of the hidden states (and of the pooled vectors).
    pub fn hidden(&self) -> usize {
        self.shape.hidden
    }

    /// The mean of the last hidden states over each text's tokens (not normalised), one vector per text.
    pub fn mean_pooled(&self, texts: &[Tokens<'_>]) -> Result<Vec<Vec<f32>>, String> {
        for (i, (ids, types)) in texts.iter().enumerate() {
            if ids.is_empty() || ids.len() != types.len() {
                return Err(format!("text {i} has {} token ids and {} type ids", ids.len(), types.len()));
            }
            if ids.len() > self.shape.max_positions {
                return Err(format!("text {i} has {} tokens, more than {}", ids.len(), self.shape.max_positions));
            }
            if let Some(id) = ids.iter().find(|&&id| id as usize >= self.shape.vocab) {
                return Err(format!("text {i} has token id {id} outside the vocabulary"));
            }
            if let Some(t) = types.iter().find(|&&t| t as usize >= self.shape.type_vocab) {
                return Err(format!("text {i} has token type {t} outside the {} types", self.shape.type_vocab));
            }
        }
        // Inside the model thread pool, so the products' halves are handed between its threads cheaply.
        Ok(rayon::scope(|_| self.arch.dispatch(Forward { bert: self, texts })))
    }
}

/// Tokenises `texts` (special tokens added, the tokenizer's truncation applied), runs them through `bert` in chunks
/// of `chunk` texts and returns one L2-normalised vector per text; an error names the text's index.
pub(crate) fn embed_texts<'t>(
    bert: &Bert,
    tokenizer: &tokenizers::Tokenizer,
    texts: impl ExactSizeIterator<Item = &'t str>,
    chunk: usize,
) -> Result<Vec<Vec<f32>>, String> {
    let mut out = Vec::with_capacity(texts.len());
    let mut encoded = Vec::with_capacity(chunk);
    let run = |encoded: &mut Vec<(Vec<u32>, Vec<u32>)>, out: &mut Vec<Vec<f32>>| -> Result<(), String> {
        let tokens: Vec<Tokens<'_>> = encoded.iter().map(|(ids, types)| (&ids[..], &types[..])).collect();
        for mut v in bert.mean_pooled(&tokens)? {
            if !crate::l2_normalize(&mut v) {
                return Err(format!("a zero vector for text {}", out.len()));
            }
            out.push(v);
        }
        encoded.clear();
        Ok(())
    };
    for (i, text) in texts.enumerate() {
        let e = tokenizer.encode(text, true).map_err(|e| format!("tokenizing text {i}: {e}"))?;
        encoded.push((e.get_ids().to_vec(), e.get_type_ids().to_vec()));
        if encoded.len() == chunk.max(1) {
            run(&mut encoded, &mut out)?;
        }
    }
    if !encoded.is_empty() {
        run(&mut encoded, &mut out)?;
    }
    Ok(out)
}

struct Forward<'a> {
    bert: &'a Bert,
    texts: &'a [Tokens<'a>],
}

impl WithSimd for Forward<'_> {
    type Output = Vec<Vec<f32>>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Self::Output {
        let Forward { bert, texts } = self;
        let shape = bert.shape;
        let h = shape.hidden;
        let rows: usize = texts.iter().map(|t| t.0.len()).sum();

        let mut x = vec![0.0f32; rows * h];
        let mut row = 0;
        for (ids, types) in texts {
            for (i, (&id, &t)) in ids.iter().zip(*types).enumerate() {
                let out = &mut x[row * h..(row + 1) * h];
                bert.words.add_row(id as usize, out);
                let position = &bert.positions[i * h..(i + 1) * h];
                let kind = &bert.types[t as usize * h..(t as usize + 1) * h];
                for ((o, p), k) in out.iter_mut().zip(position).zip(kind) {
                    *o += p + k;
                }
                row += 1;
            }
        }
        bert.embedding_norm.apply(&mut x);

        let mut qkv = vec![0.0f32; rows * 3 * h];
        let mut context = vec![0.0f32; rows * h];
        let mut attended = vec![0.0f32; rows * h];
        let mut up = vec![0.0f32; rows * shape.intermediate];
        let mut scores = Vec::new();
        let mut scratch = Scratch::default();
        for layer in &bert.layers {
            layer.qkv.forward(simd, &x, rows, &mut qkv, &mut scratch);
            attention(&qkv, texts, shape.heads, h, &mut scores, &mut context);

            layer.attention_out.forward(simd, &context, rows, &mut attended, &mut scratch);
            for (a, r) in attended.iter_mut().zip(&x) {
                *a += r;
            }
            layer.attention_norm.apply(&mut attended);

            layer.up.forward(simd, &attended, rows, &mut up, &mut scratch);
            for v in &mut up {
                *v = gelu(*v);
            }
            layer.down.forward(simd, &up, rows, &mut x, &mut scratch);
            for (o, r) in x.iter_mut().zip(&attended) {
                *o += r;
            }
            layer.output_norm.apply(&mut x);
        }

        let mut pooled = Vec::with_capacity(texts.len());
        let mut start = 0;
        for (ids, _) in texts {
            let mut sum = vec![0.0f32; h];
            for token in x[start * h..(start + ids.len()) * h].chunks_exact(h) {
                for (s, v) in sum.iter_mut().zip(token) {
                    *s += v;
                }
            }
            let n = ids.len() as f32;
            sum.iter_mut().for_each(|s| *s /= n);
            pooled.push(sum);
            start += ids.len();
        }
        pooled
    }
}

/// Scaled dot-product attention of every text with itself, head by head, from stacked query/key/value rows.
#[inline(always)]
fn attention(qkv: &[f32], texts: &[Tokens<'_>], heads: usize, h: usize, scores: &mut Vec<f32>, out: &mut [f32]) {
    let size = h / heads;
    let scale = 1.0 / (size as f32).sqrt();
    let mut start = 0;
    for (ids, _) in texts {
        let len = ids.len();
        let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
        scores.resize(len, 0.0);
        for head in 0..heads {
            let offset = head * size;
            for i in 0..len {
                let q = &rows[i * 3 * h + offset..][..size];
                let mut max = f32::NEG_INFINITY;
                for (j, s) in scores.iter_mut().enumerate() {
                    let k = &rows[j * 3 * h + h + offset..][..size];
                    *s = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
                    max = max.max(*s);
                }
                let mut total = 0.0;
                for s in scores.iter_mut() {
                    *s = exp(*s - max);
                    total += *s;
                }
                let o = &mut out[(start + i) * h + offset..][..size];
                o.fill(0.0);
                for (j, s) in scores.iter().enumerate() {
                    let p = s / total;
                    let v = &rows[j * 3 * h + 2 * h + offset..][..size];
                    for (o, v) in o.iter_mut().zip(v) {
                        *o += p * v;
                    }
                }
            }
        }
        start += len;
    }
}

/// GELU with the exact error function, as BERT's `gelu`: `x/2 · (1 + erf(x/√2))`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The error function to within 1.5e-7 (Abramowitz and Stegun 7.1.26), branch-free so loops over it vectorise.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// `e^x` to about 2 ulp for the range that matters here (branch-free, so loops over it vectorise); 0 below -87.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_are_close_to_the_standard_library() {
        for i in -2000..=2000 {
            let x = i as f32 / 100.0;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            assert!((got - want).abs() <= want * 3e-7, "exp({x}) = {got}, want {want}");
        }
        // erf against its series, which converges fast for |x| ≤ 3.
        for i in -300..=300 {
            let x = i as f64 / 100.0;
            let mut term = x;
            let mut sum = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            let want = sum * 2.0 / std::f64::consts::PI.sqrt();
            let got = erf(x as f32) as f64;
            assert!((got - want).abs() < 3e-7, "erf({x}) = {got}, want {want}");
        }
    }

    /// The packed product against the textbook triple loop, for shapes that leave partial panels and blocks, with
    /// every vector unit of this CPU.
    #[test]
    fn packed_product_matches_the_plain_one() {
        struct Run<'a>(&'a Linear, &'a [f32], usize);
        impl WithSimd for Run<'_> {
            type Output = Vec<f32>;
            fn with_simd<S: Simd>(self, simd: S) -> Vec<f32> {
                let Run(linear, x, rows) = self;
                let mut packed = Vec::new();
                pack_rows(x, rows, linear.k, &mut packed);
                let mut out = vec![f32::NAN; rows * linear.n];
                linear.forward(simd, &packed, rows, &mut out, &mut Vec::new());
                out
            }
        }
        // Two model threads, so that the largest shape (over `PARALLEL_MACS`) is split between them.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("thread pool");
        for (rows, n, k) in [(1, 1, 1), (5, 17, 3), (13, 40, 33), (6, 16, 384), (11, 200, 600)] {
            assert_eq!(rows * n * k >= PARALLEL_MACS, (rows, n, k) == (11, 200, 600));
            let weight: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
            let x: Vec<f32> = (0..rows * k).map(|i| ((i * 104_729) % 97) as f32 / 48.0 - 1.0).collect();
            let linear = Linear::new(&weight, bias.clone(), n, k);
            assert_eq!(linear.unpacked(), weight);
            for arch in crate::simd::every_unit() {
                let got = pool.install(|| arch.dispatch(Run(&linear, &x, rows)));
                let unit = crate::simd::name(arch);
                for r in 0..rows {
                    for c in 0..n {
                        let want = bias[c] + (0..k).map(|i| x[r * k + i] * weight[c * k + i]).sum::<f32>();
                        let g = got[r * n + c];
                        assert!(
                            (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "[{r}][{c}] of {rows}×{n}×{k}, {unit}: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// `cargo test --release -p mc-embed --lib speed -- --ignored --nocapture`: multiply-adds per second of one
    /// query-sized f32 product on one thread (the integer product's figure is printed by `int8`'s test).
    #[test]
    #[ignore]
    fn speed() {
        struct Run<'a>(&'a Linear, &'a [f32], usize, &'a mut [f32]);
        impl WithSimd for Run<'_> {
            type Output = ();
            fn with_simd<S: Simd>(self, simd: S) {
                let Run(linear, packed, rows, out) = self;
                linear.panels(simd, packed, rows, 0..linear.n.div_ceil(NR), out, linear.n);
            }
        }
        let (rows, n, k) = (12, 1536, 384);
        let weight: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
        let linear = Linear::new(&weight, vec![0.0; n], n, k);
        let x: Vec<f32> = (0..rows * k).map(|i| ((i * 104_729) % 97) as f32 / 48.0 - 1.0).collect();
        let (mut packed, mut out) = (Vec::new(), vec![0.0; rows * n]);
        let mut time = |name: &str, run: &mut dyn FnMut(Run<'_>)| {
            let t = std::time::Instant::now();
            for _ in 0..1000 {
                pack_rows(&x, rows, k, &mut packed);
                run(Run(&linear, &packed, rows, &mut out));
            }
            let e = t.elapsed() / 1000;
            println!("f32 {rows}x{n}x{k}, {name}: {e:?} = {:.1} GMAC/s", (rows * n * k) as f64 / e.as_secs_f64() / 1e9);
        };
        time("widest", &mut |r| crate::simd::arch().dispatch(r));
        #[cfg(target_arch = "x86_64")]
        if let Some(v3) = pulp::x86::V3::try_new() {
            time("avx2", &mut |r| Arch::V3(v3).dispatch(r));
        }
    }

    #[test]
    fn quantised_rows_expand_as_stored() {
        // 32 values: nibbles 0..16 twice, scale 0.5, so values (i % 16 - 8) / 2.
        let nibbles: Vec<u8> = (0..16).map(|i| (((2 * i + 1) % 16) << 4) | ((2 * i) % 16)).collect();
        let table = Table::Q4 { rows: 1, dim: 32, nibbles, scales: vec![0.5] };
        table.check().expect("lengths");
        let mut out = vec![1.0; 32];
        table.add_row(0, &mut out);
        for (i, v) in out.iter().enumerate() {
            assert_eq!(*v, 1.0 + ((i % 16) as f32 - 8.0) / 2.0, "value {i}");
        }
    }
}
