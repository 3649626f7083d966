//! Conversions between PHP values and plain Rust values.
//!
//! Payload encoding walks the zvals itself (never `ZendHashTable::iter()`, which panics on a
//! non-UTF-8 key): an empty array encodes as `[]`, a list (keys exactly 0..n-1) as a JSON array,
//! anything else as an object with keys in PHP order; `stdClass` as an object. Resources,
//! closures, other objects, recursion, INF and NAN, and strings that are not UTF-8 are refused.

use crate::error::{Error, Result};
use crate::event::push_json_str;
use ext_php_rs::boxed::ZBox;
use ext_php_rs::flags::DataType;
use ext_php_rs::types::array::Iter;
use ext_php_rs::types::{ZendHashTable, Zval};

/// PHP's own nesting limit for json_encode.
const MAX_DEPTH: usize = 512;

/// A string zval's bytes as UTF-8, or an error naming `what`.
pub fn utf8<'a>(z: &'a Zval, what: &str) -> Result<&'a str> {
    let s = z
        .dereference()
        .zend_str()
        .ok_or_else(|| Error::input(format!("{what} must be a string")))?;
    std::str::from_utf8(s.as_bytes()).map_err(|_| {
        Error::input(format!(
            "{what} is not valid UTF-8; convert it first (e.g. mb_convert_encoding)"
        ))
    })
}

/// A flag: true/false, or the integers 0 and 1. Anything else (`"yes"`, `"1"`, `1.0`, `2`) is
/// refused, naming `what`: a string such as `"yes"` used to save an endpoint switched off.
pub fn flag(z: &Zval, what: &str) -> Result<bool> {
    let z = z.dereference();
    if let Some(b) = z.bool() {
        return Ok(b);
    }
    match z.long() {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(n) => Err(Error::input(format!(
            "{what} must be true or false (or 0/1), not {n}"
        ))),
        None => Err(Error::input(format!(
            "{what} must be true or false (or 0/1), not {}",
            describe(z)
        ))),
    }
}

/// An array of `name => value` strings (headers), in order; names and values must be UTF-8.
pub fn string_map(z: &Zval, what: &str) -> Result<Vec<(String, String)>> {
    let ht = z
        .dereference()
        .array()
        .ok_or_else(|| Error::input(format!("{what} must be an array of name => value")))?;
    let mut out = Vec::new();
    for (k, v) in entries(ht) {
        let Some(name) = k else {
            return Err(Error::input(format!(
                "{what} must have header names as keys"
            )));
        };
        let value = match v.dereference().long() {
            Some(n) => n.to_string(),
            None => utf8(v, what)?.to_string(),
        };
        out.push((name, value));
    }
    Ok(out)
}

/// A short description of a value for an error message (type, and a little of a string).
fn describe(z: &Zval) -> String {
    if let Some(s) = z.zend_str() {
        return match std::str::from_utf8(s.as_bytes()) {
            Ok(t) => format!("the string {}", crate::error::quote(t)),
            Err(_) => "a string that is not UTF-8".into(),
        };
    }
    if z.is_double() {
        return format!("the float {}", z.double().unwrap_or(f64::NAN));
    }
    if z.is_null() {
        return "null".into();
    }
    if z.is_array() {
        return "an array".into();
    }
    format!("a value of type {}", z.get_type())
}

/// Bytes of a string zval.
pub fn bytes(z: &Zval) -> Option<&[u8]> {
    z.dereference().zend_str().map(|s| s.as_bytes())
}

fn path_str(path: &[String]) -> String {
    if path.is_empty() {
        "payload".into()
    } else {
        format!("payload[{}]", path.join("]["))
    }
}

