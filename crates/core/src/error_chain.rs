//! An error and its causes as one line for people, each thing said once.
//!
//! Transport errors wrap their causes and often print them as well: joined
//! naively, a refused connection reads "transport error: tcp connect error:
//! tcp connect error: Connection refused". [`one_line`] joins a chain with
//! ": " but skips a cause the line already ends with (a repeat, or a cause
//! its wrapper printed already), and lets a cause that starts with the
//! previous part ("tcp connect error: Connection refused" after "tcp
//! connect error") stand in its place.

use std::error::Error;

/// `error` and its sources on one line, each said once.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    join(std::iter::successors(Some(error), |&error| error.source()))
}

/// The messages of `chain` (an error, then its causes, as
/// `anyhow::Error::chain` gives them) on one line, each said once.
pub fn join<'a>(chain: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for error in chain {
        let message = error.to_string();
        let message = message.trim();
        if message.is_empty() {
            continue;
        }
        let line = parts.join(": ");
        if line == message || line.ends_with(&format!(": {message}")) {
            continue;
        }
        match parts.last_mut() {
            Some(last) if message.starts_with(&format!("{last}: ")) => *last = message.to_string(),
            _ => parts.push(message.to_string()),
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1
                .as_deref()
                .map(|cause| cause as &(dyn Error + 'static))
        }
    }

    fn chain(messages: &[&'static str]) -> Layer {
        let mut error = None;
        for message in messages.iter().rev() {
            error = Some(Layer(message, error.map(Box::new)));
        }
        error.unwrap()
    }

    #[test]
    fn a_chain_is_joined_with_each_part_once() {
        let cases: [(&[&str], &str); 6] = [
            (&["a", "b", "c"], "a: b: c"),
            (
                &[
                    "transport error",
                    "tcp connect error",
                    "tcp connect error",
                    "Connection refused (os error 111)",
                ],
                "transport error: tcp connect error: Connection refused (os error 111)",
            ),
            // A wrapper that printed its cause already.
            (
                &["cannot read x: denied", "denied"],
                "cannot read x: denied",
            ),
            // A cause that repeats its wrapper and says more.
            (
                &["dns error", "dns error: name not known", "name not known"],
                "dns error: name not known",
            ),
            (&["a", "", "b"], "a: b"),
            // Only whole parts count as repeats.
            (&["error 111", "11"], "error 111: 11"),
        ];
        for (messages, expected) in cases {
            assert_eq!(one_line(&chain(messages)), expected, "{messages:?}");
        }
    }
}
