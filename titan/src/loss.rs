//! The `Loss` role. Each loss names the label convention it accepts, so a batch in the other
//! convention is a compile error rather than a silent off-by-one.

use tch::{Kind, Tensor};

use crate::batch::{HfLabels, IGNORE_INDEX, ShiftedLabels};
use crate::checkpoint::Stateless;
use crate::{Error, Result};

/// Scores logits against labels of type `Labels`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot score labels of type `{Labels}`",
    label = "this loss does not take the batch's labels",
    note = "`CausalLmLoss` takes Hugging Face labels (`HfLabels`, unshifted) and `ShiftedLoss` takes Titan labels (`ShiftedLabels`, pre-shifted); pick the loss for the batch's label convention"
)]
pub trait Loss<Labels> {
    /// Sum of per-token losses and the number of tokens counted (ignored positions excluded),
    /// so gradient accumulation can weight micro-batches by their tokens.
    fn loss_sum(&self, logits: &Tensor, labels: &Labels) -> Result<(Tensor, Tensor)>;

    /// Whether this loss scores a slice of a batch's rows ([`Loss::loss_sum_rows`]), which lets
    /// a model score its logits a slice at a time and never hold the whole batch's. False
    /// unless the loss overrides it.
    fn scores_rows(&self) -> bool {
        false
    }

    /// Loss sum and count of a slice of a batch's logits: summed over all the batch's slices,
    /// what [`Loss::loss_sum`] gives for the whole. Losses that say [`Loss::scores_rows`]
    /// implement it; the default is an error.
    fn loss_sum_rows(&self, rows: &LogitRows<'_>, labels: &Labels) -> Result<(Tensor, Tensor)> {
        let _ = (rows, labels);
        Err(Error::Unsupported(format!(
            "{} scores only a batch's whole logits",
            std::any::type_name::<Self>()
        )))
    }

    /// Mean loss over counted tokens.
    fn loss(&self, logits: &Tensor, labels: &Labels) -> Result<Tensor> {
        let (sum, count) = self.loss_sum(logits, labels)?;
        mean_loss(&sum, &count)
    }
}

/// A slice of one batch's logits: `logits` (n, vocab) are rows `start..start + n` of the
/// batch's logits (batch, seq_len, vocab) flattened to (batch · seq_len, vocab).
#[derive(Debug)]
pub struct LogitRows<'t> {
    /// The slice's logits, (n, vocab).
    pub logits: &'t Tensor,
    /// Its first row among the batch's.
    pub start: i64,
    /// The batch's size.
    pub batch: i64,
    /// The batch's sequence length.
    pub seq_len: i64,
}

impl LogitRows<'_> {
    /// The slice's rows: (start, count), checked against the batch and against `labels`,
    /// which must be (batch, seq_len); errors name the rows and both shapes.
    fn checked(&self, labels: &Tensor) -> Result<(i64, i64)> {
        let (rows, _) = self.logits.size2()?;
        let shape = labels.size();
        let total = self.batch * self.seq_len;
        if shape != [self.batch, self.seq_len] || self.start < 0 || self.start + rows > total {
            return Err(Error::Mismatch(format!(
                "logit rows {}..{} of a ({}, {}) batch do not fit labels of shape {shape:?}",
                self.start,
                self.start + rows,
                self.batch,
                self.seq_len
            )));
        }
        Ok((self.start, rows))
    }

    /// The slice's own labels out of the batch's `labels` (batch, seq_len), flattened: what
    /// a loss that scores position `i` against `labels[i]` takes.
    pub fn labels_of(&self, labels: &Tensor) -> Result<Tensor> {
        let (start, rows) = self.checked(labels)?;
        Ok(labels
            .f_reshape([self.batch * self.seq_len])?
            .f_narrow(0, start, rows)?)
    }

    /// The slice's next-token targets out of the batch's unshifted `labels` (batch,
    /// seq_len): each position's next id in its sequence, a sequence's last position
    /// ignored (Hugging Face's shift), made for the slice's rows only.
    pub fn next_tokens_of(&self, labels: &Tensor) -> Result<Tensor> {
        let (start, rows) = self.checked(labels)?;
        let total = self.batch * self.seq_len;
        let at = Tensor::f_arange_start(start, start + rows, (Kind::Int64, labels.device()))?;
        let last = at.f_remainder(self.seq_len)?.f_eq(self.seq_len - 1)?;
        let next = at.f_add_scalar(1)?.f_clamp_max(total - 1)?;
        Ok(labels
            .f_reshape([total])?
            .f_index_select(0, &next)?
            .f_masked_fill(&last, IGNORE_INDEX)?)
    }
}

