//! The log subscriber both command lines install: `RUST_LOG` chooses what is logged (warnings and
//! errors by default), and events go to standard error as text or as JSON lines
//! (`--log-format json`, or `REVOLVE_LOG_FORMAT=json`).

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// How log events are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs a global subscriber writing to standard error in `format`, filtered by `RUST_LOG`,
/// unless the process already has one (an application may install its own first). Returns a
/// warning to show when `RUST_LOG` does not parse: warnings and errors are logged then.
pub fn install(format: LogFormat) -> Option<String> {
    let builder = EnvFilter::builder().with_default_directive(LevelFilter::WARN.into());
    let (filter, warning) = match builder.from_env() {
        Ok(filter) => (filter, None),
        Err(error) => (
            builder.parse_lossy(""),
            Some(format!(
                "ignoring RUST_LOG ({error}); logging warnings and errors"
            )),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // `Err` means a subscriber is already installed: that one stays.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    warning
}
