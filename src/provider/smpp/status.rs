//! The one table that says what an SMPP status means: for a `submit_sm` (pause the link, try
//! again in place, or give up) and for a bind (refused for good, or worth another try soon).

use rusmpp::CommandStatus;

use crate::provider::SendError;

/// What the provider does with a `submit_sm` answered with a non-OK status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// ESME_RTHROTTLED: the whole bind pauses for `throttle_backoff`, then this PDU is sent
    /// again on it; the message keeps its place instead of going back to the pipeline.
    PauseLink,
    /// ESME_RMSGQFUL: as [`Action::PauseLink`], for the longer `queue_full_backoff`.
    PauseLinkLonger,
    /// A failure that may pass: sent again in place up to `max_retries` times with backoff,
    /// then handed back as [`SendError::Transient`] (the pipeline parks the job).
    Retry,
    /// The message itself is at fault (address, content, flags): [`SendError::Rejected`].
    Reject,
}

/// The table. Anything not named is taken as the message's fault: resending it would only
/// get the same answer.
pub fn action(status: CommandStatus) -> Action {
    use CommandStatus::*;
    match status {
        EsmeRthrottled => Action::PauseLink,
        EsmeRmsgqful => Action::PauseLinkLonger,
        EsmeRsyserr | EsmeRsubmitfail | EsmeRdeliveryfailure | EsmeRunknownerr | EsmeRxTAppn | EsmeRinvbndsts => Action::Retry,
        _ => Action::Reject,
    }
}

/// The `code` reports carry: the status's name as rusmpp spells it (`EsmeRinvdstadr`).
pub fn code(status: CommandStatus) -> String {
    format!("{status:?}")
}

/// What the pipeline gets when the provider stops acting on this status itself: rejected,
/// or (retries used up) transient.
pub fn error(status: CommandStatus) -> SendError {
    let (code, message) = (code(status), format!("SMSC status 0x{:08X}", u32::from(status)));
    match action(status) {
        Action::Reject => SendError::Rejected { code, message },
        _ => SendError::Transient { code, message },
    }
}

/// A bind answered with this status will be answered the same way until someone changes the
/// credentials or the SMSC's side: the provider is down, and reconnecting fast only adds load.
pub fn bind_refused(status: CommandStatus) -> bool {
    use CommandStatus::*;
    matches!(status, EsmeRinvpaswd | EsmeRinvsysid | EsmeRbindfail | EsmeRinvsystyp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_table() {
        use CommandStatus::*;
        for (status, want, retryable, label) in [
            (EsmeRthrottled, Action::PauseLink, true, "retry"),
            (EsmeRmsgqful, Action::PauseLinkLonger, true, "retry"),
            (EsmeRsyserr, Action::Retry, true, "retry"),
            (EsmeRsubmitfail, Action::Retry, true, "retry"),
            (EsmeRxTAppn, Action::Retry, true, "retry"),
            (EsmeRinvdstadr, Action::Reject, false, "rejected"),
            (EsmeRinvsrcadr, Action::Reject, false, "rejected"),
            (EsmeRinvmsglen, Action::Reject, false, "rejected"),
            (EsmeRinvesmclass, Action::Reject, false, "rejected"),
            (Other(0x0400), Action::Reject, false, "rejected"),
        ] {
            assert_eq!(action(status), want, "{status:?}");
            let e = error(status);
            assert_eq!((e.is_retryable(), e.outcome_label()), (retryable, label), "{status:?}");
        }
        assert_eq!(error(EsmeRinvdstadr), SendError::Rejected { code: "EsmeRinvdstadr".into(), message: "SMSC status 0x0000000B".into() });
    }

    #[test]
    fn bind_table() {
        use CommandStatus::*;
        for (status, refused) in [(EsmeRinvpaswd, true), (EsmeRinvsysid, true), (EsmeRbindfail, true), (EsmeRsyserr, false), (EsmeRalybnd, false)] {
            assert_eq!(bind_refused(status), refused, "{status:?}");
        }
    }
}
