//! Integration tests: the real binary, real pipes, real TCP scrapes. One test binary, one module
//! per topic.

mod asn;
mod cardinality;
mod collector;
mod common;
mod deployment;
mod docs;
mod flows_out;
mod hostile;
mod lifecycle;
mod native_fixtures;
mod native_flood;
mod native_vs_stdin;
mod prometheus;
mod promtool;
mod robustness;
mod stdin_golden;
mod stdin_malformed;
mod stdin_samples;
