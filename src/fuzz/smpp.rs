//! The `deliver_sm` target: bytes from an SMSC, framed by rusmpp's codec as a bind frames
//! them, then read as a delivery receipt or an MO message the way a bind reads them.

use std::sync::Arc;

use bytes::BytesMut;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::{Command, Pdu};
use tokio_util::codec::{Decoder, Encoder};

use crate::provider::smpp::incoming;
use crate::provider::smpp::SmppReceiptIdFormat;
use crate::receipt::ProviderEvent;

/// The longest PDU a bind reads: rusmppc's `max_command_length` default, which our binds keep.
const MAX_COMMAND_LENGTH: usize = 4096;

const ID_FORMATS: [SmppReceiptIdFormat; 4] =
    [SmppReceiptIdFormat::Auto, SmppReceiptIdFormat::AsIs, SmppReceiptIdFormat::HexToDecimal, SmppReceiptIdFormat::DecimalToHex];

/// A stream of PDUs as a bind reads it: frame after frame until one does not decode (the
/// bind drops the link there).
pub fn deliver_sm(data: &[u8]) {
    super::bounded("deliver_sm", data.len(), || {
        let mut codec = CommandCodec::new().with_max_length(MAX_COMMAND_LENGTH);
        let mut buf = BytesMut::from(data);
        while let Ok(Some(cmd)) = codec.decode(&mut buf) {
            check_command(&cmd);
        }
    });
}

fn check_command(cmd: &Command) {
    let Some(Pdu::DeliverSm(pdu)) = cmd.pdu() else { return };
    // Written again and read back, the deliver_sm is the same: what we read is what was sent,
    // nothing dropped or invented by decoding. (Other PDUs need not be: an `enquire_link`
    // with an error status and a body reads without the body, and writes back without it.)
    let mut frame = BytesMut::new();
    CommandCodec::new().encode(cmd, &mut frame).expect("encoding into memory cannot fail");
    let frame_len = frame.len();
    let again = CommandCodec::new().without_max_length().decode(&mut frame);
    assert!(matches!(&again, Ok(Some(c)) if c == cmd), "deliver_sm: {cmd:?} encoded again reads as {again:?}");

    let provider: Arc<str> = Arc::from("fuzz");
    for format in ID_FORMATS {
        match incoming::event(&provider, format, pdu) {
            Some(ProviderEvent::Receipt(r)) => {
                // Latin-1 and UCS-2 decoding at most double the bytes; a number becomes ≤ 32 hex digits.
                let read = crate::provider::smpp::receipt::parse_deliver_sm(pdu);
                assert!(!r.message_id.is_empty(), "deliver_sm: {format:?} made an empty message id of {read:?}");
                assert!(r.message_id.len() <= 2 * frame_len + 32, "deliver_sm: message id of {} bytes", r.message_id.len());
                assert!(r.error_code.as_ref().is_none_or(|e| e.len() <= 2 * frame_len), "deliver_sm: error code");
            }
            Some(ProviderEvent::Inbound(m)) => {
                // One byte is at most one character of three bytes (GSM-7 `€`, U+FFFD).
                assert!(m.text.len() <= 3 * frame_len + 3, "deliver_sm: MO text of {} bytes from {frame_len}", m.text.len());
                assert!(m.from.len() + m.to.len() <= frame_len, "deliver_sm: MO addresses");
            }
            None => {}
        }
    }
}
