//! `snapsentry-scan`: the scanner Job and the standalone CLI.
//!
//! It reads a disk image, a block device, a directory or (in a Job) a cloud snapshot, walks every
//! filesystem on it without mounting, runs the detection engine over each file and reports
//! findings — never the secret values themselves.

fn main() {
    eprintln!("snapsentry-scan: not implemented yet");
    std::process::exit(2);
}
