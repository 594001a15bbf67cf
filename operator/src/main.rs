//! `snapsentry-operator`: watches ScanPolicy objects, inventories the machines they select,
//! snapshots their disks, runs one scanner Job per machine, and correlates the findings across the
//! fleet into verified attack paths and recommendations.
//!
//! `snapsentry-operator [run]` — configuration comes from the environment (see
//! [`snapsentry_operator::controller::config::Config`]); `/healthz`, `/readyz` and `/metrics` are
//! served on port 8080; SIGTERM or Ctrl-C stops the controllers and the server gracefully.

use std::process::ExitCode;
use std::sync::Arc;

use snapsentry_operator::controller::config::{Config, LogFormat};
use snapsentry_operator::controller::http::{self, HttpState};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

const USAGE: &str =
    "usage: snapsentry-operator [run]   (configured by SNAPSENTRY_* environment variables)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["run"] => {}
        ["--version" | "-V"] => {
            println!("snapsentry-operator {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        ["--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("snapsentry-operator: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let mut filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    for guard in snapsentry_operator::LOG_GUARDS {
        filter = filter.add_directive(guard.parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(config: Config) -> snapsentry_operator::Result<()> {
    let (stop, shutdown) = watch::channel(false);
    let stop = Arc::new(stop);
    let on_signal = stop.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = on_signal.send(true);
    });

    let state = Arc::new(HttpState::default());
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, "serving /healthz, /readyz, /metrics");
    let server = tokio::spawn(http::serve(listener, state.clone(), shutdown.clone()));

    let client = kube::Client::try_default().await?;
    tracing::info!(
        namespace = %config.namespace,
        watch = ?config.watch_namespaces,
        "starting ScanPolicy controller"
    );
    let result = snapsentry_operator::run(config, client, state, shutdown).await;
    // Leadership lost or the controllers ended: stop serving too, and exit.
    let _ = stop.send(true);
    match server.await {
        Ok(served) => served?,
        Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
    }
    result
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
