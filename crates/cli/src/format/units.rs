//! go-units formatting as the docker CLI uses it: decimal human sizes and human durations.

/// go-units `HumanSizeWithPrecision`: decimal units, `%.*g` significant digits.
pub fn human_size_with_precision(size: f64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = size;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_format_g(size, precision), UNITS[i])
}

/// go-units `HumanSize` (4 significant digits), used by `system df`, `VirtualSize`...
pub fn human_size(size: f64) -> String {
    human_size_with_precision(size, 4)
}

/// go-units `BytesSize`: binary units with `%.4g`, e.g. "23.54GiB" in `docker info`.
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = size;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", go_format_g(size, 4), UNITS[i])
}

/// Go's `%.{p}g`: shortest of %e/%f by exponent, trailing zeros removed.
pub fn go_format_g(v: f64, precision: usize) -> String {
    let p = precision.max(1);
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    // Rust's {:e} rounds exactly like Go's strconv; read the exponent after rounding.
    let e_repr = format!("{:.*e}", p - 1, v);
    let (mant, exp) = e_repr.split_once('e').unwrap_or((&e_repr, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        let mant = strip_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// go-units `HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs_f = d.num_milliseconds() as f64 / 1000.0;
    let seconds = secs_f as i64;
    if seconds < 1 {
        return "Less than a second".into();
    } else if seconds == 1 {
        return "1 second".into();
    } else if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = (secs_f / 60.0) as i64;
    if minutes == 1 {
        return "About a minute".into();
    } else if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (secs_f / 3600.0 + 0.5) as i64;
    if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", (secs_f / 3600.0) as i64 / 24 / 365)
    }
}

/// `HumanDuration(now - t) + " ago"` for a unix timestamp, as docker's `CreatedSince`.
pub fn since_unix(secs: i64) -> String {
    let now = chrono::Utc::now().timestamp_millis();
    let d = chrono::Duration::milliseconds(now - secs * 1000);
    format!("{} ago", human_duration(d))
}

/// Go's `time.Unix(secs, 0).String()` in the local zone: "2006-01-02 15:04:05 -0700 MST".
pub fn go_time_string(secs: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(secs, 0).single() {
        Some(t) => {
            let off = t.format("%z").to_string();
            // Go prints the zone abbreviation; UTC is what containers and CI run in.
            let zone = if off == "+0000" {
                "UTC".to_string()
            } else {
                off.clone()
            };
            format!("{} {off} {zone}", t.format("%Y-%m-%d %H:%M:%S"))
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size_with_precision(1982291.0, 3), "1.98MB");
        assert_eq!(human_size(1982291.0), "1.982MB");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size_with_precision(999_999.0, 3), "1e+03kB");
        assert_eq!(human_size_with_precision(100_000.0, 3), "100kB");
        assert_eq!(human_size_with_precision(1000.0, 3), "1kB");
        assert_eq!(human_size(4_300_000_000.0), "4.3GB");
        assert_eq!(bytes_size(23.54 * 1024.0 * 1024.0 * 1024.0), "23.54GiB");
        assert_eq!(go_format_g(0.00001234, 3), "1.23e-05");
    }

    #[test]
    fn durations_like_go_units() {
        let s = chrono::Duration::seconds;
        assert_eq!(
            human_duration(chrono::Duration::milliseconds(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(59)), "59 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(119)), "About a minute");
        assert_eq!(human_duration(s(120)), "2 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(3600 * 5)), "5 hours");
        assert_eq!(human_duration(s(3600 * 24 * 3)), "3 days");
        assert_eq!(human_duration(s(3600 * 24 * 15)), "2 weeks");
        assert_eq!(human_duration(s(3600 * 24 * 90)), "3 months");
        assert_eq!(human_duration(s(3600 * 24 * 365 * 3)), "3 years");
    }
}
