//! Concatenated-SMS handling: reading a submit_sm's user data (short_message or
//! message_payload), finding a part's (ref, total, seq) in its UDH or SAR TLVs, and joining
//! parts into one logical message once all of them have arrived, in any order.
//!
//! Pure logic, no I/O: the simulator's session feeds parts in and gets whole messages out; the
//! SMPP provider reads MO parts with [`split_user_data`].

use std::collections::{HashMap, VecDeque};

use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::TlvValue;

/// esm_class bit 6: the short message starts with a User Data Header.
pub const ESM_UDHI: u8 = 0x40;

/// Where a part sits in its concatenated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// 8-bit references are widened; a sender's 8-bit and 16-bit ref spaces rarely mix.
    pub reference: u16,
    pub total: u8,
    pub seq: u8,
}

/// SAR TLVs as read from the PDU, each optional because senders may include any subset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sar {
    pub msg_ref_num: Option<u16>,
    pub total_segments: Option<u8>,
    pub segment_seqnum: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdhError {
    #[error("UDHI is set but the UDH length runs past the short message")]
    Truncated,
    #[error("concatenation info element has total {total} and sequence {seq}")]
    BadConcat { total: u8, seq: u8 },
}

/// A submit_sm's message bytes (short_message, or message_payload when short_message is
/// empty) and its SAR TLVs: what [`split_user_data`] takes.
pub fn submit_user_data(sm: &SubmitSm) -> (&[u8], Sar) {
    let mut data: &[u8] = sm.short_message().as_ref();
    let mut sar = Sar::default();
    for tlv in sm.tlvs() {
        match tlv.value() {
            Some(TlvValue::MessagePayload(p)) if data.is_empty() => data = p.value.as_ref(),
            Some(TlvValue::SarMsgRefNum(v)) => sar.msg_ref_num = Some(*v),
            Some(TlvValue::SarTotalSegments(v)) => sar.total_segments = Some(*v),
            Some(TlvValue::SarSegmentSeqnum(v)) => sar.segment_seqnum = Some(*v),
            _ => {}
        }
    }
    (data, sar)
}

/// Splits user data into its concatenation info and the payload after any UDH.
///
/// A UDH concatenation IE (0x00 or 0x08) wins over SAR TLVs; a part that says it is 1 of 1 is
/// treated as unconcatenated.
pub fn split_user_data(esm_class: u8, user_data: &[u8], sar: Sar) -> Result<(Option<Concat>, &[u8]), UdhError> {
    let (from_udh, payload) = if esm_class & ESM_UDHI != 0 {
        let (&udhl, rest) = user_data.split_first().ok_or(UdhError::Truncated)?;
        let udhl = udhl as usize;
        if rest.len() < udhl {
            return Err(UdhError::Truncated);
        }
        let (udh, payload) = rest.split_at(udhl);
        (parse_udh(udh)?, payload)
    } else {
        (None, user_data)
    };
    let concat = from_udh.or(match sar {
        Sar { msg_ref_num: Some(reference), total_segments: Some(total), segment_seqnum: Some(seq) } => Some(Concat { reference, total, seq }),
        _ => None,
    });
    match concat {
        Some(c) if c.total == 0 || c.seq == 0 || c.seq > c.total => Err(UdhError::BadConcat { total: c.total, seq: c.seq }),
        Some(c) if c.total == 1 => Ok((None, payload)),
        other => Ok((other, payload)),
    }
}

/// Walks the information elements of a UDH (without its length octet) and returns the
/// concatenation IE, ignoring every other IE (ports, national language shifts, …).
fn parse_udh(mut udh: &[u8]) -> Result<Option<Concat>, UdhError> {
    let mut found = None;
    while let [iei, iedl, rest @ ..] = udh {
        let len = *iedl as usize;
        if rest.len() < len {
            return Err(UdhError::Truncated);
        }
        let (data, next) = rest.split_at(len);
        match (*iei, data) {
            (0x00, &[reference, total, seq]) => {
                found = Some(Concat { reference: reference as u16, total, seq });
            }
            (0x08, &[hi, lo, total, seq]) => {
                found = Some(Concat { reference: u16::from_be_bytes([hi, lo]), total, seq });
            }
            _ => {}
        }
        udh = next;
    }
    if udh.len() == 1 {
        return Err(UdhError::Truncated);
    }
    Ok(found)
}

/// One submit_sm's contribution to a message.
#[derive(Debug)]
pub struct Part<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    pub concat: Option<Concat>,
    pub data_coding: u8,
    pub message_id: String,
    /// Only what the caller wants to keep; an empty slice when nobody needs the text.
    pub payload: &'a [u8],
}

/// A complete logical message. Parts are joined as bytes before decoding so that a UCS-2
/// surrogate pair (or any multi-byte unit) split across parts decodes correctly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub message_ids: Vec<String>,
    pub payload: Vec<u8>,
    pub parts: u8,
    pub data_coding: u8,
}

type Key = (String, String, u16, u8);

struct Pending<T> {
    /// Set by the first part to arrive so every part of a message shares it (the receipt outcome).
    tag: T,
    /// Indexed by seq - 1.
    parts: Vec<Option<(String, Vec<u8>, u8)>>,
    received: u8,
    generation: u64,
}

