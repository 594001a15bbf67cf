//! [`ScanOptions`]: how the pipeline scans, whichever front end asked.
//!
//! The CLI builds them from its flags ([`crate::cli::ScanArgs::options`]), a Job from its
//! assignment's `rules` ([`ScanOptions::for_assignment`]); [`crate::scan`] reads nothing else.

use snapsentry_crds::AssignmentRules;
use snapsentry_engine::{Engine, EngineConfig, RuleError};

/// `maxFileSizeBytes` of a Job when the policy sets none (the CLI's `--max-file-size` default).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 << 20;

/// Archive levels opened when neither `--archive-depth` nor the policy's `archiveDepth` says.
pub const DEFAULT_ARCHIVE_DEPTH: u32 = snapsentry_disk::archive::DEFAULT_MAX_DEPTH;

/// What to detect and which files to read.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Extra rule files: (where it came from, YAML text in the built-in rules' format).
    pub extra_rules: Vec<(String, String)>,
    /// Rule ids turned off.
    pub disabled_rules: Vec<String>,
    /// Also scan test, example and fixture directories (skipped by default).
    pub include_tests: bool,
    /// Files larger than this (bytes) are skipped.
    pub max_file_size: u64,
    /// Worker threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Path globs never scanned (`exclusions.paths`; see [`crate::glob`]).
    pub exclude_paths: Vec<String>,
    /// Draw a progress counter on standard error when it is a terminal.
    pub progress: bool,
    /// Levels of archives opened to scan the files inside (0: archives are scanned as files).
    pub archive_depth: u32,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            extra_rules: Vec::new(),
            disabled_rules: Vec::new(),
            include_tests: false,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            threads: None,
            exclude_paths: Vec::new(),
            progress: false,
            archive_depth: DEFAULT_ARCHIVE_DEPTH,
        }
    }
}

impl ScanOptions {
    /// A Job's options: its assignment's `rules` (extra rules from a ConfigMap are not read by
    /// this build; the Job reports them as an error), `threads` from `--threads`, no progress
    /// bar.
    pub fn for_assignment(rules: &AssignmentRules, threads: Option<usize>) -> Self {
        ScanOptions {
            extra_rules: Vec::new(),
            disabled_rules: rules.disable.clone(),
            include_tests: rules.include_tests,
            max_file_size: rules.max_file_size_bytes.unwrap_or(DEFAULT_MAX_FILE_SIZE),
            threads,
            exclude_paths: rules.exclude_paths.clone(),
            progress: false,
            archive_depth: rules.archive_depth.unwrap_or(DEFAULT_ARCHIVE_DEPTH).min(8),
        }
    }

    /// The engine these options describe, fingerprinting with `fingerprint_key`.
    pub fn engine(&self, fingerprint_key: Vec<u8>) -> Result<Engine, RuleError> {
        Engine::new(EngineConfig {
            extra_rules: self.extra_rules.clone(),
            disabled: self.disabled_rules.clone(),
            fingerprint_key,
        })
    }
}
