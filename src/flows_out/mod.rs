//! `--flows-out` (issue 11): the native collector's flows as goflow2 v2.2.6 JSON lines, so one
//! process can replace goflow2 for people who ship its lines to files, Loki or Kafka.
//!
//! Built so far: the line format ([`format`]). The writer thread, its bounded queue and the flag
//! come next; until then nothing in the binary calls this module.

pub mod format;
