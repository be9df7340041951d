//! `--format`: Go text/template (gtmpl) with the docker CLI's extra functions, the `table`
//! prefix (header row + tabwriter) and `json`.
//!
//! Rows are given as [`Row`]s: ordered string fields plus a header label per field, which is
//! what docker's formatter contexts are. Raw API objects (inspect) are given as JSON values.

use std::cell::RefCell;
use std::collections::HashMap;

use gtmpl::{Context, Func, FuncError, Template, Value};

use super::json::{Ordered, quote};
use super::tabwriter::TabWriter;

/// A formatter-context row: (field, header label, value) in docker's order.
#[derive(Clone, Default)]
pub struct Row {
    pub fields: Vec<(&'static str, &'static str, Value)>,
}

impl Row {
    pub fn new() -> Self {
        Row::default()
    }
    pub fn with(mut self, name: &'static str, header: &'static str, v: impl Into<Value>) -> Self {
        self.fields.push((name, header, v.into()));
        self
    }
    fn value(&self) -> Value {
        Value::Object(
            self.fields
                .iter()
                .map(|(k, _, v)| ((*k).to_string(), v.clone()))
                .collect(),
        )
    }
    fn header(&self) -> Value {
        Value::Map(
            self.fields
                .iter()
                .map(|(k, h, _)| ((*k).to_string(), Value::from(*h)))
                .collect(),
        )
    }
}

/// What a `--format` string asks for.
pub struct Format {
    table: bool,
    text: String,
    /// Go type named in "can't evaluate field" errors, e.g. `*formatter.imageContext`.
    type_name: &'static str,
    /// How the command words its template errors: prefix and template name.
    err_prefix: &'static str,
    tmpl_name: &'static str,
}

impl Format {
    /// Docker's rules: "" or "table" -> the command's default table, "json" -> `{{json .}}`,
    /// "table X" -> table with template X; `\t`/`\n` escapes are expanded.
    pub fn new(user: &str, default_table: &str) -> Format {
        let src = if user.is_empty() || user == "table" {
            default_table
        } else {
            user
        };
        let (table, text) = if src == "json" {
            (false, "{{json .}}".to_string())
        } else if let Some(rest) = src.strip_prefix("table") {
            (true, rest.to_string())
        } else {
            (false, src.to_string())
        };
        let text = text
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        Format {
            table,
            text,
            type_name: "",
            err_prefix: "template parsing error: ",
            tmpl_name: "",
        }
    }

    /// Name the Go type docker's formatter context has, for its error messages.
    pub fn typed(mut self, type_name: &'static str) -> Format {
        self.type_name = type_name;
        self
    }

    /// The error prefix and template name a command uses ("Error parsing format: ", "version").
    pub fn errors(mut self, prefix: &'static str, tmpl_name: &'static str) -> Format {
        self.err_prefix = prefix;
        self.tmpl_name = tmpl_name;
        self
    }

    /// Render rows: a header first for tables, then one template execution + "\n" per row.
    pub fn render_rows(&self, rows: &[Row], header_if_empty: &Row) -> Result<String, String> {
        let tmpl = parse(&self.text, false)?;
        let mut body = String::new();
        for r in rows {
            body.push_str(&exec(&tmpl, &r.value()).map_err(|e| self.explain(e))?);
            body.push('\n');
        }
        if !self.table {
            return Ok(body);
        }
        let mut tw = TabWriter::default();
        // Docker ignores header errors and prints what it could.
        if let Ok(htmpl) = parse(&self.text, true) {
            let hdr = rows.first().unwrap_or(header_if_empty).header();
            // Like Go, keep what was written before an execution error.
            let mut buf: Vec<u8> = Vec::new();
            let _ = htmpl.execute(&mut buf, &Context::from(hdr));
            tw.write_str(&String::from_utf8_lossy(&buf));
        }
        tw.write_str("\n");
        tw.write_str(&body);
        Ok(tw.flush())
    }

