//! Engine throughput on ~64 MiB of secret-free text of the kinds a VM disk is full of: logs,
//! hashes, UUIDs, base64 blobs, source code. Run with `cargo bench -p snapsentry-engine`; prints
//! MiB/s per core (one thread) besides criterion's own figures.
//!
//! Target: ≥ 1 GiB/s per core. On such text the cost is the keyword prefilter pass and then the
//! work around its hits (rule windows, their regexes); regexes only run around keyword hits, so
//! the figure also measures how rare the keywords are (a short, common keyword such as `-us`
//! makes a rule's regex run over most of a source file).
//!
//! On a shared machine wall time lies; the figure printed is on-CPU time of this thread
//! (`/proc/thread-self/schedstat`), falling back to wall time elsewhere.
//!
//! Before/after in one run: the same text is scanned by the engine with every embedded rule and
//! by one without the rule files of [`NEW_RULE_FILES`] (the generic, structure-aware family and
//! the families added with it), alternating round by round so machine load hits both alike; on
//! the mixed text, and on the mixed text with one entry in ten replaced by configuration text
//! dense with credential-named keys (where the generic rules' regexes run).
//!
//! The keyword prefilter alone, before/after in one run: the old byte-at-a-time prefilter (kept
//! bench-only in `throughput/old_prefilter.rs`), the new one with the search this CPU runs
//! (AVX2 where available) and the new one's portable scalar search, alternating likewise over the
//! rule set's keywords; their match counts must agree.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use snapsentry_engine::prefilter::Prefilter;
use snapsentry_engine::{Engine, EngineConfig};

#[path = "throughput/old_prefilter.rs"]
mod old_prefilter;
use old_prefilter::OldPrefilter;

/// Deterministic xorshift64*, so every run scans the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize]))
            .collect()
    }
    fn b64(&mut self, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..n)
            .map(|_| char::from(A[self.below(64) as usize]))
            .collect()
    }
}

/// Rule files whose cost the before/after figures isolate.
const NEW_RULE_FILES: &[&str] = &[
    "generic.yaml",
    "server-configs.yaml",
    "dumps-and-source.yaml",
    "deploy-and-cli.yaml",
];

/// Configuration and web text full of credential-named keys that hold no secret (paths, TTLs,
/// references, comments, form fields): where the generic rules' regexes run.
const CONFIG: &str = r#"[database]
host = db01.internal
password_file = /run/secrets/db_password
token_ttl = 3600
# password = set in /etc/app/secrets.ini
secret: ${APP_SECRET}
api_key: !vault |
<input type="password" name="password" autocomplete="current-password">
if (form.password.value.length < 12) { showError("password too short"); }
"#;

const SOURCE: &str = r#"fn handle(req: &Request) -> Result<Response, Error> {
    let user = req.header("x-user").ok_or(Error::Unauthorized)?;
    for item in self.items.iter().filter(|i| i.owner == user) {
        total += item.price * item.quantity as u64;
    }
    tracing::debug!(user, total, "computed basket");
    Ok(Response::json(&Basket { user: user.to_string(), total }))
}
"#;

