//! `kubectl-snapsentry`: see the library documentation and docs/plugin.md.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubectl_snapsentry::cli::{Cli, Command, GraphFormat};
use kubectl_snapsentry::fleet::{Fleet, Scope};
use kubectl_snapsentry::{Error, convert, diff, text};
use snapsentry_views::{Graph, html};

async fn client(cli: &Cli) -> Result<kube::Client, Error> {
    let config = match &cli.context {
        Some(context) => {
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(Kubeconfig::read()?, &options).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// Write `bytes` to `path`, or to standard output for `None` / `-`.
fn emit(path: Option<&str>, bytes: &[u8]) -> Result<(), Error> {
    match path {
        Some(p) if p != "-" => std::fs::write(p, bytes).map_err(|source| Error::Write {
            path: p.to_owned(),
            source,
        }),
        _ => std::io::stdout()
            .write_all(bytes)
            .map_err(|source| Error::Write {
                path: "standard output".to_owned(),
                source,
            }),
    }
}

/// The objects in scope, from `--objects FILE` or the API server.
async fn load(cli: &Cli) -> Result<(Fleet, Scope), Error> {
    if let Some(path) = &cli.objects {
        let scope = Scope {
            namespace: cli.namespace.clone().filter(|_| !cli.all_namespaces),
            policy: cli.policy.clone(),
        };
        let objects = |reason: String| Error::Objects {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| objects(e.to_string()))?;
        return Ok((Fleet::parse(&text, &scope).map_err(objects)?, scope));
    }
    let client = client(cli).await?;
    let scope = Scope {
        namespace: if cli.all_namespaces {
            None
        } else {
            Some(
                cli.namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_owned()),
            )
        },
        policy: cli.policy.clone(),
    };
    Ok((Fleet::load(&client, &scope).await?, scope))
}

async fn run(cli: Cli) -> Result<(), Error> {
    let (fleet, scope) = load(&cli).await?;
    let title = format!("snapsentry — {}", scope.describe());
    let report = convert::report(&fleet, &title, jiff::Timestamp::now());
    match &cli.command {
        Command::Summary => emit(None, text::summary(&report).as_bytes()),
        Command::Machine { name } => {
            let m = report
                .machines
                .iter()
                .find(|m| &m.name == name)
                .ok_or_else(|| Error::NoMachine {
                    name: name.clone(),
                    scope: scope.describe(),
                })?;
            emit(None, text::machine(m).as_bytes())
        }
        Command::Paths => emit(None, text::paths(&report).as_bytes()),
        Command::Diff => emit(None, text::diff(&diff::diff(&fleet)).as_bytes()),
        Command::Graph { format, output } => {
            let graph = Graph::of(&report);
            let out = match format {
                GraphFormat::Svg => graph.svg(),
                GraphFormat::Dot => graph.dot(),
            };
            emit(output.as_deref(), out.as_bytes())
        }
        Command::Report { output } => {
            emit(Some(output), html::render(&report).as_bytes())?;
            if output != "-" {
                eprintln!(
                    "wrote {output}: {} machine(s), {} attack path(s)",
                    report.machines.len(),
                    report.paths.len()
                );
            }
            Ok(())
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubectl-snapsentry: {e}");
            ExitCode::FAILURE
        }
    }
}
