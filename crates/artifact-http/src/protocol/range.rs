//! Byte ranges of an artifact's stream: the `Range`, `Content-Range`, `If-Range` and `ETag`
//! rules both sides follow (section 5 of `docs/protocol.md`).

use std::ops::Range;

use tarstream::Digest;

/// What a `GET` with a `Range` header gets, by [`parse_range`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAnswer {
    /// The whole stream, 200: no range asked for, or one this protocol ignores (several
    /// ranges, another unit, a malformed value).
    Whole,
    /// 206 with these bytes.
    Part(Range<u64>),
    /// 416: the range starts at or beyond the stream's end.
    Unsatisfiable,
}

/// Reads a `Range` header value against a stream of `len` bytes: one range of the `bytes`
/// unit, `A-B` (inclusive, `B` clamped to the end), `A-` or the suffix `-N`. Anything else
/// is ignored (the whole stream is sent), as HTTP allows a server to do.
///
/// ```
/// use artifact_http::protocol::{RangeAnswer, parse_range};
///
/// assert_eq!(parse_range("bytes=0-99", 1000), RangeAnswer::Part(0..100));
/// assert_eq!(parse_range("bytes=900-", 1000), RangeAnswer::Part(900..1000));
/// assert_eq!(parse_range("bytes=-10", 1000), RangeAnswer::Part(990..1000));
/// assert_eq!(parse_range("bytes=1000-", 1000), RangeAnswer::Unsatisfiable);
/// assert_eq!(parse_range("bytes=0-1,5-9", 1000), RangeAnswer::Whole);
/// ```
pub fn parse_range(value: &str, len: u64) -> RangeAnswer {
    let Some((unit, spec)) = value.trim().split_once('=') else { return RangeAnswer::Whole };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeAnswer::Whole };
    let number = |text: &str| -> Option<u64> {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // `-N`: the last N bytes.
        (true, _, Some(0)) => RangeAnswer::Unsatisfiable,
        (true, _, Some(_)) if len == 0 => RangeAnswer::Unsatisfiable,
        (true, _, Some(n)) => RangeAnswer::Part(len - n.min(len)..len),
        (false, Some(a), _) if a >= len => {
            if last.trim().is_empty() || number(last).is_some_and(|b| b >= a) {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Whole
            }
        }
        (false, Some(a), None) if last.trim().is_empty() => RangeAnswer::Part(a..len),
        (false, Some(a), Some(b)) if b >= a => RangeAnswer::Part(a..b.saturating_add(1).min(len)),
        _ => RangeAnswer::Whole,
    }
}

/// The `Content-Range` value of a 206 answer: `bytes A-B/LEN` (B inclusive).
///
/// # Panics
///
/// If `range` is empty.
pub fn content_range(range: &Range<u64>, len: u64) -> String {
    assert!(range.start < range.end, "a 206 answer carries at least one byte");
    format!("bytes {}-{}/{len}", range.start, range.end - 1)
}

/// The `Content-Range` value of a 416 answer: `bytes */LEN`.
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

/// Reads a `Content-Range` value of a 206 answer: the bytes it carries and the stream's
/// length (`None` for `*`).
///
/// ```
/// use artifact_http::protocol::parse_content_range;
///
/// assert_eq!(parse_content_range("bytes 10-19/100"), Some((10..20, Some(100))));
/// assert_eq!(parse_content_range("bytes 10-19/*"), Some((10..20, None)));
/// assert_eq!(parse_content_range("bytes 19-10/100"), None);
/// ```
pub fn parse_content_range(value: &str) -> Option<(Range<u64>, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, len) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let strict = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|c| c.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    let (a, b) = (strict(a)?, strict(b)?);
    let len = if len == "*" { None } else { Some(strict(len)?) };
    if b < a || len.is_some_and(|len| b >= len) {
        return None;
    }
    Some((a..b + 1, len))
}

/// The strong `ETag` of an artifact's (identity-encoded) stream: its tree digest in quotes.
/// Two servers that hold the same artifact give the same tag, so a resumed download may
/// continue from either.
pub fn etag(digest: &Digest) -> String {
    format!("\"{digest}\"")
}

/// Whether an `If-Range` value allows a partial answer for a stream whose tag is `etag`:
/// only an exactly equal strong tag does (a date, a weak tag or another tag gets the whole
/// stream).
pub fn if_range_matches(value: &str, etag: &str) -> bool {
    value.trim() == etag
}