/// Joins parts keyed by (source, destination, ref, total).
pub struct Reassembler<T> {
    pending: HashMap<Key, Pending<T>>,
    /// Insertion order, to evict the oldest incomplete message when `capacity` is reached;
    /// a sender that never sends its last parts must not grow memory forever.
    order: VecDeque<(Key, u64)>,
    next_generation: u64,
    capacity: usize,
}

impl<T: Copy> Reassembler<T> {
    pub fn new(capacity: usize) -> Self {
        Self { pending: HashMap::new(), order: VecDeque::new(), next_generation: 0, capacity: capacity.max(1) }
    }

    /// Incomplete messages currently held.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds a part. Returns the message's tag (from `new_tag` if this part started the message)
    /// and, when this part completed it, the whole message. A repeated seq is ignored.
    pub fn push(&mut self, part: Part<'_>, new_tag: impl FnOnce() -> T) -> (T, Option<Assembled>) {
        let Some(concat) = part.concat else {
            let whole = Assembled { message_ids: vec![part.message_id], payload: part.payload.to_vec(), parts: 1, data_coding: part.data_coding };
            return (new_tag(), Some(whole));
        };
        let key: Key = (part.source.to_owned(), part.destination.to_owned(), concat.reference, concat.total);
        if !self.pending.contains_key(&key) {
            self.evict_to_fit();
            let generation = self.next_generation;
            self.next_generation += 1;
            self.order.push_back((key.clone(), generation));
            let pending = Pending { tag: new_tag(), parts: vec![None; concat.total as usize], received: 0, generation };
            self.pending.insert(key.clone(), pending);
        }
        let entry = self.pending.get_mut(&key).expect("inserted above");
        let tag = entry.tag;
        let slot = &mut entry.parts[concat.seq as usize - 1];
        if slot.is_none() {
            *slot = Some((part.message_id, part.payload.to_vec(), part.data_coding));
            entry.received += 1;
        }
        if entry.received < concat.total {
            return (tag, None);
        }
        let entry = self.pending.remove(&key).expect("present");
        let mut whole = Assembled { message_ids: Vec::with_capacity(entry.parts.len()), payload: Vec::new(), parts: concat.total, data_coding: 0 };
        for (i, (id, bytes, dc)) in entry.parts.into_iter().flatten().enumerate() {
            if i == 0 {
                whole.data_coding = dc;
            }
            whole.message_ids.push(id);
            whole.payload.extend_from_slice(&bytes);
        }
        (tag, Some(whole))
    }