    /// Execute against raw data (inspect): no header, one line per item.
    /// Execute against an inspect object. Docker's image/container inspect templates mostly
    /// end up on its raw-map fallback (any JSON-named field such as `.Id` fails on the typed
    /// struct), where `json` prints objects with sorted keys; do the same.
    /// Objects are strict here: a missing field is an error ("map has no entry for key"),
    /// as in docker, so `inspect -f '{{.State.Running}}'` on the wrong kind fails.
    pub fn render_value(&self, v: &Ordered) -> Result<String, String> {
        let tmpl = parse(&self.text, false)?;
        KEY_ORDER.with(|m| m.borrow_mut().clear());
        RAW_MODE.with(|m| m.set(true));
        let r = exec(&tmpl, &from_json_strict(v)).map_err(|e| self.explain(e));
        RAW_MODE.with(|m| m.set(false));
        r
    }

    /// Like [`Format::render_value`], with Go field names added next to JSON names that
    /// differ (`status` -> `Status`), so `{{.Status}}` works as on docker's Go structs
    /// while `{{json .}}` still prints the daemon's JSON names.
    pub fn render_value_aliased(
        &self,
        v: &Ordered,
        aliases: &[(&str, &str)],
    ) -> Result<String, String> {
        let tmpl = parse(&self.text, false)?;
        let value = from_json_aliased(v, aliases);
        RAW_MODE.with(|m| m.set(true));
        let r = exec(&tmpl, &value).map_err(|e| self.explain(e));
        RAW_MODE.with(|m| m.set(false));
        r
    }

    /// docker's wording for a missing field, with Go's line:column of the field node.
    fn explain(&self, e: ExecFailure) -> String {
        match e {
            ExecFailure::Other(m) => format!("{}{m}", self.err_prefix),
            ExecFailure::NoField(field) => {
                let (line, col, node) = locate(&self.text, &field);
                let why = if self.type_name.is_empty() {
                    format!("map has no entry for key \"{field}\"")
                } else {
                    format!("can't evaluate field {field} in type {}", self.type_name)
                };
                let (p, n) = (self.err_prefix, self.tmpl_name);
                format!("{p}template: {n}:{line}:{col}: executing \"{n}\" at <{node}>: {why}")
            }
        }
    }
}

/// Go prints composite values as `[a b]` / `map[k:v]`; gtmpl prints Rust debug text. Wrap
/// every printing action in `_goprint (...)` so output matches Go's fmt.
fn wrap_actions(text: &str) -> String {
    const KEYWORDS: [&str; 10] = [
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    ];
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // Find the closing braces outside of string/char/raw literals.
        let bytes = after.as_bytes();
        let mut i = 0;
        let mut quote: Option<u8> = None;
        let mut end = None;
        while i < bytes.len() {
            let c = bytes[i];
            match quote {
                Some(q) => {
                    if c == b'\\' && q != b'`' {
                        i += 1;
                    } else if c == q {
                        quote = None;
                    }
                }
                None => {
                    if c == b'"' || c == b'`' || c == b'\'' {
                        quote = Some(c);
                    } else if c == b'}' && bytes.get(i + 1) == Some(&b'}') {
                        end = Some(i);
                        break;
                    }
                }
            }
            i += 1;
        }
        let Some(end) = end else {
            // Unterminated: leave it for the parser to report.
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        rest = &after[end + 2..];
        let ltrim = inner.starts_with("- ");
        let rtrim = inner.ends_with(" -");
        let core = inner
            .strip_prefix("- ")
            .unwrap_or(inner)
            .strip_suffix(" -")
            .unwrap_or(inner.strip_prefix("- ").unwrap_or(inner))
            .trim();
        let first = core
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("");
        let assigns = core.contains(":=") || (core.starts_with('$') && core.contains(" = "));
        let is_print =
            !(core.is_empty() || core.starts_with("/*") || KEYWORDS.contains(&first) || assigns);
        out.push_str("{{");
        if is_print {
            if ltrim {
                out.push_str("- ");
            }
            out.push_str("_goprint (");
            out.push_str(core);
            out.push(')');
            if rtrim {
                out.push_str(" -");
            }
        } else {
            out.push_str(inner);
        }
        out.push_str("}}");
    }
    out.push_str(rest);
    out
}

/// Go's `%v` of a value as text/template prints it (raw-map semantics: nil = `<no value>`).
fn go_print(v: &Value, top: bool) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::NoValue => "<no value>".into(),
        Value::Nil if top => "<no value>".into(),
        Value::Nil => "<nil>".into(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(|x| go_print(x, false))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Value::Map(m) | Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_print(&m[*k], false)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
        other => other.to_string(),
    }
}

