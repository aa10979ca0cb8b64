//! Pure decoders: bytes in, [`Flow`](crate::flow::Flow) records or a bounded error out.
//!
//! Nothing here touches sockets or metrics, so every decoder is unit-tested (and fuzzed)
//! directly; the only clock read is the native decoder's, once per datagram, for template and
//! exporter expiry. The inputs in [`crate::input`] do the I/O and call into this module.

pub mod detail;
pub mod goflow_json;
pub mod netflow;
pub mod reference;
pub mod template;

#[cfg(test)]
mod differential_tests;

/// Why an input could not be turned into flows: the closed set of `error_type` label values of
/// `goflow_parse_errors_total`. Every value is created at 0 on start-up, so alerts see the series
/// before the first error; new values are added here and in the README together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// stdin: a line longer than `--max-line-bytes`; it is skipped without being buffered whole.
    LineTooLong,
    /// stdin: a line that is not valid UTF-8.
    InvalidUtf8,
    /// stdin: not JSON, truncated JSON, or a JSON value that is not an object.
    InvalidJson,
    /// stdin: a JSON object with a value of the wrong type or out of range (e.g. `"bytes":-1`,
    /// `"src_port":70000`, an address that is not an IP address).
    InvalidField,
    /// UDP: a datagram (or one of its sets) that is truncated, has impossible lengths, or that
    /// the parser rejects (e.g. a template over the field limits).
    MalformedDatagram,
    /// UDP: a datagram whose version is not NetFlow v5, v9 or IPFIX (10).
    UnsupportedVersion,
    /// UDP: a v9/IPFIX data set whose template is not known (yet), e.g. after a collector
    /// restart: its records are not decoded. Counted once per set.
    MissingTemplate,
    /// A decoder panicked on this input (a bug): the input is dropped, the panic logged, and the
    /// input's decoder state (templates) reset; the process goes on.
    DecoderPanic,
    /// A flow whose bytes or packets, scaled by its sampling rate, are more than any link can
    /// carry in the flow's duration (see `aggregate::delta::plausible`): not added anywhere, so
    /// one lying record cannot push a counter to its limit.
    ImplausibleValue,
}

impl ErrorType {
    pub const ALL: [ErrorType; 9] = [
        ErrorType::LineTooLong,
        ErrorType::InvalidUtf8,
        ErrorType::InvalidJson,
        ErrorType::InvalidField,
        ErrorType::MalformedDatagram,
        ErrorType::UnsupportedVersion,
        ErrorType::MissingTemplate,
        ErrorType::DecoderPanic,
        ErrorType::ImplausibleValue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::LineTooLong => "line_too_long",
            ErrorType::InvalidUtf8 => "invalid_utf8",
            ErrorType::InvalidJson => "invalid_json",
            ErrorType::InvalidField => "invalid_field",
            ErrorType::MalformedDatagram => "malformed_datagram",
            ErrorType::UnsupportedVersion => "unsupported_version",
            ErrorType::MissingTemplate => "missing_template",
            ErrorType::DecoderPanic => "decoder_panic",
            ErrorType::ImplausibleValue => "implausible_value",
        }
    }

    /// Dense index for per-batch error tallies (`[u64; ErrorType::ALL.len()]`).
    pub fn index(self) -> usize {
        self as usize
    }
}
