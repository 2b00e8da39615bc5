//! Small text helpers for messages that end up in size-limited places (CloudFormation's Reason).

/// At most `max` characters, with an ellipsis when something was cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(super::truncate_chars("héllo", 10), "héllo");
        assert_eq!(super::truncate_chars("héllo wörld", 5), "héll…");
    }
}