fn f_goprint(args: &[Value]) -> Result<Value, FuncError> {
    match args.first() {
        // Strings pass through untouched (the common case).
        Some(Value::String(s)) => Ok(Value::String(s.clone())),
        Some(v) => Ok(Value::from(go_print(v, true))),
        None => Ok(Value::from("")),
    }
}

fn parse(text: &str, header: bool) -> Result<Template, String> {
    let mut t = Template::default();
    t.add_func("_goprint", f_goprint);
    t.add_func("printf", f_printf);
    let text = wrap_actions(text);
    let text = text.as_str();
    let funcs: &[(&str, Func)] = if header {
        &[
            ("json", h_first),
            ("split", h_first),
            ("join", h_first),
            ("title", h_first),
            ("lower", h_first),
            ("upper", h_first),
            ("pad", h_first),
            ("truncate", h_first),
        ]
    } else {
        &[
            ("json", f_json),
            ("split", f_split),
            ("join", f_join),
            ("title", f_title),
            ("lower", f_lower),
            ("upper", f_upper),
            ("pad", f_pad),
            ("truncate", f_truncate),
        ]
    };
    t.add_funcs(funcs);
    t.parse(text)
        .map_err(|e| format!("template parsing error: {e}"))?;
    Ok(t)
}

enum ExecFailure {
    NoField(String),
    Other(String),
}

fn exec(t: &Template, v: &Value) -> Result<String, ExecFailure> {
    t.render(&Context::from(v.clone())).map_err(|e| {
        let msg = e.to_string();
        // gtmpl says "no field X for <whole value>".
        match msg
            .split_once("no field ")
            .and_then(|(_, r)| r.split_once(" for "))
        {
            Some((field, _)) => ExecFailure::NoField(field.to_string()),
            None => ExecFailure::Other(msg),
        }
    })
}

/// Where `.field` sits in the template, as Go's exec errors report it: 1-based line, 0-based
/// byte column of the last field of the chain, and the whole chain (`.Nope.X`).
fn locate(text: &str, field: &str) -> (usize, usize, String) {
    let needle = format!(".{field}");
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(&needle).map(|i| i + from) {
        let mut end = i + needle.len();
        if bytes.get(end).is_some_and(|c| ident(*c)) {
            from = end;
            continue;
        }
        let mut start = i;
        while start > 0 && (ident(bytes[start - 1]) || matches!(bytes[start - 1], b'.' | b'$')) {
            start -= 1;
        }
        while end < bytes.len() && (ident(bytes[end]) || bytes[end] == b'.') {
            end += 1;
        }
        let last = text[start..end].rfind('.').map_or(i, |p| start + p);
        let line_start = text[..last].rfind('\n').map_or(0, |p| p + 1);
        let line = text[..last].matches('\n').count() + 1;
        return (line, last - line_start, text[start..end].to_string());
    }
    (1, 0, needle)
}

/// JSON -> template value with Go-name aliases; remembers each object's key order.
pub fn from_json_aliased(v: &Ordered, aliases: &[(&str, &str)]) -> Value {
    match v {
        Ordered::Array(a) => {
            Value::Array(a.iter().map(|x| from_json_aliased(x, aliases)).collect())
        }
        Ordered::Object(o) => {
            let mut m: HashMap<String, Value> = o
                .iter()
                .map(|(k, v)| (k.clone(), from_json_aliased(v, aliases)))
                .collect();
            for (json_name, go_name) in aliases {
                if let Some(v) = m.get(*json_name).cloned() {
                    m.entry((*go_name).to_string()).or_insert(v);
                }
            }
            let order: Vec<String> = o.iter().map(|(k, _)| k.clone()).collect();
            KEY_ORDER.with(|r| {
                r.borrow_mut().insert(key_set_id(m.keys()), order);
            });
            // Strict: these stand for Go structs, where an unknown field is an error.
            Value::Object(m)
        }
        other => from_json(other),
    }
}

/// JSON -> template value with objects as strict `Object`s (missing field = error).
fn from_json_strict(v: &Ordered) -> Value {
    match v {
        Ordered::Array(a) => Value::Array(a.iter().map(from_json_strict).collect()),
        Ordered::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), from_json_strict(v)))
                .collect(),
        ),
        other => from_json(other),
    }
}