/// About `size` bytes of mixed, secret-free text; with `config`, one entry in ten is
/// configuration text dense with credential-named keys ([`CONFIG`]) instead of source code.
fn corpus(size: usize, config: bool) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = String::with_capacity(size + 4096);
    let levels = ["INFO", "WARN", "DEBUG", "ERROR"];
    let words = [
        "request",
        "served",
        "connection",
        "closed",
        "cache",
        "miss",
        "worker",
        "started",
        "upstream",
        "timeout",
        "retrying",
        "queue",
        "flushed",
    ];
    while out.len() < size {
        match rng.below(10) {
            0..=3 => {
                let (h, m, s) = (rng.below(24), rng.below(60), rng.below(60));
                let w: Vec<&str> = (0..6)
                    .map(|_| words[rng.below(words.len() as u64) as usize])
                    .collect();
                out.push_str(&format!(
                    "2025-03-{:02}T{h:02}:{m:02}:{s:02}.{:03}Z {} [{}] {} id={} latency_ms={}\n",
                    1 + rng.below(28),
                    rng.below(1000),
                    levels[rng.below(4) as usize],
                    rng.hex(8),
                    w.join(" "),
                    rng.hex(16),
                    rng.below(5000)
                ));
            }
            4 => out.push_str(&format!(
                "{}  ./usr/lib/x86_64-linux-gnu/lib{}.so.{}\n",
                rng.hex(64),
                rng.hex(6),
                rng.below(9)
            )),
            5 => out.push_str(&format!(
                "{}-{}-{}-{}-{} {}\n",
                rng.hex(8),
                rng.hex(4),
                rng.hex(4),
                rng.hex(4),
                rng.hex(12),
                rng.below(1 << 30)
            )),
            6 => {
                for _ in 0..8 {
                    out.push_str(&rng.b64(76));
                    out.push('\n');
                }
            }
            7 if config => out.push_str(CONFIG),
            _ => out.push_str(SOURCE),
        }
    }
    out.into_bytes()
}

/// This thread's on-CPU time, in seconds (Linux).
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
}

/// Scan `chunks` `rounds` times with each engine, alternating; per engine (wall, CPU) seconds.
fn measure(engines: [&Engine; 2], chunks: &[&[u8]], rounds: usize) -> [(f64, f64); 2] {
    let mut times = [(0.0f64, 0.0f64); 2];
    for _ in 0..rounds {
        for (i, e) in engines.into_iter().enumerate() {
            let (wall, cpu) = (Instant::now(), cpu_seconds());
            for c in chunks {
                black_box(e.scan("/var/log/app.log", c));
            }
            times[i].0 += wall.elapsed().as_secs_f64();
            times[i].1 += cpu.zip(cpu_seconds()).map_or(f64::NAN, |(a, b)| b - a);
        }
    }
    times
}

