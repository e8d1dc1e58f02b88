//! How the domain's values read in a sentence: a Console status as a word ("on_hold" reads
//! "On hold"), and a line that starts a sentence made to continue one.

/// A Console status with its first letter capitalized and underscores read as spaces.
pub fn status_word(status: &str) -> String {
    lowercase_or_capital(&status.replace('_', " "), true)
}

/// `line` with its first letter lowercased, to follow "was already" or "Already".
pub fn continuing(line: &str) -> String {
    lowercase_or_capital(line, false)
}

fn lowercase_or_capital(text: &str, capital: bool) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) if capital => c.to_uppercase().chain(chars).collect(),
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_words_and_lines_continue_a_sentence() {
        assert_eq!(status_word("on_hold"), "On hold");
        assert_eq!(status_word(""), "");
        assert_eq!(continuing("Approved by Bob"), "approved by Bob");
    }
}
