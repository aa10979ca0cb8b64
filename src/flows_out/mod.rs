//! `--flows-out` (issue 11): the native collector's flows as goflow2 v2.2.6 JSON lines, so one
//! process can replace goflow2 for people who ship its lines to files, Loki or Kafka.
//!
//! Built so far: the line format ([`format`](mod@format)) and the detail fields of v5, v9 and
//! IPFIX records ([`crate::decode::detail`]), compared with goflow2's own lines for the same
//! datagrams (`goflow2_diff_tests`). Next: the writer thread, its bounded queue and the flag;
//! until then nothing in the binary calls this module.

pub mod format;

#[cfg(test)]
mod goflow2_diff_tests;