/// Old prefilter, new prefilter (dispatched), new prefilter (scalar) over `chunks`, `rounds`
/// times, alternating; prints MiB/s per core of CPU time (wall time where unavailable).
fn measure_prefilters(engine: &Engine, chunks: &[&[u8]], rounds: usize) {
    let mut keywords: Vec<String> = engine
        .rules()
        .iter()
        .flat_map(|r| r.spec.keywords.iter().map(|k| k.to_ascii_lowercase()))
        .collect();
    keywords.sort();
    keywords.dedup();
    let old = OldPrefilter::new(&keywords);
    let new = Prefilter::new(&keywords);
    type Run<'a> = Box<dyn Fn(&[u8]) -> usize + 'a>;
    let runs: [(&str, Run<'_>); 3] = [
        (
            "old (byte at a time)",
            Box::new(|c: &[u8]| {
                let mut n = 0;
                old.for_each_match(c, |_, _, _| n += 1);
                n
            }),
        ),
        (
            if new.kernel() == "avx2" {
                "new (avx2)"
            } else {
                "new (scalar; no avx2)"
            },
            Box::new(|c: &[u8]| {
                let mut n = 0;
                new.for_each_match(c, |_, _, _| n += 1);
                n
            }),
        ),
        (
            "new (scalar)",
            Box::new(|c: &[u8]| {
                let mut n = 0;
                new.for_each_match_scalar(c, |_, _, _| n += 1);
                n
            }),
        ),
    ];
    let counts: Vec<usize> = runs
        .iter()
        .map(|(_, run)| chunks.iter().map(|c| run(c)).sum())
        .collect();
    assert!(
        counts.iter().all(|&n| n == counts[0]),
        "prefilters disagree: {counts:?}"
    );
    let mut times = [(0.0f64, 0.0f64); 3];
    for _ in 0..rounds {
        for (i, (_, run)) in runs.iter().enumerate() {
            let (wall, cpu) = (Instant::now(), cpu_seconds());
            for c in chunks {
                black_box(run(black_box(c)));
            }
            times[i].0 += wall.elapsed().as_secs_f64();
            times[i].1 += cpu.zip(cpu_seconds()).map_or(f64::NAN, |(a, b)| b - a);
        }
    }
    let mib = (rounds * chunks.iter().map(|c| c.len()).sum::<usize>()) as f64 / f64::from(1 << 20);
    eprintln!(
        "  prefilter alone, {} keywords, {} matches:",
        keywords.len(),
        counts[0]
    );
    for ((label, _), time) in runs.iter().zip(times) {
        print_rate(&format!("  {label}"), mib, time);
    }
}

/// Print `mib` MiB scanned in `(wall, cpu)` seconds: per core of CPU time where known.
fn print_rate(label: &str, mib: f64, (wall, cpu): (f64, f64)) {
    if cpu.is_nan() {
        eprintln!("  {label}: {:.0} MiB/s (wall)", mib / wall);
    } else {
        eprintln!(
            "  {label}: {:.0} MiB/s per core (CPU time), {:.0} MiB/s wall",
            mib / cpu,
            mib / wall
        );
    }
}

fn bench(c: &mut Criterion) {
    let engine = Engine::new(EngineConfig::with_key(b"bench".to_vec())).expect("rules load");
    let new_rules: Vec<String> = engine
        .rules()
        .iter()
        .filter(|r| NEW_RULE_FILES.contains(&r.file.as_str()))
        .map(|r| r.id().to_string())
        .collect();
    let before = Engine::new(EngineConfig {
        disabled: new_rules.clone(),
        ..EngineConfig::with_key(b"bench".to_vec())
    })
    .expect("rules load");
    eprintln!(
        "rules: {} (before: {}, without the {} of {NEW_RULE_FILES:?})",
        engine.rules().len(),
        before.rules().len(),
        new_rules.len()
    );
    const ROUNDS: usize = 4;
    let with_config = corpus(64 << 20, true);
    let data = corpus(64 << 20, false);
    for (name, text) in [
        ("mixed text", &data),
        ("mixed text + 10% config", &with_config),
    ] {
        // Scan in 1 MiB "files", as the scanner would.
        let chunks: Vec<&[u8]> = text.chunks(1 << 20).collect();
        let found: Vec<String> = chunks
            .iter()
            .flat_map(|c| engine.scan("/var/log/app.log", c).findings)
            .map(|f| format!("{} {}", f.rule_id, f.redacted))
            .collect();
        eprintln!(
            "{name}: {} MiB, {} findings (expect 0) {found:?}",
            text.len() >> 20,
            found.len()
        );
        // A plain measurement, so the figures are printed even with criterion's output filtered.
        let times = measure([&before, &engine], &chunks, ROUNDS);
        let mib = (ROUNDS * text.len()) as f64 / f64::from(1 << 20);
        print_rate("throughput before", mib, times[0]);
        print_rate("throughput after", mib, times[1]);
        measure_prefilters(&engine, &chunks, ROUNDS);
    }
    let chunks: Vec<&[u8]> = data.chunks(1 << 20).collect();
    let mib = (ROUNDS * data.len()) as f64 / f64::from(1 << 20);
    // Calibration: a loop the compiler vectorises (tens of GiB/s on an idle modern core), to judge
    // how loaded the machine was when the figure above was taken.
    let cpu = cpu_seconds();
    let mut newlines = 0;
    for _ in 0..ROUNDS {
        newlines += black_box(&data).iter().filter(|&&b| b == b'\n').count();
    }
    if let Some((a, b)) = cpu.zip(cpu_seconds()) {
        eprintln!(
            "calibration: newline count ({newlines}) at {:.0} MiB/s per core",
            mib / (b - a)
        );
    }

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.bench_function("scan-64MiB-secret-free", |b| {
        b.iter(|| {
            for c in &chunks {
                black_box(engine.scan("/var/log/app.log", c));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