/// JSON from the daemon -> template value. Objects become maps (missing key = `<no value>`,
/// like docker's raw fallback); integers stay integers so they print like Go's.
pub fn from_json(v: &Ordered) -> Value {
    match v {
        Ordered::Null => Value::Nil,
        Ordered::Bool(b) => Value::Bool(*b),
        Ordered::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Ordered::String(s) => Value::from(s.as_str()),
        Ordered::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        Ordered::Object(o) => {
            Value::Map(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

thread_local! {
    // Set while rendering daemon data (inspect): Objects there are data, not formatter
    // contexts, so `json` must not HTML-escape them.
    static RAW_MODE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    // gtmpl maps are unordered; Go marshals structs in declaration order, which is the order
    // the daemon sent. Remember that order per key set so `json` can reproduce it.
    static KEY_ORDER: RefCell<HashMap<String, Vec<String>>> = RefCell::new(HashMap::new());
}

fn key_set_id<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let mut k: Vec<&String> = keys.collect();
    k.sort();
    k.iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("\u{0}")
}

/// Marshal a template value as Go would. Formatter contexts (Objects) marshal like docker's
/// MarshalJSON (sorted keys, HTML-escaped); data maps keep the daemon's order, no escaping.
pub fn to_json(v: &Value, html: bool) -> String {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => quote(s, html),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                serde_json::Number::from_f64(f).map_or("null".into(), |n| n.to_string())
            }
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(|x| to_json(x, html)).collect();
            format!("[{}]", parts.join(","))
        }
        // Daemon data keeps the daemon's order when known; formatter contexts and Go maps
        // marshal with sorted keys.
        Value::Map(o) | Value::Object(o) => {
            let id = key_set_id(o.keys());
            let keys: Vec<String> = KEY_ORDER
                .with(|m| m.borrow().get(&id).cloned())
                .unwrap_or_else(|| {
                    let mut k: Vec<String> = o.keys().cloned().collect();
                    k.sort();
                    k
                });
            let parts: Vec<String> = keys
                .iter()
                .filter_map(|k| {
                    o.get(k)
                        .map(|v| format!("{}:{}", quote(k, html), to_json(v, html)))
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

fn arg_str(args: &[Value], i: usize, name: &str) -> Result<String, FuncError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Ok(v.to_string()),
        None => Err(FuncError::AtLeastXArgs(name.into(), i + 1)),
    }
}

fn arg_int(args: &[Value], i: usize, name: &str) -> Result<i64, FuncError> {
    match args.get(i) {
        Some(Value::Number(n)) => n.as_i64().ok_or(FuncError::UnableToConvertFromValue),
        Some(Value::String(s)) => s.parse().map_err(|_| FuncError::UnableToConvertFromValue),
        Some(_) => Err(FuncError::UnableToConvertFromValue),
        None => Err(FuncError::AtLeastXArgs(name.into(), i + 1)),
    }
}

/// Header functions take the header string and return it; anything else is a type error
/// in Go (e.g. `json .` on the header map), which ends the header there.
fn h_first(args: &[Value]) -> Result<Value, FuncError> {
    match args.first() {
        Some(Value::String(s)) => Ok(Value::String(s.clone())),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

/// Go's "%!d(string=x)" for a verb that does not fit the value.
fn bad_verb(verb: char, v: &Value) -> String {
    let ty = match v {
        Value::String(_) => "string",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.as_i64().is_some() => "int",
        Value::Number(_) => "float64",
        Value::Array(_) => "[]interface {}",
        Value::Map(_) | Value::Object(_) => "map[string]interface {}",
        _ => "<nil>",
    };
    format!("%!{verb}({ty}={})", go_print(v, false))
}

/// Go's fmt.Sprintf for the verbs templates use (%v %s %d %q %t %x %X %f %e %g %%),
/// with flags `-`, `0`, `+`, width and precision; gtmpl's own printf lacks several.
fn f_printf(args: &[Value]) -> Result<Value, FuncError> {
    let fmt = match args.first() {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(FuncError::AtLeastXArgs("printf".into(), 1)),
    };
    let mut out = String::new();
    let mut argi = 1;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut zero, mut plus) = (false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        argi += 1;
        let num_i = |v: &Value| match v {
            Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|u| u as i64)),
            _ => None,
        };
        let num_f = |v: &Value| match v {
            Value::Number(n) => n.as_f64(),
            _ => None,
        };
        let text = match verb {
            'v' | 's' => {
                let t = go_print(arg, false);
                match prec {
                    Some(p) if verb == 's' => t.chars().take(p).collect(),
                    _ => t,
                }
            }
            'q' => quote(&go_print(arg, false), false),
            't' => go_print(arg, false),
            'd' => match num_i(arg) {
                Some(i) if plus && i >= 0 => format!("+{i}"),
                Some(i) => i.to_string(),
                None => bad_verb('d', arg),
            },
            'x' | 'X' => {
                let h = match (num_i(arg), arg) {
                    (Some(i), _) => format!("{i:x}"),
                    (None, Value::String(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                    _ => go_print(arg, false),
                };
                if verb == 'X' { h.to_uppercase() } else { h }
            }
            'f' | 'F' | 'e' | 'g' => match num_f(arg) {
                Some(f) => match verb {
                    'e' => {
                        let r = format!("{:.*e}", prec.unwrap_or(6), f);
                        // Go writes the exponent with a sign and two digits.
                        match r.split_once('e') {
                            Some((m, e)) => {
                                let n: i32 = e.parse().unwrap_or(0);
                                format!("{m}e{}{:02}", if n < 0 { '-' } else { '+' }, n.abs())
                            }
                            None => r,
                        }
                    }
                    'g' => match prec {
                        Some(p) => super::units::go_format_g(f, p),
                        None => f.to_string(),
                    },
                    _ => format!("{:.*}", prec.unwrap_or(6), f),
                },
                None => bad_verb(verb, arg),
            },
            other => bad_verb(other, arg),
        };
        let w: usize = width.parse().unwrap_or(0);
        let len = text.chars().count();
        if len >= w {
            out.push_str(&text);
        } else if minus {
            out.push_str(&text);
            out.push_str(&" ".repeat(w - len));
        } else if zero && matches!(verb, 'd' | 'f' | 'x' | 'X' | 'e' | 'g') {
            let (sign, digits) = match text.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", text.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(w - len));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(w - len));
            out.push_str(&text);
        }
    }
    if argi < args.len() {
        let extra: Vec<String> = args[argi..].iter().map(|v| go_print(v, false)).collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    Ok(Value::from(out))
}

fn f_json(args: &[Value]) -> Result<Value, FuncError> {
    let v = args
        .first()
        .ok_or(FuncError::ExactlyXArgs("json".into(), 1))?;
    // Formatter contexts go through json.Marshal (escapes HTML); plain values through an
    // Encoder with SetEscapeHTML(false), as docker's `json` function does.
    let html = matches!(v, Value::Object(_)) && !RAW_MODE.with(|m| m.get());
    Ok(Value::from(to_json(v, html)))
}

fn f_split(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "split")?;
    let sep = arg_str(args, 1, "split")?;
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::from(c.to_string())).collect()
    } else {
        s.split(sep.as_str()).map(Value::from).collect()
    };
    Ok(Value::Array(parts))
}

fn f_join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = arg_str(args, 1, "join")?;
    match args.first() {
        Some(Value::Array(a)) => Ok(Value::from(
            a.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(&sep),
        )),
        Some(Value::Nil) | Some(Value::NoValue) => Ok(Value::from("")),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "title")?;
    // strings.Title: upper-case the first letter of each word.
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    Ok(Value::from(out))
}

fn f_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(arg_str(args, 0, "lower")?.to_lowercase()))
}