/// Mean of a loss sum over its counted tokens (a batch with none counts as one).
pub fn mean_loss(sum: &Tensor, count: &Tensor) -> Result<Tensor> {
    Ok(sum.f_div(&count.f_clamp_min(1)?)?)
}

/// Causal language-modelling cross-entropy in Hugging Face's convention: labels are unshifted,
/// the loss predicts position `i + 1` from logits at `i`, and −100 is ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct CausalLmLoss;

impl Stateless for CausalLmLoss {}

/// `loss`'s sum over a batch's whole logits (b, t, vocab), as one slice of all its rows: the
/// logits are scored whole (a view), the same way as a slice.
fn whole_batch<Lab>(
    loss: &impl Loss<Lab>,
    logits: &Tensor,
    labels: &Lab,
) -> Result<(Tensor, Tensor)> {
    let (b, t, v) = logits.size3()?;
    let flat = logits.f_reshape([b * t, v])?;
    let rows = LogitRows {
        logits: &flat,
        start: 0,
        batch: b,
        seq_len: t,
    };
    loss.loss_sum_rows(&rows, labels)
}

impl Loss<HfLabels> for CausalLmLoss {
    fn loss_sum(&self, logits: &Tensor, labels: &HfLabels) -> Result<(Tensor, Tensor)> {
        whole_batch(self, logits, labels)
    }

    fn scores_rows(&self) -> bool {
        true
    }

    fn loss_sum_rows(&self, rows: &LogitRows<'_>, labels: &HfLabels) -> Result<(Tensor, Tensor)> {
        cross_entropy_sum(rows.logits, &rows.next_tokens_of(&labels.0)?)
    }
}

/// Cross-entropy for pre-shifted labels (torchtitan's convention): logits at `i` are scored
/// against `labels[i]` directly; −100 is ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShiftedLoss;

impl Stateless for ShiftedLoss {}

impl Loss<ShiftedLabels> for ShiftedLoss {
    fn loss_sum(&self, logits: &Tensor, labels: &ShiftedLabels) -> Result<(Tensor, Tensor)> {
        whole_batch(self, logits, labels)
    }

    fn scores_rows(&self) -> bool {
        true
    }

    fn loss_sum_rows(
        &self,
        rows: &LogitRows<'_>,
        labels: &ShiftedLabels,
    ) -> Result<(Tensor, Tensor)> {
        cross_entropy_sum(rows.logits, &rows.labels_of(&labels.0)?)
    }
}

/// Logits per chunk of the cross-entropy: 2^26 (256 MiB in f32), so a 128K vocabulary is
/// scored 512 rows at a time and a small one all at once.
const CROSS_ENTROPY_CHUNK: i64 = 1 << 26;

