//! `${VAR}` and `${VAR:-default}` expanded in every string value of the document, the names
//! of unset variables collected.

use std::collections::BTreeSet;

use super::ConfigError;

/// Expands `${VAR}` and `${VAR:-default}` in every string of the document.
pub(super) fn expand(
    value: &mut serde_yaml::Value,
    env: &dyn Fn(&str) -> Option<String>,
    missing: &mut BTreeSet<String>,
    path: &mut String,
) -> Result<(), ConfigError> {
    match value {
        serde_yaml::Value::String(s) if s.contains("${") => {
            *s = expand_str(s, env, missing).map_err(|message| ConfigError::Field {
                path: path.clone(),
                message,
            })?;
        }
        serde_yaml::Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand(item, env, missing, path)?;
                path.truncate(len);
            }
        }
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k.as_str().unwrap_or("?"));
                expand(v, env, missing, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    missing: &mut BTreeSet<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in {s:?}"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid variable name `{name}`"));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                missing.insert(name.to_owned());
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