fn f_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(arg_str(args, 0, "upper")?.to_uppercase()))
}

fn f_pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "pad")?;
    let pre = arg_int(args, 1, "pad")?.max(0) as usize;
    let post = arg_int(args, 2, "pad")?.max(0) as usize;
    if s.is_empty() {
        return Ok(Value::from(s));
    }
    Ok(Value::from(format!(
        "{}{s}{}",
        " ".repeat(pre),
        " ".repeat(post)
    )))
}

fn f_truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "truncate")?;
    let n = arg_int(args, 1, "truncate")?.max(0) as usize;
    if s.len() < n {
        return Ok(Value::from(s));
    }
    // Go slices bytes; stay on a char boundary rather than produce invalid UTF-8.
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Ok(Value::from(s[..end].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(repo: &str) -> Row {
        Row::new()
            .with("Repository", "REPOSITORY", repo)
            .with("Tag", "TAG", "<none>")
    }

    #[test]
    fn table_prints_header_and_aligns() {
        let f = Format::new("table {{.Repository}}\\t{{.Tag}}", "");
        let out = f.render_rows(&[row("busybox")], &row("")).unwrap();
        assert_eq!(out, "REPOSITORY   TAG\nbusybox      <none>\n");
    }

    #[test]
    fn header_only_when_empty() {
        let f = Format::new("table {{.Repository}}\t{{.Tag}}", "");
        assert_eq!(f.render_rows(&[], &row("")).unwrap(), "REPOSITORY   TAG\n");
    }

    #[test]
    fn functions_like_docker() {
        let f = Format::new(
            r#"{{upper .Repository}} {{lower "AB"}} {{title "hello world"}} {{join (split "a:b" ":") ","}} [{{pad "x" 1 2}}] {{truncate .Repository 3}} {{json .Tag}}"#,
            "",
        );
        let out = f.render_rows(&[row("busybox")], &row("")).unwrap();
        assert_eq!(out, "BUSYBOX ab Hello World a,b [ x  ] bus \"<none>\"\n");
    }

    #[test]
    fn json_of_context_is_sorted_and_escaped() {
        let f = Format::new("json", "");
        let out = f.render_rows(&[row("b")], &row("")).unwrap();
        assert_eq!(
            out,
            "{\"Repository\":\"b\",\"Tag\":\"\\u003cnone\\u003e\"}\n"
        );
    }

    #[test]
    fn raw_values_keep_daemon_key_order() {
        let v = Ordered::parse(br#"{"Id":"x","Config":{"Z":1,"A":[ "a" ],"M":"<"}}"#).unwrap();
        let f = Format::new("{{json .Config}} {{.Id}}", "");
        assert_eq!(
            f.render_value_aliased(&v, &[]).unwrap(),
            "{\"Z\":1,\"A\":[\"a\"],\"M\":\"<\"} x"
        );
        let f = Format::new("{{json .Config}} {{.Id}}", "");
        assert_eq!(
            f.render_value(&v).unwrap(),
            "{\"A\":[\"a\"],\"M\":\"<\",\"Z\":1} x"
        );
        let f = Format::new("x {{.Config.Nope}}", "");
        assert_eq!(
            f.render_value(&v).unwrap_err(),
            "template parsing error: template: :1:11: executing \"\" at <.Config.Nope>: map has no entry for key \"Nope\""
        );
        let f = Format::new("ab\ncd{{.Bogus}}", "").typed("*formatter.imageContext");
        assert_eq!(
            f.render_rows(&[row("b")], &row("")).unwrap_err(),
            "template parsing error: template: :2:4: executing \"\" at <.Bogus>: can't evaluate field Bogus in type *formatter.imageContext"
        );
    }

    #[test]
    fn composite_values_print_like_go() {
        let v =
            Ordered::parse(br#"{"Cmd":["sh","-c"],"L":{"b":"2","a":"1"},"E":null,"N":3}"#).unwrap();
        let f = Format::new(
            "{{.Cmd}}|{{.L}}|{{.E}}|{{.N}}|{{- range .Cmd}} {{.}}{{end -}} |{{$x := .N}}{{$x}}|{{ \"}}\" }}",
            "",
        );
        assert_eq!(
            f.render_value_aliased(&v, &[]).unwrap(),
            "[sh -c]|map[a:1 b:2]|<no value>|3| sh -c|3|}}"
        );
    }

    #[test]
    fn printf_quotes_and_header_errors() {
        let f = Format::new(
            r#"table {{printf "%q|%5s|%%" .Repository .Tag}}\t{{json .}}"#,
            "",
        );
        let out = f.render_rows(&[row("b")], &row("")).unwrap();
        // The header stops at `json .` (a type error in Go) but keeps its first cell.
        assert!(
            out.starts_with("\"REPOSITORY\"|  TAG|%   \n\"b\"|<none>|%           {"),
            "{out}"
        );
        let f = Format::new(
            r#"{{printf "%-4s|%03d|%.2f|%v|%x|%d" .Repository 7 1.5 .Tag "A" "x"}}"#,
            "",
        );
        let out = f.render_rows(&[row("b")], &row("")).unwrap();
        assert_eq!(out, "b   |007|1.50|<none>|41|%!d(string=x)\n");
    }

    #[test]
    fn bad_template_is_an_error() {
        let f = Format::new("{{", "");
        assert!(f.render_rows(&[row("x")], &row("")).is_err());
    }
}
