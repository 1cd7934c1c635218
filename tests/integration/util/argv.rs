//! The invocations the fakes and recording wrappers log (`TestEnv::log`, one argv per call),
//! asserted by what they mean: which subcommand, which flag with which value, instead of by
//! index into the argv.

pub trait Argv {
    /// The words right after the program are `words` (`["buildx", "build"]`).
    fn is(&self, words: &[&str]) -> bool;
    /// `flag value` stands in it, as two words.
    fn has_flag(&self, flag: &str, value: &str) -> bool;
    /// `word` is one of its words.
    fn has(&self, word: &str) -> bool;
}

impl Argv for [String] {
    fn is(&self, words: &[&str]) -> bool {
        self.len() > words.len() && self[1..=words.len()].iter().zip(words).all(|(a, w)| a == w)
    }

    fn has_flag(&self, flag: &str, value: &str) -> bool {
        self.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    fn has(&self, word: &str) -> bool {
        self.iter().any(|a| a == word)
    }
}
