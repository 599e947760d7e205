//! S3 settings from the standard AWS environment: every `AWS_*` variable, and with `AWS_PROFILE`
//! (or the `default` profile when no keys are set) the profile's keys from the shared credentials
//! file and its region and endpoint from the config file. Variables win over files.

use std::collections::HashMap;
use std::path::PathBuf;

use nshard_remote::S3Options;

/// The S3 options for this process.
pub fn s3_options() -> S3Options {
    let vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .collect();
    let get = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut settings = Vec::new();
    let explicit_profile = get("AWS_PROFILE");
    let has_keys = get("AWS_ACCESS_KEY_ID").is_some();
    if explicit_profile.is_some() || !has_keys {
        let profile = explicit_profile.unwrap_or_else(|| "default".into());
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let file = |var: &str, default: &str| {
            get(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
        };
        // ~/.aws/credentials: [NAME]; ~/.aws/config: [profile NAME] (and [default]).
        if let Some(text) = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            let s = ini_section(&text, &profile);
            for (key, var) in [
                ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
                ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                ("aws_session_token", "AWS_SESSION_TOKEN"),
            ] {
                if let Some(v) = s.get(key) {
                    settings.push((var.to_string(), v.clone()));
                }
            }
        }
        if let Some(text) =
            file("AWS_CONFIG_FILE", "config").and_then(|p| std::fs::read_to_string(p).ok())
        {
            let section = if profile == "default" {
                profile.clone()
            } else {
                format!("profile {profile}")
            };
            let s = ini_section(&text, &section);
            for (key, var) in [
                ("region", "AWS_REGION"),
                ("endpoint_url", "AWS_ENDPOINT_URL"),
            ] {
                if let Some(v) = s.get(key) {
                    settings.push((var.to_string(), v.clone()));
                }
            }
        }
    }
    // Variables last: later settings override earlier ones.
    settings.extend(vars);
    S3Options { settings }
}

/// The `key = value` pairs of `[name]` in an INI text (keys lower-cased).
fn ini_section(text: &str, name: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = h.trim() == name;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_section() {
        let text = "[default]\naws_access_key_id = A\n\n[profile dev]\nregion=eu-west-1\n# c\nendpoint_url = http://127.0.0.1:9000\n[other]\nregion = x\n";
        assert_eq!(ini_section(text, "default")["aws_access_key_id"], "A");
        let dev = ini_section(text, "profile dev");
        assert_eq!(dev["region"], "eu-west-1");
        assert_eq!(dev["endpoint_url"], "http://127.0.0.1:9000");
        assert_eq!(dev.len(), 2);
        assert!(ini_section(text, "missing").is_empty());
    }
}