/// Formats a float as PHP's json_encode does with serialize_precision = -1.
pub fn php_float(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{:e}", f); // shortest round-trip digits, e.g. "1.2345e-7"
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..17).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}.{rest}e{esign}{}", exp.abs());
    }
    if exp < 0 {
        return format!("{sign}0.{}{}", "0".repeat((-exp - 1) as usize), digits);
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        format!("{sign}{}{}", digits, "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

struct Encoder {
    out: String,
    path: Vec<String>,
    /// Hash tables on the current path (recursion detection).
    stack: Vec<*const ZendHashTable>,
}

impl Encoder {
    fn fail(&self, why: &str) -> Error {
        Error::input(format!("{} {why}", path_str(&self.path)))
    }

    fn value(&mut self, z: &Zval) -> Result<()> {
        let z = z.dereference();
        let z = z.indirect().unwrap_or(z);
        match z.get_type() {
            DataType::Null | DataType::Undef => self.out.push_str("null"),
            DataType::True => self.out.push_str("true"),
            DataType::False => self.out.push_str("false"),
            DataType::Bool => self.out.push_str(if z.bool().unwrap_or(false) {
                "true"
            } else {
                "false"
            }),
            DataType::Long => self.out.push_str(&z.long().unwrap_or(0).to_string()),
            DataType::Double => {
                let f = z.double().unwrap_or(f64::NAN);
                if !f.is_finite() {
                    return Err(self.fail("is INF or NAN, which JSON cannot hold"));
                }
                self.out.push_str(&php_float(f));
            }
            DataType::String => {
                let s = z.zend_str().map(|s| s.as_bytes()).unwrap_or_default();
                let s = std::str::from_utf8(s)
                    .map_err(|_| self.fail("is a string that is not valid UTF-8; convert it first (e.g. mb_convert_encoding)"))?;
                push_json_str(&mut self.out, s);
            }
            DataType::Array => {
                let ht = z
                    .array()
                    .ok_or_else(|| self.fail("is an unreadable array"))?;
                self.table(ht, false)?;
            }
            DataType::Object(_) => {
                let obj = z
                    .object()
                    .ok_or_else(|| self.fail("is an unreadable object"))?;
                let full = obj.get_class_name().unwrap_or_default();
                // Anonymous classes are named "class@anonymous\0<file>…".
                let name = full.split('\0').next().unwrap_or_default().to_string();
                if name != "stdClass" {
                    return Err(self.fail(&format!(
                        "is an object of class {name}; only scalars, arrays and stdClass can be sent (convert it to an array first)"
                    )));
                }
                let props = obj
                    .get_properties()
                    .map_err(|_| self.fail("has unreadable properties"))?;
                self.table(props, true)?;
            }
            DataType::Resource => return Err(self.fail("is a resource, which JSON cannot hold")),
            other => return Err(self.fail(&format!("has type {other:?}, which JSON cannot hold"))),
        }
        Ok(())
    }

    fn table(&mut self, ht: &ZendHashTable, force_object: bool) -> Result<()> {
        let ptr = ht as *const ZendHashTable;
        if self.stack.contains(&ptr) {
            return Err(self.fail("contains itself (recursion), which JSON cannot hold"));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.fail(&format!("is nested deeper than {MAX_DEPTH} levels")));
        }
        // Collect keys first: a list is keys exactly 0..n-1 in order.
        let mut entries: Vec<(Key, &Zval)> = Vec::with_capacity(ht.len());
        let mut it = Iter::new(ht);
        while let Some((k, v)) = it.next_zval() {
            let key = if let Some(n) = k.long() {
                Key::Int(n)
            } else {
                let b = k
                    .zend_str()
                    .map(|s| s.as_bytes().to_vec())
                    .unwrap_or_default();
                match String::from_utf8(b) {
                    Ok(s) => Key::Str(s),
                    Err(_) => return Err(self.fail("has a key that is not valid UTF-8")),
                }
            };
            entries.push((key, v));
        }
        let is_list = !force_object
            && entries
                .iter()
                .enumerate()
                .all(|(i, (k, _))| matches!(k, Key::Int(n) if *n == i as i64));
        self.stack.push(ptr);
        if is_list {
            self.out.push('[');
            for (i, (_, v)) in entries.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.path.push(i.to_string());
                self.value(v)?;
                self.path.pop();
            }
            self.out.push(']');
        } else {
            self.out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let name = match k {
                    Key::Int(n) => n.to_string(),
                    Key::Str(s) => s.clone(),
                };
                push_json_str(&mut self.out, &name);
                self.out.push(':');
                self.path.push(name);
                self.value(v)?;
                self.path.pop();
            }
            self.out.push('}');
        }
        self.stack.pop();
        Ok(())
    }
}

enum Key {
    Int(i64),
    Str(String),
}

/// Encodes a PHP array (the payload) as JSON.
pub fn payload_json(ht: &ZendHashTable) -> Result<String> {
    let mut e = Encoder {
        out: String::with_capacity(256),
        path: Vec::new(),
        stack: Vec::new(),
    };
    e.table(ht, false)?;
    Ok(e.out)
}

