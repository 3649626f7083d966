//! Credentials in URLs (`http://user:password@host/`) are never shown: every place that prints an
//! endpoint or proxy URL, or an error text that may contain one, masks the password. A settings
//! form that saves back the masked URL keeps the stored password (see [`restore`]).

/// What a masked password looks like.
pub const MASK: &str = "****";

/// Splits `scheme://user:password@rest` into (scheme://user, password, @rest); None without a
/// password in the authority.
fn split(url: &str) -> Option<(&str, &str, &str)> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let at = authority.rfind('@')?;
    let userinfo = &authority[..at];
    let colon = userinfo.find(':')?;
    let user_end = scheme_end + colon;
    let pass_end = scheme_end + at;
    Some((
        &url[..user_end],
        &url[user_end + 1..pass_end],
        &url[pass_end..],
    ))
}

/// The URL with its password (if any) replaced by `****`.
pub fn url(u: &str) -> String {
    match split(u) {
        Some((head, pass, tail)) if !pass.is_empty() => format!("{head}:{MASK}{tail}"),
        _ => u.to_string(),
    }
}

/// Masks every `scheme://user:password@` in a free text (error messages, responses).
pub fn text(s: &str) -> String {
    if !s.contains("://") || !s.contains('@') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("://") {
        // The scheme: letters before "://".
        let start = rest[..pos]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        out.push_str(&rest[..start]);
        let candidate = &rest[start..];
        let end = candidate[pos - start + 3..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '<' || c == '>')
            .map_or(candidate.len(), |i| i + pos - start + 3);
        out.push_str(&url(&candidate[..end]));
        rest = &candidate[end..];
    }
    out.push_str(rest);
    out
}

/// A URL saved back from a form that showed it masked keeps the stored password: when `new` has
/// the mask as its password and otherwise matches `stored` up to the password, the stored URL's
/// password is put back.
pub fn restore(new: &str, stored: &str) -> String {
    // "@host:port" of a tail such as "@host:port/path?query".
    let host = |tail: &str| tail[..tail.find(['/', '?', '#']).unwrap_or(tail.len())].to_string();
    match (split(new), split(stored)) {
        (Some((nh, MASK, nt)), Some((sh, sp, st))) if nh == sh && host(nt) == host(st) => {
            format!("{nh}:{sp}{nt}")
        }
        _ => new.to_string(),
    }
}

/// A header value for display: credentials (Authorization, cookies, tokens, keys, secrets,
/// passwords, signatures) are masked.
pub fn header(name: &str, value: &str) -> String {
    let n = name.to_ascii_lowercase();
    let sensitive = [
        "auth",
        "cookie",
        "token",
        "key",
        "secret",
        "pass",
        "signature",
        "session",
    ]
    .iter()
    .any(|w| n.contains(w));
    if !sensitive || value.is_empty() {
        return text(value);
    }
    match value.split_once(' ') {
        // "Bearer abc…": keep the scheme.
        Some((scheme, _)) if scheme.len() <= 12 => format!("{scheme} {MASK}"),
        _ => MASK.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_only() {
        assert_eq!(
            url("https://bob:s3cr@t@crm.example/x?a=b@c"),
            "https://bob:****@crm.example/x?a=b@c"
        );
        assert_eq!(url("http://bob@crm.example/"), "http://bob@crm.example/");
        assert_eq!(url("http://crm.example/a@b"), "http://crm.example/a@b");
        assert_eq!(url("http://:pw@h/"), "http://:****@h/");
        assert_eq!(url("http://[::1]:80/"), "http://[::1]:80/");
        assert_eq!(url("not a url"), "not a url");
    }

    #[test]
    fn scrubs_text() {
        let t = "connect to http://u:p4ss@proxy:3128 failed; see https://x:y@h/z, or http://h/";
        let s = text(t);
        assert!(!s.contains("p4ss") && !s.contains(":y@"), "{s}");
        assert_eq!(
            s,
            "connect to http://u:****@proxy:3128 failed; see https://x:****@h/z, or http://h/"
        );
        assert_eq!(text("no urls here @ all"), "no urls here @ all");
    }

    #[test]
    fn masks_credential_headers() {
        assert_eq!(header("Authorization", "Bearer abc.def"), "Bearer ****");
        assert_eq!(header("X-Api-Key", "k123"), "****");
        assert_eq!(header("X-Shop", "main"), "main");
    }

    #[test]
    fn restores_the_stored_password() {
        let stored = "https://bob:s3cret@crm.example/hook";
        assert_eq!(restore(&url(stored), stored), stored);
        assert_eq!(
            restore("https://bob:****@crm.example/other", stored),
            "https://bob:s3cret@crm.example/other"
        );
        // another user or host: the mask is taken literally (no password moves elsewhere)
        assert_eq!(
            restore("https://eve:****@crm.example/hook", stored),
            "https://eve:****@crm.example/hook"
        );
        assert_eq!(
            restore("https://bob:****@evil.example/hook", stored),
            "https://bob:****@evil.example/hook"
        );
        assert_eq!(
            restore("https://bob:new@crm.example/hook", stored),
            "https://bob:new@crm.example/hook"
        );
    }
}
