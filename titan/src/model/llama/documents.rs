//! Documents packed into one row, kept apart (torchtitan's `block_causal` mask): a token
//! attends only to the earlier tokens of its own document, and rotary positions restart at each
//! document (as packing-aware `position_ids` do in Hugging Face). A document ends with (and
//! holds) its EOS token, as titan's packed layout joins them; a row that starts inside a
//! document starts its positions at 0 there.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::Result;

/// Which earlier tokens of its row a token attends to (torchtitan's `attn_mask_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttnMaskType {
    /// All of them, whatever document they belong to (Hugging Face's; titan's default).
    #[default]
    Causal,
    /// Those of its own document, documents ending at `eos_token_id` (torchtitan's
    /// `block_causal`), with positions restarting at each.
    BlockCausal,
}

/// Where each token of a batch of rows stands among the row's documents.
#[derive(Debug)]
pub(super) struct Documents {
    /// Each token's position in its document (b, t).
    pub positions: Tensor,
    /// Whether query `i` may attend to key `j`: same document and `j <= i` (b, 1, t, t).
    pub mask: Tensor,
}

impl Documents {
    /// The documents of the rows `input_ids` (b, t), each ending with an `eos` token; on the
    /// ids' device, with no host synchronisation (a CUDA graph captures it).
    pub(super) fn of(input_ids: &Tensor, eos: i64) -> Result<Self> {
        let (b, t) = input_ids.size2()?;
        let device = input_ids.device();
        let is_eos = input_ids.f_eq(eos)?.f_to_kind(Kind::Int64)?;
        // A token's document: the EOS tokens before it (its own EOS belongs to it).
        let doc = is_eos.f_cumsum(1, Kind::Int64)?.f_sub(&is_eos)?;
        // A document starts at the row's first token and after each EOS.
        let starts = Tensor::f_cat(
            &[
                Tensor::f_ones([b, 1], (Kind::Int64, device))?,
                is_eos.f_narrow(1, 0, t - 1)?,
            ],
            1,
        )?;
        let index = Tensor::f_arange(t, (Kind::Int64, device))?
            .f_unsqueeze(0)?
            .f_expand([b, t], false)?;
        // The latest start at or before each token (every index is a start or follows one).
        let (start, _) = index.f_mul(&starts)?.f_cummax(1)?;
        let positions = index.f_sub(&start)?;
        let same = doc.f_unsqueeze(2)?.f_eq_tensor(&doc.f_unsqueeze(1)?)?;
        let causal = Tensor::f_ones([t, t], (Kind::Bool, device))?.f_tril(0)?;
        let mask = same.f_logical_and(&causal)?.f_unsqueeze(1)?;
        Ok(Self { positions, mask })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two rows, EOS = 9: positions restart after each EOS, and the mask keeps each document to
    /// itself (a row cut inside a document starts it at 0).
    #[test]
    fn positions_restart_and_documents_see_only_themselves() -> Result<()> {
        let ids = Tensor::from_slice(&[5i64, 6, 9, 7, 8, 9, 4, 3]).view([1, 8]);
        let ids = Tensor::cat(&[ids.shallow_clone(), ids.flip([1])], 0);
        let docs = Documents::of(&ids, 9)?;
        let positions: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(&docs.positions)?;
        assert_eq!(positions[0], [0, 1, 2, 0, 1, 2, 0, 1]);
        // Reversed: 3 4 9 | 8 7 9 | 6 5.
        assert_eq!(positions[1], [0, 1, 2, 0, 1, 2, 0, 1]);
        let mask = docs.mask.f_to_kind(Kind::Int64)?.squeeze_dim(1);
        let row: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(&mask.get(0))?;
        assert_eq!(
            row[2],
            [1, 1, 1, 0, 0, 0, 0, 0],
            "an EOS sees its own document"
        );
        assert_eq!(
            row[4],
            [0, 0, 0, 1, 1, 0, 0, 0],
            "the second document sees itself"
        );
        assert_eq!(row[7], [0, 0, 0, 0, 0, 0, 1, 1]);
        Ok(())
    }

    /// A row with no EOS is one document: the plain causal mask and positions 0..t.
    #[test]
    fn a_row_without_eos_is_plain_causal() -> Result<()> {
        let ids = Tensor::from_slice(&[1i64, 2, 3, 4]).view([1, 4]);
        let docs = Documents::of(&ids, 9)?;
        assert_eq!(
            Vec::<i64>::try_from(docs.positions.view([-1]))?,
            [0, 1, 2, 3]
        );
        let causal = Tensor::ones([4, 4], (Kind::Bool, tch::Device::Cpu)).tril(0);
        assert!(docs.mask.view([4, 4]).equal(&causal));
        Ok(())
    }
}
