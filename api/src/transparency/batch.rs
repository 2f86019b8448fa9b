//! Receipts signed in batches (`ochered-receipt-v2`, docs/TRANSPARENCY.md): the handlers of
//! the submissions acknowledged by one commit wake together, each hands its receipt's fields
//! to one task, and that task signs what has gathered (at most
//! [`ochered_transparency::RECEIPT_BATCH_MAX`]) under one Ed25519 signature. An Ed25519
//! signature is the one large cost of a submission's answer of ours (about 15 µs on the
//! reference machine); shared by a batch it is next to nothing.
//!
//! The task waits for nobody: it signs as soon as it has one receipt, after letting the
//! tasks already woken run once (so that the rest of a commit's answers join the batch). At a
//! low rate a batch is one receipt, signed at once. `ochered_receipts_signed_total` divided
//! by `ochered_receipt_signatures_total` is the mean batch.

use std::sync::OnceLock;

use ochered_transparency::{Receipt, ReceiptFields, SigningKey, RECEIPT_BATCH_MAX};
use tokio::sync::{mpsc, oneshot};

type Job = (ReceiptFields, oneshot::Sender<Receipt>);

/// Signs receipts in batches on a task of its own, started on first use.
pub(crate) struct BatchSigner {
    key: SigningKey,
    jobs: OnceLock<mpsc::UnboundedSender<Job>>,
}

impl BatchSigner {
    pub(crate) fn new(key: SigningKey) -> Self {
        BatchSigner {
            key,
            jobs: OnceLock::new(),
        }
    }

    /// The receipt of `fields`, signed with whatever else is being signed at this moment;
    /// `None` only if the signing task ended with the receipt in hand (its runtime shut
    /// down), which the answer reports as a receipt it could not make. Must be called within
    /// a Tokio runtime (the task starts on first use).
    pub(crate) async fn sign(&self, fields: ReceiptFields) -> Option<Receipt> {
        let jobs = self.jobs.get_or_init(|| {
            let (send, receive) = mpsc::unbounded_channel();
            tokio::spawn(run(self.key.clone(), receive));
            send
        });
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError((fields, _))) = jobs.send((fields, reply)) {
            // The task is gone (its runtime is shutting down): sign here.
            return Some(Receipt::sign(&self.key, fields));
        }
        let receipt = answer.await.ok();
        if receipt.is_none() {
            tracing::warn!("no receipt: the receipt signer stopped with it in hand");
        }
        receipt
    }
}

async fn run(key: SigningKey, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(RECEIPT_BATCH_MAX);
    while let Some(first) = jobs.recv().await {
        batch.push(first);
        // The other answers of the commit that woke this one are ready to run: let them
        // hand in their receipts before signing.
        tokio::task::yield_now().await;
        while batch.len() < RECEIPT_BATCH_MAX {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        metrics::counter!("ochered_receipt_signatures_total").increment(1);
        metrics::counter!("ochered_receipts_signed_total").increment(batch.len() as u64);
        let (fields, replies): (Vec<ReceiptFields>, Vec<oneshot::Sender<Receipt>>) =
            batch.drain(..).unzip();
        for (receipt, reply) in Receipt::sign_batch(&key, fields).into_iter().zip(replies) {
            // A handler that went away (its client hung up) no longer needs its receipt.
            let _ = reply.send(receipt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(seq: u64) -> ReceiptFields {
        ReceiptFields {
            authority: "demo".into(),
            service: "kindergarten".into(),
            number: seq,
            registered_at: "2025-04-01T00:00:00.000123+05:00".into(),
            time_zone: "Asia/Yekaterinburg".into(),
            authority_seq: seq,
            event_hash: [seq as u8; 32],
        }
    }

    /// Receipts asked for at once are signed together, each verifies, and none is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn receipts_asked_for_at_once_share_signatures_and_each_verifies() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key();
        let signer = std::sync::Arc::new(BatchSigner::new(key));
        let asks: Vec<_> = (1..=200u64)
            .map(|seq| {
                let signer = signer.clone();
                tokio::spawn(async move { signer.sign(fields(seq)).await.unwrap() })
            })
            .collect();
        let mut signatures = std::collections::HashSet::new();
        for (seq, ask) in (1..=200u64).zip(asks) {
            let receipt = ask.await.unwrap();
            assert_eq!(receipt.authority_seq, seq);
            receipt.verify(&public).unwrap();
            let batch = receipt.batch.as_ref().unwrap();
            assert!(batch.size as usize <= RECEIPT_BATCH_MAX);
            signatures.insert(receipt.signature.clone());
        }
        assert!(
            signatures.len() < 200,
            "200 receipts asked for at once took {} signatures",
            signatures.len()
        );
        // Alone, a receipt is signed at once, in a batch of one.
        let alone = signer.sign(fields(7)).await.unwrap();
        assert_eq!(alone.batch.as_ref().unwrap().size, 1);
        assert_eq!(alone, Receipt::sign(&signer.key, fields(7)));
    }
}
