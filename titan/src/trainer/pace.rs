//! Whether the training data is smaller than a step's batches, told by its epochs: their
//! count runs ahead of training by whatever the data path reads ahead (the shuffle buffer, the
//! read-ahead's chunks), so a lead is only a sign when it is large, and a pace is the proof.

/// Watches the training data's epoch at log points from step 10 on and says, once, when every
/// step reads all of the data several times over: the epoch is at least twice the step, or it
/// grows at two or more a step over at least as many steps as came before the first look.
#[derive(Debug, Default)]
pub(crate) struct EpochPace {
    /// The first log point at step 10 or later, and the epoch there.
    mark: Option<(u64, u64)>,
    said: bool,
}

impl EpochPace {
    /// The sentence to say at `step`, in epoch `epoch`, the first time the data is small.
    pub(crate) fn check(&mut self, step: u64, epoch: u64) -> Option<String> {
        if self.said || step < 10 {
            return None;
        }
        let (from, then) = *self.mark.get_or_insert((step, epoch));
        let paced = step >= 2 * from && epoch.saturating_sub(then) >= 2 * (step - from);
        let ahead = epoch >= 2 * step;
        if !paced && !ahead {
            return None;
        }
        self.said = true;
        let pace = match paced {
            true => format!(" (from epoch {then} at step {from})"),
            false => String::new(),
        };
        Some(format!(
            "step {step} is in epoch {epoch} of the training data{pace}: it is smaller than a \
             step's batches, so every step reads all of it, several times over"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lead_read_ahead_is_not_small_data_and_a_large_lead_or_a_fast_pace_is() {
        // Eight passes read ahead at once, then a pass every few hundred steps: large data.
        let mut pace = EpochPace::default();
        for step in (1..=200).step_by(3) {
            assert_eq!(pace.check(step, 8 + step / 300), None, "step {step}");
        }
        // Epochs far ahead of the steps: said at once, then never again.
        let mut pace = EpochPace::default();
        assert_eq!(pace.check(5, 500), None, "before step 10");
        let said = pace.check(10, 8191).expect("far ahead");
        assert!(said.contains("step 10 is in epoch 8191 of"), "{said}");
        assert_eq!(pace.check(20, 9000), None);
        // A lead within bounds, then three passes a step.
        let mut pace = EpochPace::default();
        assert_eq!(pace.check(10, 12), None);
        assert_eq!(
            pace.check(15, 27),
            None,
            "before twice the first look's step"
        );
        let said = pace.check(20, 42).expect("small data");
        assert!(
            said.contains("epoch 42 of the training data (from epoch 12 at step 10)"),
            "{said}"
        );
    }
}
