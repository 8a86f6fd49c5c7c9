//! The one table that says what an SMPP answer means for the message that got it.

use std::time::Duration;

use rusmpp::CommandStatus;

use crate::provider::SendError;

/// How long the link waits after ESME_RTHROTTLED before submitting again.
pub const THROTTLE_BACKOFF: Duration = Duration::from_secs(1);
/// The SMSC's queue is full: back off for longer than a throttle.
pub const QUEUE_FULL_BACKOFF: Duration = Duration::from_secs(5);

/// Translates a non-OK `submit_sm_resp` status into what the pipeline should do.
pub fn classify(status: CommandStatus) -> SendError {
    let code = format!("{status:?}");
    let raw = u32::from(status);
    use CommandStatus::*;
    match status {
        EsmeRthrottled => SendError::Throttled { retry_after: THROTTLE_BACKOFF },
        EsmeRmsgqful => SendError::Throttled { retry_after: QUEUE_FULL_BACKOFF },
        EsmeRsyserr | EsmeRsubmitfail | EsmeRdeliveryfailure | EsmeRunknownerr | EsmeRxTAppn | EsmeRinvbndsts => {
            SendError::Transient { code, message: format!("SMSC status 0x{raw:08X}") }
        }
        _ => SendError::Rejected { code, message: format!("SMSC status 0x{raw:08X}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use CommandStatus::*;
        for (status, retryable, label) in [
            (EsmeRthrottled, true, "throttled"),
            (EsmeRmsgqful, true, "throttled"),
            (EsmeRsyserr, true, "retry"),
            (EsmeRinvdstadr, false, "rejected"),
            (EsmeRinvsrcadr, false, "rejected"),
            (EsmeRinvmsglen, false, "rejected"),
        ] {
            let e = classify(status);
            assert_eq!(e.is_retryable(), retryable, "{status:?}");
            assert_eq!(e.outcome_label(), label, "{status:?}");
        }
        assert!(matches!(classify(EsmeRinvdstadr), SendError::Rejected { code, .. } if code == "EsmeRinvdstadr"));
    }
}
