//! Query string helpers with Docker's conventions: repeated keys, `boolValue` truthiness, and
//! the `filters` JSON (`{"key":{"value":true}}` or the legacy `{"key":["value"]}`).

use std::collections::BTreeMap;

use axum::http::Uri;

use crate::error::ApiError;

#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_uri(uri: &Uri) -> Params {
        Params::parse(uri.query().unwrap_or(""))
    }

    pub fn parse(query: &str) -> Params {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value of `key` (Go's `r.Form.Get` takes the first; clients send one).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn get_all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// dockerd's `httputils.BoolValue`: absent, "", "0", "no", "false", "none" are false.
    pub fn bool(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            ),
        }
    }

    pub fn filters(&self) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
        parse_filters(self.get("filters").unwrap_or(""))
    }
}

pub fn parse_filters(raw: &str) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let mut out = BTreeMap::new();
    if raw.trim().is_empty() {
        return Ok(out);
    }
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| ApiError::invalid(format!("invalid filter: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid("invalid filter: expected a JSON object"))?;
    for (k, val) in obj {
        let vals: Vec<String> = match val {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(_, b)| b.as_bool().unwrap_or(true))
                .map(|(v, _)| v.clone())
                .collect(),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect(),
            _ => return Err(ApiError::invalid(format!("invalid filter: {k}"))),
        };
        out.insert(k.clone(), vals);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        let p = Params::parse("names=a&names=b%2Fc&quiet=1&force=false&x=");
        assert_eq!(p.get_all("names"), vec!["a", "b/c"]);
        assert!(p.bool("quiet"));
        assert!(!p.bool("force"));
        assert!(!p.bool("x"));
        assert!(!p.bool("missing"));
    }

    #[test]
    fn filters() {
        let f = parse_filters(r#"{"dangling":{"true":true},"label":["a=b"]}"#).unwrap();
        assert_eq!(f["dangling"], vec!["true"]);
        assert_eq!(f["label"], vec!["a=b"]);
        assert!(parse_filters("{").is_err());
        assert!(parse_filters("").unwrap().is_empty());
    }
}
