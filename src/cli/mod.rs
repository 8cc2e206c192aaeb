//! The operator's subcommands besides `replay`: `config`, `report`, `completions`, `man`.
//! Each returns the exit code: 0 done, 2 usage or input error, 3 runtime failure.

use clap::{Args, Subcommand};
use portent::config::{default_file, Config};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

fn err(msg: impl std::fmt::Display) {
    let _ = writeln!(io::stderr(), "portent: {msg}");
}

/// Writes `text` to standard output; a reader that hung up is not a failure.
fn print(text: &[u8]) -> ExitCode {
    match io::stdout().lock().write_all(text).and_then(|_| io::stdout().flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            err(format!("writing to standard output failed: {e}"));
            ExitCode::from(3)
        }
    }
}

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    cmd: ConfigCmd,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the default configuration file, every key with a comment.
    #[command(after_help = "Example:\n  portent config default > /etc/portent/portent.toml")]
    Default,
    /// Check a configuration file: "FILE: ok" and exit 0, or the error and exit 2.
    #[command(after_help = "Example:\n  portent config check /etc/portent/portent.toml")]
    Check {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

pub fn config(a: ConfigArgs) -> ExitCode {
    match a.cmd {
        ConfigCmd::Default => print(default_file().as_bytes()),
        ConfigCmd::Check { file } => match Config::from_file(&file) {
            Ok(_) => print(format!("{}: ok\n", file.display()).as_bytes()),
            Err(e) => {
                err(e);
                ExitCode::from(2)
            }
        },
    }
}
#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_name = "SHELL")]
    shell: clap_complete::Shell,
}

pub fn completions(a: CompletionsArgs, mut cmd: clap::Command) -> ExitCode {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "portent", &mut out);
    print(&out)
}

#[derive(Args)]
pub struct ManArgs {
    /// Write one page per command (portent.1, portent-replay.1, ...) into this directory
    /// instead of printing portent.1.
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn man(a: ManArgs, cmd: clap::Command) -> ExitCode {
    if let Some(dir) = a.dir {
        return match clap_mangen::generate_to(cmd, &dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                err(format!("cannot write the manual pages to {}: {e}", dir.display()));
                ExitCode::from(3)
            }
        };
    }
    let mut out = Vec::new();
    match clap_mangen::Man::new(cmd).render(&mut out) {
        Ok(()) => print(&out),
        Err(e) => {
            err(format!("cannot render the manual page: {e}"));
            ExitCode::from(3)
        }
    }
}

#[derive(Args)]
pub struct ReportArgs {
    /// Alerts as `portent replay` writes them (NDJSON); "-" reads standard input.
    #[arg(value_name = "ALERTS")]
    alerts: PathBuf,

    /// Where the HTML page goes ("-" is standard output).
    #[arg(short = 'o', long, value_name = "PATH", default_value = "-")]
    output: PathBuf,

    /// The page's title.
    #[arg(long, value_name = "TEXT", default_value = "portent alerts")]
    title: String,
}

/// Alerts files are at most what one run writes; past this it is not an alerts file or the
/// page would be unreadable anyway.
const MAX_ALERTS_BYTES: u64 = 512 << 20;

pub fn report(a: ReportArgs) -> ExitCode {
    use std::io::Read;
    let name = a.alerts.display().to_string();
    let mut text = String::new();
    let read = if a.alerts.as_os_str() == "-" {
        io::stdin().lock().take(MAX_ALERTS_BYTES).read_to_string(&mut text)
    } else {
        std::fs::File::open(&a.alerts).and_then(|f| f.take(MAX_ALERTS_BYTES).read_to_string(&mut text))
    };
    if let Err(e) = read {
        err(format!("{name}: cannot read: {e}"));
        return ExitCode::from(2);
    }
    let alerts = match portent::report::parse_ndjson(&text) {
        Ok(v) => v,
        Err((line, e)) => {
            err(format!("{name}:{line}: {e}"));
            return ExitCode::from(2);
        }
    };
    let page = portent::report::render(&alerts, &a.title);
    if a.output.as_os_str() == "-" {
        return print(page.as_bytes());
    }
    match std::fs::write(&a.output, page) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            err(format!("cannot write the report to {}: {e}", a.output.display()));
            ExitCode::from(3)
        }
    }
}