    fn evict_to_fit(&mut self) {
        while self.pending.len() >= self.capacity {
            let Some((key, generation)) = self.order.pop_front() else { return };
            if self.pending.get(&key).is_some_and(|p| p.generation == generation) {
                self.pending.remove(&key);
            }
        }
        // Completed messages leave stale entries in `order`; drop them once they dominate.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let pending = &self.pending;
            self.order.retain(|(k, g)| pending.get(k).is_some_and(|p| p.generation == *g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udh8(reference: u8, total: u8, seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![5, 0x00, 3, reference, total, seq];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn split_user_data_table() {
        let none = Sar::default();
        let sar = Sar { msg_ref_num: Some(0x1234), total_segments: Some(3), segment_seqnum: Some(2) };
        let c = |reference, total, seq| Some(Concat { reference, total, seq });
        type Want<'a> = Result<(Option<Concat>, &'a [u8]), UdhError>;
        let cases: Vec<(u8, Vec<u8>, Sar, Want)> = vec![
            (0x00, b"plain".to_vec(), none, Ok((None, b"plain"))),
            (0x40, udh8(7, 3, 1, b"abc"), none, Ok((c(7, 3, 1), b"abc"))),
            (0x40, vec![6, 0x08, 4, 0xAB, 0xCD, 2, 2, b'x'], none, Ok((c(0xABCD, 2, 2), b"x"))),
            // Port IE before the concat IE is skipped.
            (0x40, vec![11, 0x05, 4, 0, 1, 0, 2, 0x00, 3, 9, 2, 1, b'p'], none, Ok((c(9, 2, 1), b"p"))),
            (0x40, vec![0, b'z'], none, Ok((None, b"z"))),
            (0x00, b"sar".to_vec(), sar, Ok((c(0x1234, 3, 2), b"sar"))),
            (0x40, udh8(1, 2, 2, b"u"), sar, Ok((c(1, 2, 2), b"u"))),
            (0x00, b"one".to_vec(), Sar { segment_seqnum: Some(1), ..sar }, Ok((c(0x1234, 3, 1), b"one"))),
            (0x40, udh8(1, 1, 1, b"solo"), none, Ok((None, b"solo"))),
            (0x40, vec![], none, Err(UdhError::Truncated)),
            (0x40, vec![5, 0x00, 3], none, Err(UdhError::Truncated)),
            (0x40, vec![2, 0x00, 3], none, Err(UdhError::Truncated)),
            (0x40, udh8(1, 2, 3, b""), none, Err(UdhError::BadConcat { total: 2, seq: 3 })),
            (0x40, udh8(1, 0, 0, b""), none, Err(UdhError::BadConcat { total: 0, seq: 0 })),
        ];
        for (esm, data, sar, want) in cases {
            assert_eq!(split_user_data(esm, &data, sar), want, "esm {esm:#x} data {data:02x?}");
        }
    }

    #[test]
    fn submit_user_data_reads_short_message_payload_and_sar() {
        use rusmpp::tlvs::MessageSubmissionRequestTlvValue as Tlv;
        use rusmpp::types::{AnyOctetString, OctetString};
        use rusmpp::values::MessagePayload;
        let sm = |short: &[u8], tlvs: Vec<Tlv>| SubmitSm::builder().short_message(OctetString::from_vec(short.to_vec()).unwrap()).tlvs(tlvs).build();
        let payload = || Tlv::MessagePayload(MessagePayload::new(AnyOctetString::from_slice(b"long")));
        let sar = vec![Tlv::SarMsgRefNum(7), Tlv::SarTotalSegments(2), Tlv::SarSegmentSeqnum(1)];
        let full = Sar { msg_ref_num: Some(7), total_segments: Some(2), segment_seqnum: Some(1) };
        let cases: Vec<(SubmitSm, (&[u8], Sar))> = vec![
            (sm(b"hi", vec![]), (b"hi", Sar::default())),
            (sm(b"", vec![payload()]), (b"long", Sar::default())),
            // short_message wins when both are present.
            (sm(b"hi", vec![payload()]), (b"hi", Sar::default())),
            (sm(b"part", sar), (b"part", full)),
        ];
        for (i, (pdu, want)) in cases.iter().enumerate() {
            assert_eq!(submit_user_data(pdu), *want, "case {i}");
        }
    }

    fn part<'a>(concat: Option<Concat>, id: &str, payload: &'a [u8]) -> Part<'a> {
        Part { source: "100", destination: "200", concat, data_coding: 8, message_id: id.into(), payload }
    }

    #[test]
    fn single_part_completes_at_once() {
        let mut r = Reassembler::<u8>::new(16);
        let (tag, done) = r.push(part(None, "a", b"hi"), || 7);
        assert_eq!(tag, 7);
        assert_eq!(done.unwrap().payload, b"hi");
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn out_of_order_parts_and_first_tag_wins() {
        let c = |seq| Some(Concat { reference: 5, total: 3, seq });
        for order in [[1u8, 2, 3], [3, 1, 2], [2, 3, 1], [3, 2, 1]] {
            let mut r = Reassembler::<u8>::new(16);
            let mut done = None;
            for (n, seq) in order.iter().enumerate() {
                let payload = [b'a' + seq - 1];
                let (tag, out) = r.push(part(c(*seq), &format!("id{seq}"), &payload), || n as u8 + 1);
                assert_eq!(tag, 1, "the first part's tag sticks");
                done = out.or(done);
            }
            let whole = done.expect("complete after 3 parts");
            assert_eq!(whole.payload, b"abc", "order {order:?}");
            assert_eq!(whole.message_ids, ["id1", "id2", "id3"]);
            assert_eq!(whole.parts, 3);
            assert_eq!(r.pending(), 0);
        }
    }

    #[test]
    fn ucs2_surrogate_pair_split_across_parts() {
        let bytes: Vec<u8> = "a😀b".encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        // "a" + high surrogate | low surrogate + "b"
        let (p1, p2) = bytes.split_at(4);
        let c = |seq| Some(Concat { reference: 9, total: 2, seq });
        let mut r = Reassembler::<()>::new(16);
        assert!(r.push(part(c(2), "x2", p2), || ()).1.is_none());
        let whole = r.push(part(c(1), "x1", p1), || ()).1.unwrap();
        assert_eq!(crate::sms::decode::decode_text(whole.data_coding, &whole.payload), "a😀b");
    }

    #[test]
    fn duplicates_ignored_and_keys_separate() {
        let c = |reference, seq| Some(Concat { reference, total: 2, seq });
        let mut r = Reassembler::<()>::new(16);
        assert!(r.push(part(c(1, 1), "a", b"A"), || ()).1.is_none());
        assert!(r.push(part(c(1, 1), "dup", b"Z"), || ()).1.is_none());
        assert!(r.push(part(c(2, 2), "b", b"B"), || ()).1.is_none());
        assert_eq!(r.pending(), 2);
        let whole = r.push(part(c(1, 2), "c", b"C"), || ()).1.unwrap();
        assert_eq!((whole.payload.as_slice(), whole.message_ids), (&b"AC"[..], vec!["a".to_string(), "c".into()]));
    }

    #[test]
    fn capacity_evicts_oldest() {
        let mut r = Reassembler::<()>::new(2);
        for reference in 0..5u16 {
            r.push(part(Some(Concat { reference, total: 2, seq: 1 }), "p", b""), || ());
        }
        assert_eq!(r.pending(), 2);
        // The newest survives and completes.
        let done = r.push(part(Some(Concat { reference: 4, total: 2, seq: 2 }), "q", b""), || ()).1;
        assert!(done.is_some());
    }
}
