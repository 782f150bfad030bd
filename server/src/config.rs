//! `eventide serve --config FILE`: settings from a TOML file.
//!
//! A config file holds `eventide serve` flags by their long names (`max-memory-mb = 1536`, or
//! `max_memory_mb`). Precedence, highest first: the command line, `EVENTIDE_*` variables, the
//! config file, the built-in defaults. The file's settings are turned into command-line
//! arguments for the flags that the command line and the environment left unset, and the
//! whole command line is parsed again, so a setting in the file is validated exactly like the
//! same flag typed by hand. An unknown setting is an error, not a silent no-op: a misspelt
//! `max_memroy_mb` would otherwise leave the server unbounded.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// Why a config file could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error(
        "config file {path}: unknown setting \"{key}\" (settings are the long flags of `eventide serve`, e.g. max-memory-mb = 1536)"
    )]
    Unknown { path: String, key: String },
    #[error("config file {path}: setting \"{key}\" {problem}")]
    Value {
        path: String,
        key: String,
        problem: String,
    },
}

/// Settings that cannot come from a config file.
const NOT_IN_FILE: [&str; 3] = ["config", "help", "version"];

/// The arguments to parse for `eventide serve`: `argv` plus, for every setting in the
/// `--config` file whose flag the command line and the environment left unset, that flag as
/// `--name=value`. `argv` unchanged when there is no config file. `matches` are those of
/// `argv` for the `serve` subcommand, `serve` its command.
pub fn with_config_file(
    mut argv: Vec<OsString>,
    serve: &Command,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, ConfigError> {
    let Some(path) = matches.get_one::<std::path::PathBuf>("config") else {
        return Ok(argv);
    };
    let settings = read(path)?;
    let shown = path.display().to_string();
    for (key, value) in settings {
        let long = key.replace('_', "-");
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && !NOT_IN_FILE.contains(&long.as_str()))
            .ok_or_else(|| ConfigError::Unknown {
                path: shown.clone(),
                key: key.clone(),
            })?;
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let problem = |problem: &str| ConfigError::Value {
            path: shown.clone(),
            key: key.clone(),
            problem: problem.to_owned(),
        };
        if !arg.get_action().takes_values() {
            // A switch: `name = true` sets it.
            match value {
                toml::Value::Boolean(true) => argv.push(format!("--{long}").into()),
                toml::Value::Boolean(false) => {}
                _ => return Err(problem("is a switch: use true or false")),
            }
            continue;
        }
        let text = match value {
            toml::Value::Array(items) => {
                let Some(delimiter) = arg.get_value_delimiter() else {
                    return Err(problem("takes one value, not a list"));
                };
                let items = items
                    .iter()
                    .map(scalar)
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| problem("must be a list of strings, numbers or booleans"))?;
                items.join(&delimiter.to_string())
            }
            other => {
                scalar(&other).ok_or_else(|| problem("must be a string, a number or a boolean"))?
            }
        };
        argv.push(format!("--{long}={text}").into());
    }
    Ok(argv)
}

/// The file's top-level settings.
fn read(path: &Path) -> Result<toml::Table, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: shown,
            message: e.message().to_owned(),
        })
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::ServeArgs;
    use clap::{Args, FromArgMatches};

    fn serve() -> Command {
        ServeArgs::augment_args(Command::new("serve").no_binary_name(true))
    }

    /// Parses `args` with the config file holding `toml`; the settings, or the error.
    fn parse(args: &[&str], toml: &str) -> Result<ServeArgs, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("eventide.toml");
        std::fs::write(&file, toml).unwrap();
        let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        argv.push("--config".into());
        argv.push(file.into());
        let cmd = serve();
        let matches = cmd
            .clone()
            .try_get_matches_from(&argv)
            .map_err(|e| e.to_string())?;
        let argv = with_config_file(argv, &cmd, &matches).map_err(|e| e.to_string())?;
        let matches = cmd.try_get_matches_from(argv).map_err(|e| e.to_string())?;
        ServeArgs::from_arg_matches(&matches).map_err(|e| e.to_string())
    }

    #[test]
    fn file_settings_fill_what_the_command_line_left_unset() {
        let a = parse(
            &["--flush-rows", "7"],
            r#"
            max-memory-mb = 1536
            flush_rows = 1000          # the command line wins
            data-dir = "/srv/eventide"
            bloom_columns = ["trace.trace_id", "request_id"]
            evaluate-alerts = false
            http = "127.0.0.1:9999"
            "#,
        )
        .unwrap();
        assert_eq!(a.max_memory_mb, 1536);
        assert_eq!(a.store.flush_rows, 7);
        assert_eq!(a.data_dir, std::path::PathBuf::from("/srv/eventide"));
        assert_eq!(a.store.bloom_columns, ["trace.trace_id", "request_id"]);
        assert!(!a.alerts.evaluate_alerts);
        assert_eq!(a.http.port(), 9999);
        // Untouched settings keep their defaults.
        assert_eq!(a.store.flush_seconds, 30);
    }

    #[test]
    fn bad_settings_are_errors_that_name_them() {
        let e = parse(&[], "max_memroy_mb = 1536").unwrap_err();
        assert!(e.contains("unknown setting \"max_memroy_mb\""), "{e}");
        let e = parse(&[], "config = \"other.toml\"").unwrap_err();
        assert!(e.contains("unknown setting \"config\""), "{e}");
        let e = parse(&[], "flush-rows = [1, 2]").unwrap_err();
        assert!(
            e.contains("\"flush-rows\" takes one value, not a list"),
            "{e}"
        );
        let e = parse(&[], "[store]\nflush-rows = 1").unwrap_err();
        assert!(e.contains("unknown setting \"store\""), "{e}");
        let e = parse(&[], "max_memory_mb = {a = 1}").unwrap_err();
        assert!(e.contains("must be a string, a number or a boolean"), "{e}");
        let e = parse(&[], "flush-rows = ").unwrap_err();
        assert!(e.contains("is not valid TOML"), "{e}");
        // A value of the wrong type is refused by the flag's own parser, naming the flag.
        let e = parse(&[], "flush-rows = \"lots\"").unwrap_err();
        assert!(e.contains("--flush-rows"), "{e}");
        // Values that merely look like flags are values.
        let a = parse(&[], "kafka = \"--help\"").unwrap();
        assert_eq!(a.log.kafka.as_deref(), Some("--help"));
    }
}
