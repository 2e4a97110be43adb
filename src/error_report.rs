//! How a failed command's error is printed.
//!
//! The crates' errors put their cause into their own message (`lock file DIR/LOCK:
//! Permission denied (os error 13)`) and also return it as their `source()`, so that
//! logs that print only the top message still say why. anyhow's reports print the chain
//! too, which showed that cause twice; here a cause whose text the message before it
//! already ends with is left out.

use std::fmt::Write as _;

/// The messages of `error` and its causes, each cause that the message before it
/// already ends with left out.
fn messages(error: &anyhow::Error) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.last().is_some_and(|before| before.ends_with(&text)) {
            continue;
        }
        out.push(text);
    }
    out
}

/// The report for a terminal: the message, then its causes numbered below
/// `Caused by:` as anyhow prints them.
pub fn multi_line(error: &anyhow::Error) -> String {
    let messages = messages(error);
    let mut out = String::new();
    let mut rest = messages.iter();
    if let Some(first) = rest.next() {
        out.push_str(first);
    }
    match messages.len() {
        0 | 1 => {}
        2 => {
            let _ = write!(out, "\n\nCaused by:\n    {}", messages[1]);
        }
        _ => {
            out.push_str("\n\nCaused by:");
            for (i, cause) in rest.enumerate() {
                let _ = write!(out, "\n    {i}: {cause}");
            }
        }
    }
    out
}

/// The report on one line (for JSON logs): the messages joined with `: `.
pub fn one_line(error: &anyhow::Error) -> String {
    messages(error).join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that puts its cause into its message and returns it as its source,
    /// as the crates' errors do.
    #[derive(Debug)]
    struct Lock {
        source: std::io::Error,
    }

    impl std::fmt::Display for Lock {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "lock file /d/LOCK: {}", self.source)
        }
    }

    impl std::error::Error for Lock {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    fn denied() -> std::io::Error {
        std::io::Error::from_raw_os_error(13)
    }

    #[test]
    fn a_cause_the_message_already_ends_with_is_not_repeated() {
        let error = anyhow::Error::new(Lock { source: denied() });
        assert_eq!(
            multi_line(&error),
            "lock file /d/LOCK: Permission denied (os error 13)"
        );
        assert_eq!(
            one_line(&error),
            "lock file /d/LOCK: Permission denied (os error 13)"
        );
    }

    #[test]
    fn causes_not_in_the_message_are_listed() {
        let error = anyhow::Error::new(Lock { source: denied() }).context("opening the store");
        assert_eq!(
            multi_line(&error),
            "opening the store\n\nCaused by:\n    lock file /d/LOCK: Permission denied (os error 13)"
        );
        let error = anyhow::Error::new(denied())
            .context("binding 127.0.0.1:4317")
            .context("starting the collector");
        assert_eq!(
            multi_line(&error),
            "starting the collector\n\nCaused by:\n    0: binding 127.0.0.1:4317\n    \
             1: Permission denied (os error 13)"
        );
        assert_eq!(
            one_line(&error),
            "starting the collector: binding 127.0.0.1:4317: Permission denied (os error 13)"
        );
    }
}
