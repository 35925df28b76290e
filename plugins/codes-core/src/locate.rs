//! Finding the code in what a scanner read: a bare code, a scan URL, or a
//! GS1 Digital Link URI.

/// The code a scanned text names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRef {
    /// A default code (still to be parsed with the tenant's key).
    Default(String),
    /// A GS1 Digital Link: GTIN (14 digits), lot, and the AI 21 serial.
    Gs1 {
        gtin: String,
        lot: String,
        serial: String,
    },
}

/// Longest text accepted as a scan.
pub const MAX_SCAN_TEXT: usize = 512;

/// Reads a scanned text: `…/01/{gtin}/10/{lot}/21/{serial}` is a GS1
/// Digital Link (in that order, as GS1 requires); any other URL names the
/// default code in its last path segment; anything else is the code itself.
pub fn locate(text: &str) -> Option<CodeRef> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_SCAN_TEXT {
        return None;
    }
    let path = match text.find("://") {
        Some(i) => {
            let rest = &text[i + 3..];
            rest.find('/').map(|j| &rest[j..]).unwrap_or("")
        }
        None => text,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(i) = segments.iter().position(|s| *s == "01")
        && let [gtin, "10", lot, "21", serial, ..] = &segments[i + 1..]
    {
        return Some(CodeRef::Gs1 {
            gtin: crate::gtin14(gtin),
            lot: percent_decode(lot)?,
            serial: percent_decode(serial)?,
        });
    }
    if text.contains('/') {
        return segments
            .last()
            .map(|s| CodeRef::Default(percent_decode(s).unwrap_or_default()));
    }
    Some(CodeRef::Default(text.to_owned()))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters stay).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_code_in_each_form_a_scanner_reads() {
        let d = |s: &str| Some(CodeRef::Default(s.into()));
        assert_eq!(locate("  ABCDE-FGHJK "), d("ABCDE-FGHJK"));
        assert_eq!(locate("https://q.brand.cn/c/ABCDE?utm=x"), d("ABCDE"));
        assert_eq!(
            locate("http://127.0.0.1:8080/t/demo/p/codes/c/XYZ/"),
            d("XYZ")
        );
        assert_eq!(
            locate("https://q.brand.cn/01/6901234567892/10/L%2F7/21/aB3?x=1"),
            Some(CodeRef::Gs1 {
                gtin: "06901234567892".into(),
                lot: "L/7".into(),
                serial: "aB3".into()
            })
        );
        assert_eq!(locate(""), None);
        assert_eq!(locate(&"A".repeat(MAX_SCAN_TEXT + 1)), None);
        assert_eq!(
            locate("https://q.brand.cn/01/6901234567892/10/L%ZZ/21/a"),
            None
        );
    }

    #[test]
    fn percent_encoding_round_trips() {
        for s in ["L-2026/11", "批次 7", "a%b"] {
            assert_eq!(percent_decode(&percent_encode(s)).as_deref(), Some(s));
        }
    }
}
