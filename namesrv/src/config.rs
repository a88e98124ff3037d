//! NameServer settings and the optional config file.
//!
//! The file is `key=value` lines (Java properties style); TOML-style `key = "value"` lines and
//! `#` comments are accepted too, so either habit works. Unknown keys and bad values are errors
//! that name the key.

use std::net::SocketAddr;
use std::time::Duration;

/// Why settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config line {line}: expected key=value, got '{text}'")]
    Syntax { line: usize, text: String },
    #[error("config key '{0}' is unknown (known: {KNOWN_KEYS})")]
    UnknownKey(String),
    #[error("config key '{key}' has an invalid value '{value}': {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: &'static str,
    },
}

const KNOWN_KEYS: &str = "listen, scanIntervalMs, brokerExpiryMs, dropOnClose, metricsListen";

/// Liveness and listening settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen: SocketAddr,
    /// How often silent brokers are looked for (RocketMQ 4.x: 10 s).
    pub scan_interval: Duration,
    /// Silence after which a broker is dropped (RocketMQ: 120 s).
    pub broker_expiry: Duration,
    /// Whether a broker is dropped as soon as the connection it registered on closes.
    pub drop_on_close: bool,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([0, 0, 0, 0], 9876)),
            scan_interval: Duration::from_secs(10),
            broker_expiry: Duration::from_secs(120),
            drop_on_close: true,
            metrics_listen: None,
        }
    }
}

/// Settings as given by one source; `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartialSettings {
    pub listen: Option<SocketAddr>,
    pub scan_interval: Option<Duration>,
    pub broker_expiry: Option<Duration>,
    pub drop_on_close: Option<bool>,
    pub metrics_listen: Option<SocketAddr>,
}

impl PartialSettings {
    /// `self` over `lower` over the defaults.
    pub fn resolve(self, lower: PartialSettings) -> Settings {
        let d = Settings::default();
        Settings {
            listen: self.listen.or(lower.listen).unwrap_or(d.listen),
            scan_interval: self
                .scan_interval
                .or(lower.scan_interval)
                .unwrap_or(d.scan_interval),
            broker_expiry: self
                .broker_expiry
                .or(lower.broker_expiry)
                .unwrap_or(d.broker_expiry),
            drop_on_close: self
                .drop_on_close
                .or(lower.drop_on_close)
                .unwrap_or(d.drop_on_close),
            metrics_listen: self
                .metrics_listen
                .or(lower.metrics_listen)
                .or(d.metrics_listen),
        }
    }
}

/// Parses the config file's text.
pub fn parse_config(text: &str) -> Result<PartialSettings, ConfigError> {
    let mut out = PartialSettings::default();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            return Err(ConfigError::Syntax {
                line: index + 1,
                text: line.to_owned(),
            });
        };
        let key = key.trim();
        let value = value.trim().trim_matches('"');
        let invalid = |reason| ConfigError::Invalid {
            key: key.to_owned(),
            value: value.to_owned(),
            reason,
        };
        match key {
            "listen" => {
                out.listen = Some(
                    value
                        .parse()
                        .map_err(|_| invalid("not an ip:port address"))?,
                )
            }
            "metricsListen" | "metrics_listen" => {
                out.metrics_listen = Some(
                    value
                        .parse()
                        .map_err(|_| invalid("not an ip:port address"))?,
                )
            }
            "scanIntervalMs" | "scan_interval_ms" => {
                out.scan_interval = Some(parse_millis(value).map_err(invalid)?)
            }
            "brokerExpiryMs" | "broker_expiry_ms" => {
                out.broker_expiry = Some(parse_millis(value).map_err(invalid)?)
            }
            "dropOnClose" | "drop_on_close" => {
                out.drop_on_close = Some(parse_bool(value).map_err(invalid)?)
            }
            other => return Err(ConfigError::UnknownKey(other.to_owned())),
        }
    }
    Ok(out)
}

/// A positive number of milliseconds.
pub fn parse_millis(value: &str) -> Result<Duration, &'static str> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err("must be greater than 0 milliseconds"),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => Err("not a whole number of milliseconds"),
    }
}

fn parse_bool(value: &str) -> Result<bool, &'static str> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_and_toml_styles() {
        let parsed = parse_config(
            "# comment\nlisten=127.0.0.1:9000\nscanIntervalMs = 200\nbroker_expiry_ms = \"1000\"\ndropOnClose=false\n",
        )
        .expect("parse");
        let settings = PartialSettings::default().resolve(parsed);
        assert_eq!(settings.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(settings.scan_interval, Duration::from_millis(200));
        assert_eq!(settings.broker_expiry, Duration::from_secs(1));
        assert!(!settings.drop_on_close);
    }

    #[test]
    fn flags_win_over_file() {
        let flags = PartialSettings {
            scan_interval: Some(Duration::from_millis(5)),
            ..Default::default()
        };
        let file = PartialSettings {
            scan_interval: Some(Duration::from_millis(7)),
            drop_on_close: Some(false),
            ..Default::default()
        };
        let s = flags.resolve(file);
        assert_eq!(s.scan_interval, Duration::from_millis(5));
        assert!(!s.drop_on_close);
        assert_eq!(s.broker_expiry, Duration::from_secs(120));
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse_config("scanIntervalMs=soon").unwrap_err();
        assert!(err.to_string().contains("scanIntervalMs"), "{err}");
        let err = parse_config("brokerExpiryMs=0").unwrap_err();
        assert!(err.to_string().contains("brokerExpiryMs"), "{err}");
        let err = parse_config("colour=blue").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = parse_config("just words").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