/// Whether an `If-None-Match` value names the stream whose tag is `etag` (`"DIGEST"`), so that
/// a `GET` or `HEAD` is answered `304 Not Modified`: `*`, or a list of tags one of which
/// equals `etag` by the weak comparison (a `W/` prefix is ignored). A malformed list matches
/// nothing from the first fault on (the whole answer is then sent, which is never wrong).
///
/// ```
/// use artifact_http::protocol::if_none_match;
///
/// let tag = "\"00ff\"";
/// assert!(if_none_match("\"00ff\"", tag));
/// assert!(if_none_match("\"a,b\", W/\"00ff\"", tag));
/// assert!(if_none_match("*", tag));
/// assert!(!if_none_match("\"00fe\"", tag));
/// assert!(!if_none_match("00ff", tag));
/// ```
pub fn if_none_match(value: &str, etag: &str) -> bool {
    let mut rest = value.trim();
    if rest == "*" {
        return true;
    }
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let tagged = rest.strip_prefix("W/").unwrap_or(rest);
        // An opaque tag is a quoted string without quotes inside (it may hold commas).
        let Some(quoted) = tagged.strip_prefix('"') else { return false };
        let Some(end) = quoted.find('"') else { return false };
        if tagged[..end + 2] == *etag {
            return true;
        }
        rest = &quoted[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, len: u64, expect: RangeAnswer) {
        assert_eq!(parse_range(value, len), expect, "{value:?} of {len}");
    }

    #[test]
    fn none_match_lists() {
        let tag = "\"abc\"";
        for value in
            ["\"abc\"", " \"abc\" ", "W/\"abc\"", "*", "\"x\",\"abc\"", "\"a,b\" , W/\"abc\""]
        {
            assert!(if_none_match(value, tag), "{value:?}");
        }
        for value in
            ["", "abc", "\"abd\"", "\"ab\"", "\"abc", "w/\"abc\"", "x, \"abc\"", "\"x\" \"y"]
        {
            assert!(!if_none_match(value, tag), "{value:?}");
        }
    }

    #[test]
    fn ranges() {
        use RangeAnswer::{Part, Unsatisfiable, Whole};
        check("bytes=0-0", 10, Part(0..1));
        check("bytes=0-9", 10, Part(0..10));
        check("bytes=0-99", 10, Part(0..10));
        check("bytes=9-9", 10, Part(9..10));
        check("bytes=9-", 10, Part(9..10));
        check("BYTES = 2 - 4", 10, Part(2..5));
        check("bytes=-1", 10, Part(9..10));
        check("bytes=-10", 10, Part(0..10));
        check("bytes=-11", 10, Part(0..10));
        check("bytes=10-", 10, Unsatisfiable);
        check("bytes=10-12", 10, Unsatisfiable);
        check("bytes=-0", 10, Unsatisfiable);
        check("bytes=-5", 0, Unsatisfiable);
        check("bytes=0-", 0, Unsatisfiable);
        check("bytes=5-4", 10, Whole);
        check("bytes=12-11", 10, Whole);
        check("bytes=0-1,3-4", 10, Whole);
        check("items=0-1", 10, Whole);
        check("bytes=a-b", 10, Whole);
        check("bytes=+1-2", 10, Whole);
        check("bytes=1", 10, Whole);
        check("bytes=-", 10, Whole);
        check("bytes=18446744073709551615-18446744073709551615", 10, Unsatisfiable);
        check("bytes=0-18446744073709551615", 10, Part(0..10));
        check("", 10, Whole);
    }

    #[test]
    fn content_ranges_round_trip() {
        for (range, len) in [(0..1, 1), (5..10, 10), (0..10, 10), (3..4, 100)] {
            let text = content_range(&range, len);
            assert_eq!(parse_content_range(&text), Some((range, Some(len))));
        }
        for bad in ["bytes 5-4/10", "bytes 0-10/10", "bytes -1/10", "bytes 0-1/x", "0-1/2", ""] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
        assert_eq!(unsatisfied_range(7), "bytes */7");
    }

    #[test]
    fn if_range_needs_the_strong_tag() {
        let digest: Digest = "00".repeat(32).parse().unwrap();
        let tag = etag(&digest);
        assert!(if_range_matches(&tag, &tag));
        assert!(!if_range_matches(&format!("W/{tag}"), &tag));
        assert!(!if_range_matches("Wed, 21 Oct 2015 07:28:00 GMT", &tag));
    }
}
