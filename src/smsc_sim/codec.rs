//! Framing for the simulator's connections: rusmpp's `CommandCodec`, one PDU at a time, with
//! a body that fails to decode reported as a [`Frame::Malformed`] instead of an error.
//!
//! `CommandCodec` alone returns a decode error and `Framed` then ends the stream, which would
//! drop the connection; an SMSC answers such a PDU with generic_nack and carries on.

use bytes::BytesMut;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::Command;
use tokio_util::codec::{Decoder, Encoder};

/// Largest PDU accepted. Well above any legal submit_sm (message_payload can reach 64 KiB).
pub const MAX_PDU_LEN: usize = 70_000;
const HEADER_LEN: usize = 16;

// Boxing the command would cost an allocation per PDU to save a move of 280 bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Frame {
    Command(Command),
    /// The header was readable but the body was not; enough to address a generic_nack.
    Malformed {
        command_id: u32,
        sequence_number: u32,
    },
}

#[derive(Debug, Default)]
pub struct SimCodec;

impl Decoder for SimCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        let Some(len_bytes) = src.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        if !(HEADER_LEN..=MAX_PDU_LEN).contains(&len) {
            // With a nonsense length there is no next PDU boundary to resynchronise on.
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("command_length {len} outside {HEADER_LEN}..={MAX_PDU_LEN}")));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(len);
        let word = |at: usize| u32::from_be_bytes(frame[at..at + 4].try_into().expect("4 bytes"));
        let (command_id, sequence_number) = (word(4), word(12));
        // A fresh inner codec per frame: its state machine must not carry over a failed decode.
        match CommandCodec::new().without_max_length().decode(&mut frame) {
            Ok(Some(cmd)) => Ok(Some(Frame::Command(cmd))),
            Ok(None) | Err(_) => Ok(Some(Frame::Malformed { command_id, sequence_number })),
        }
    }
}

impl Encoder<Command> for SimCodec {
    type Error = std::io::Error;

    fn encode(&mut self, cmd: Command, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        CommandCodec::new().encode(&cmd, dst).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore};
    use rusmpp::{CommandStatus, Pdu};

    fn encoded(cmd: Command) -> BytesMut {
        let mut buf = BytesMut::new();
        SimCodec.encode(cmd, &mut buf).unwrap();
        buf
    }

    #[test]
    fn decodes_whole_and_split_frames() {
        let mut buf = encoded(Command::new(CommandStatus::EsmeRok, 7, Pdu::EnquireLink));
        let tail = buf.split_off(10);
        assert!(SimCodec.decode(&mut buf).unwrap().is_none());
        buf.unsplit(tail);
        match SimCodec.decode(&mut buf).unwrap() {
            Some(Frame::Command(c)) => assert_eq!(c.sequence_number(), 7),
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_body_is_malformed_and_next_frame_still_decodes() {
        // submit_sm (0x04) whose body is one unterminated C-string.
        let mut buf = BytesMut::from(&[0, 0, 0, 20, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9, b'x', b'y', b'z', b'w'][..]);
        buf.extend_from_slice(&encoded(Command::new(CommandStatus::EsmeRok, 10, Pdu::EnquireLink)));
        match SimCodec.decode(&mut buf).unwrap() {
            Some(Frame::Malformed { command_id: 4, sequence_number: 9 }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(SimCodec.decode(&mut buf).unwrap(), Some(Frame::Command(_))));
    }

    #[test]
    fn bad_length_is_an_error() {
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 0, 0, 0, 0][..]);
        assert!(SimCodec.decode(&mut buf).is_err());
    }

    #[test]
    fn mutated_submit_sm_never_panics() {
        use rusmpp::pdus::SubmitSm;
        use rusmpp::tlvs::MessageSubmissionRequestTlvValue as Tlv;
        use rusmpp::types::{COctetString, OctetString};
        let sm = SubmitSm::builder()
            .source_addr(COctetString::from_static_slice(b"ACME\0").unwrap())
            .destination_addr(COctetString::from_static_slice(b"4915112345678\0").unwrap())
            .short_message(OctetString::from_static_slice(&[5, 0, 3, 1, 2, 1, b'h', b'i']).unwrap())
            .tlvs(vec![Tlv::SarMsgRefNum(7), Tlv::SarTotalSegments(2), Tlv::SarSegmentSeqnum(1)])
            .build();
        let valid = encoded(Command::new(CommandStatus::EsmeRok, 3, sm));
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let mut bytes = valid.to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(HEADER_LEN..bytes.len());
                bytes[at] = rng.random();
            }
            bytes.truncate(rng.random_range(HEADER_LEN..=bytes.len()));
            let len = bytes.len() as u32;
            bytes[..4].copy_from_slice(&len.to_be_bytes());
            let mut buf = BytesMut::from(&bytes[..]);
            assert!(SimCodec.decode(&mut buf).unwrap().is_some());
        }
    }

    #[test]
    fn random_bodies_never_panic() {
        let mut rng = rand::rng();
        let ids = [1u32, 2, 4, 5, 6, 9, 0x15, 0x80000004, 0x80000005, 0x103, 0xdead];
        for _ in 0..5_000 {
            let body_len = rng.random_range(0..200usize);
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&((HEADER_LEN + body_len) as u32).to_be_bytes());
            buf.extend_from_slice(&ids[rng.random_range(0..ids.len())].to_be_bytes());
            buf.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
            let mut body = vec![0u8; body_len];
            rng.fill_bytes(&mut body);
            buf.extend_from_slice(&body);
            assert!(SimCodec.decode(&mut buf).unwrap().is_some());
            assert!(buf.is_empty());
        }
    }
}