/// Summed cross-entropy of logits (n, vocab; any float dtype) against targets (n), and the
/// non-ignored count: computed in f32 a chunk of rows at a time, never holding f32 logits (or
/// their log-softmax) for the whole batch (`shim::chunked_cross_entropy`).
fn cross_entropy_sum(logits: &Tensor, targets: &Tensor) -> Result<(Tensor, Tensor)> {
    let (_, v) = logits.size2()?;
    let rows = (CROSS_ENTROPY_CHUNK / v.max(1)).max(1);
    let sum = crate::shim::chunked_cross_entropy(logits, targets, IGNORE_INDEX, rows)?;
    let count = targets.f_ne(IGNORE_INDEX)?.f_sum(Kind::Float)?;
    Ok((sum, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_shifted_mean_cross_entropy_and_ignores_minus_100() -> Result<()> {
        tch::manual_seed(0);
        let logits = Tensor::randn([2, 5, 7], (Kind::Float, tch::Device::Cpu));
        let labels = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6, 0, -100, -100, 1]).view([2, 5]);
        let loss = CausalLmLoss.loss(&logits, &HfLabels(labels.shallow_clone()))?;
        // Reference: per-token log-softmax over the shifted pairs that are not ignored.
        let logp = logits.log_softmax(-1, Kind::Float);
        let pairs = [
            (0, 0, 2),
            (0, 1, 3),
            (0, 2, 4),
            (0, 3, 5),
            (1, 0, 0),
            (1, 3, 1),
        ];
        let mut total = 0.0;
        for (b, t, y) in pairs {
            total -= logp.double_value(&[b, t, y]);
        }
        let expected = total / pairs.len() as f64;
        assert!((loss.double_value(&[]) - expected).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn shifted_loss_on_shifted_labels_equals_causal_loss_on_unshifted() -> Result<()> {
        tch::manual_seed(1);
        let logits = Tensor::randn([2, 6, 9], (Kind::Float, tch::Device::Cpu));
        let ids = Tensor::randint(9, [2, 6], (Kind::Int64, tch::Device::Cpu));
        let hf = CausalLmLoss.loss(&logits, &HfLabels(ids.shallow_clone()))?;
        // Titan's convention: labels[i] = ids[i + 1]; the last position has no target.
        let shifted = Tensor::cat(
            &[
                ids.narrow(1, 1, 5),
                Tensor::full([2, 1], IGNORE_INDEX, (Kind::Int64, tch::Device::Cpu)),
            ],
            1,
        );
        let titan = ShiftedLoss.loss(&logits, &ShiftedLabels(shifted))?;
        assert!((hf.double_value(&[]) - titan.double_value(&[])).abs() < 1e-6);
        Ok(())
    }

    /// Sums of `loss` over the rows of `logits` (b, t, v) taken `per` at a time.
    fn by_rows<Lab>(
        loss: &impl Loss<Lab>,
        logits: &Tensor,
        labels: &Lab,
        per: i64,
    ) -> Result<(f64, f64)> {
        let (b, t, v) = logits.size3()?;
        let flat = logits.f_reshape([b * t, v])?;
        let (mut sum, mut count) = (0.0, 0.0);
        for start in (0..b * t).step_by(per as usize) {
            let n = per.min(b * t - start);
            let slice = flat.f_narrow(0, start, n)?;
            let rows = LogitRows {
                logits: &slice,
                start,
                batch: b,
                seq_len: t,
            };
            let (s, c) = loss.loss_sum_rows(&rows, labels)?;
            sum += s.f_double_value(&[])?;
            count += c.f_double_value(&[])?;
        }
        Ok((sum, count))
    }

    #[test]
    fn scoring_by_rows_sums_to_the_whole() -> Result<()> {
        tch::manual_seed(3);
        let logits = Tensor::randn([3, 5, 11], (Kind::Float, tch::Device::Cpu));
        let ids = Tensor::randint(11, [3, 5], (Kind::Int64, tch::Device::Cpu));
        let _ = ids.narrow(1, 2, 2).fill_(IGNORE_INDEX);
        let (hf, shifted) = (
            HfLabels(ids.shallow_clone()),
            ShiftedLabels(ids.shallow_clone()),
        );
        let whole_hf = CausalLmLoss.loss_sum(&logits, &hf)?;
        let whole_shifted = ShiftedLoss.loss_sum(&logits, &shifted)?;
        for per in [1, 4, 7, 15, 100] {
            for ((sum, count), (ws, wc)) in [
                (by_rows(&CausalLmLoss, &logits, &hf, per)?, &whole_hf),
                (
                    by_rows(&ShiftedLoss, &logits, &shifted, per)?,
                    &whole_shifted,
                ),
            ] {
                assert!(
                    (sum - ws.double_value(&[])).abs() < 1e-4,
                    "{per} rows at a time"
                );
                assert_eq!(count, wc.double_value(&[]), "{per} rows at a time");
            }
        }
        // Rows of a batch shaped unlike the labels are an error naming both.
        let slice = logits.f_reshape([15, 11])?;
        let rows = LogitRows {
            logits: &slice,
            start: 0,
            batch: 5,
            seq_len: 4,
        };
        let err = CausalLmLoss
            .loss_sum_rows(&rows, &hf)
            .expect_err("20 rows of labels 3 x 5")
            .to_string();
        assert!(err.contains("(5, 4)") && err.contains("[3, 5]"), "{err}");
        let slice = logits.f_reshape([15, 11])?.f_narrow(0, 0, 2)?;
        let before = LogitRows {
            logits: &slice,
            start: -1,
            batch: 3,
            seq_len: 5,
        };
        let err = ShiftedLoss
            .loss_sum_rows(&before, &shifted)
            .expect_err("rows before the batch")
            .to_string();
        assert!(err.contains("rows -1..1"), "{err}");
        Ok(())
    }
}
