//! Find secrets in bytes.
//!
//! `snapsentry-engine` holds the detection rules (YAML data under `engine/rules/`), a one-pass
//! keyword prefilter over all rules, per-rule confirmation in a bounded window, validators
//! (checksums, placeholders), metadata extraction (expiry, target resource, SSH key facts) and
//! redaction. It does no I/O: callers hand it bytes and a path, and get findings that never carry
//! the secret value itself.
