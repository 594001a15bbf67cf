//! Fixed secrets the tests plant where a stable value matters (finding names, fingerprints):
//! shaped so the engine's rules and validators accept them, and searched for afterwards in
//! everything a test can see to prove they never leak.

/// An AWS access key id that passes the engine's key-id decoding.
pub const AWS_KEY_ID: &str = "AKIAQYLPMN5HHHFPZAM2";
/// The secret access key planted beside [`AWS_KEY_ID`].
pub const AWS_SECRET: &str = "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";
