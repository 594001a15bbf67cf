//! `snapsentry-operator`: watches ScanPolicy objects, inventories the machines they select,
//! snapshots their disks, runs one scanner Job per machine, and correlates the findings across the
//! fleet into verified attack paths and recommendations.

fn main() {
    eprintln!("snapsentry-operator: not implemented yet");
    std::process::exit(2);
}
