//! SMS text and concatenation, shared by the SMPP provider and the SMSC simulator: short-message
//! bytes → text by `data_coding` ([`decode`]: GSM-7, UCS-2, Latin-1) and concatenated parts
//! (UDH or SAR) found and joined ([`reassembly`]). Pure logic, no I/O.

pub mod decode;
pub mod reassembly;
