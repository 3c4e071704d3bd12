//! Ids in paths.

/// Percent-encodes an id as one path segment: every byte but the unreserved ones, and the dots
/// of `.` and `..`, which clients would otherwise resolve away.
pub(crate) fn encode_segment(id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let dots_only = id.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'~')
            || (byte == b'.' && !dots_only);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_one_path_segment() {
        assert_eq!(encode_segment("01ABC"), "01ABC");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment(".."), "%2E%2E");
        assert_eq!(encode_segment("a.b"), "a.b");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