/// Walks an array's entries with raw keys (safe for non-UTF-8 keys).
pub fn entries(ht: &ZendHashTable) -> Vec<(Option<String>, &Zval)> {
    let mut out = Vec::new();
    let mut it = Iter::new(ht);
    while let Some((k, v)) = it.next_zval() {
        let key = if k.long().is_some() {
            k.long().map(|n| n.to_string())
        } else {
            k.zend_str()
                .and_then(|s| std::str::from_utf8(s.as_bytes()).ok().map(str::to_string))
        };
        out.push((key, v));
    }
    out
}

/// Converts a headers array for `woosync_verify`: `['Name' => 'value']`, `['Name' => ['v']]` or a
/// list of `"Name: value"` lines.
pub fn headers(ht: &ZendHashTable) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in entries(ht) {
        let v = v.dereference();
        let values: Vec<String> = if let Some(arr) = v.array() {
            entries(arr)
                .into_iter()
                .filter_map(|(_, x)| bytes(x).map(|b| String::from_utf8_lossy(b).into_owned()))
                .collect()
        } else if let Some(b) = bytes(v) {
            vec![String::from_utf8_lossy(b).into_owned()]
        } else if let Some(n) = v.long() {
            vec![n.to_string()]
        } else {
            vec![]
        };
        let numeric_key = k.as_deref().is_none_or(|s| s.parse::<i64>().is_ok());
        for val in values {
            if numeric_key {
                if let Some((name, value)) = val.split_once(':') {
                    out.push((name.trim().to_string(), value.trim().to_string()));
                }
            } else if let Some(name) = &k {
                // `HTTP_WEBHOOK_ID` style names from $_SERVER work too.
                let name = name
                    .strip_prefix("HTTP_")
                    .map(|n| n.replace('_', "-"))
                    .unwrap_or_else(|| name.clone());
                out.push((name, val));
            }
        }
    }
    out
}

/// Builds PHP arrays from Rust values.
pub struct Arr(pub ZBox<ZendHashTable>);

impl Arr {
    pub fn new() -> Arr {
        Arr(ZendHashTable::new())
    }
    pub fn set(&mut self, key: &str, v: Zval) -> &mut Self {
        let _ = self.0.insert(key, v);
        self
    }
    pub fn push(&mut self, v: Zval) -> &mut Self {
        let _ = self.0.push(v);
        self
    }
    pub fn into_zval(self) -> Zval {
        let mut z = Zval::new();
        z.set_hashtable(self.0);
        z
    }
}

impl Default for Arr {
    fn default() -> Self {
        Self::new()
    }
}

pub fn zstr(s: &str) -> Zval {
    let mut z = Zval::new();
    let _ = z.set_string(s, false);
    z
}
pub fn zbytes(b: &[u8]) -> Zval {
    let mut z = Zval::new();
    z.set_binary(b.to_vec());
    z
}
pub fn zint(n: i64) -> Zval {
    let mut z = Zval::new();
    z.set_long(n);
    z
}
pub fn zfloat(f: f64) -> Zval {
    let mut z = Zval::new();
    z.set_double(f);
    z
}
pub fn zbool(b: bool) -> Zval {
    let mut z = Zval::new();
    z.set_bool(b);
    z
}
pub fn znull() -> Zval {
    let mut z = Zval::new();
    z.set_null();
    z
}
pub fn zopt_str(s: Option<&str>) -> Zval {
    s.map_or_else(znull, zstr)
}
pub fn zopt_f(f: Option<f64>) -> Zval {
    f.map_or_else(znull, zfloat)
}
pub fn zopt_i(n: Option<i64>) -> Zval {
    n.map_or_else(znull, zint)
}

#[cfg(test)]
mod tests {
    use super::php_float;

    #[test]
    fn floats_like_php() {
        // php -r 'echo json_encode([1.0, 0.1, 1e25, 1.5e-7, -0.0, 123456789012345678.0, 1e16, 1e17, 0.0001, 2.5, -3.75e-5]);'
        let cases = [
            (1.0, "1"),
            (0.1, "0.1"),
            (1e25, "1.0e+25"),
            (1.5e-7, "1.5e-7"),
            (-0.0, "-0"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e16, "10000000000000000"),
            (1e17, "1.0e+17"),
            (0.0001, "0.0001"),
            (2.5, "2.5"),
            (-3.75e-5, "-3.75e-5"),
        ];
        for (f, s) in cases {
            assert_eq!(php_float(f), s, "{f}");
        }
    }
}
