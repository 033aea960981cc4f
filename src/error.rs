//! The library's error type. The library returns these; only the binary decides
//! how to print them. Each message says what went wrong and, where there is
//! one, what to do next.

use std::path::PathBuf;

/// Everything that can go wrong in deepinit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No wgpu adapter matched the request.
    #[error("no GPU adapter found{filter}; {advice}")]
    NoAdapter {
        /// A description of the name/backend filter that was applied, if any.
        filter: String,
        /// What to do: name one of the adapters listed, or install a driver.
        advice: String,
    },
    /// The adapter refused to create a device.
    #[error("could not open the GPU device on adapter '{adapter}': {reason}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        reason: String,
    },
    /// A wgpu validation or out-of-memory error was raised by an operation.
    #[error("GPU error during {during}: {message}")]
    Gpu {
        /// What deepinit was doing.
        during: &'static str,
        /// wgpu's message.
        message: String,
    },
    /// Mapping a read-back buffer failed.
    #[error("mapping a GPU read-back buffer failed: {0}")]
    BufferMap(String),
    /// A size exceeded a device or host limit.
    #[error("{what} is too large: {got} exceeds the limit of {max}{hint}")]
    LimitExceeded {
        /// What was too large.
        what: String,
        /// The requested amount.
        got: u64,
        /// The limit.
        max: u64,
        /// Extra advice (may be empty).
        hint: String,
    },
    /// A value the user gave (a flag, an environment variable, a file's
    /// contents) that is not allowed.
    #[error(
        "invalid {what}{}: {problem}{}",
        .value.as_ref().map(|v| format!(" '{v}'")).unwrap_or_default(),
        .expected.as_ref().map(|e| format!(" (expected {e})")).unwrap_or_default()
    )]
    BadValue {
        /// Which parameter, named as the flag is (`shape`, `scheme`, `batch`).
        what: &'static str,
        /// The value given, where one string shows it.
        value: Option<String>,
        /// What is wrong with it.
        problem: String,
        /// What is allowed, where a short phrase says it.
        expected: Option<String>,
    },
    /// A path the user gave that cannot be used as asked.
    #[error("{}: {problem}", path.display())]
    BadPath {
        /// The path.
        path: PathBuf,
        /// Why it cannot be used.
        problem: String,
    },
    /// A self-check failed: the device, or deepinit itself, produced something
    /// it must not (a wrong benchmark result, a short read-back). A bug or a
    /// broken driver, never bad input.
    #[error("self-check failed ({what}): {message}")]
    Internal {
        /// What was being checked.
        what: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A file would be overwritten without permission.
    #[error("{} already exists; pass --force to overwrite it", path.display())]
    WouldOverwrite {
        /// The existing file.
        path: PathBuf,
    },
    /// An I/O error on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// [`Error::BadValue`] without a value to show (the message says it).
    pub(crate) fn invalid(what: &'static str, problem: impl Into<String>) -> Self {
        Error::BadValue {
            what,
            value: None,
            problem: problem.into(),
            expected: None,
        }
    }

    /// [`Error::BadValue`] for `value`.
    pub(crate) fn bad(
        what: &'static str,
        value: impl std::fmt::Display,
        problem: impl Into<String>,
    ) -> Self {
        Error::BadValue {
            what,
            value: Some(value.to_string()),
            problem: problem.into(),
            expected: None,
        }
    }

    /// Adds what is allowed to an [`Error::BadValue`] (other errors unchanged).
    pub(crate) fn expecting(self, allowed: impl Into<String>) -> Self {
        match self {
            Error::BadValue {
                what,
                value,
                problem,
                ..
            } => Error::BadValue {
                what,
                value,
                problem,
                expected: Some(allowed.into()),
            },
            e => e,
        }
    }

    /// A choice not among `allowed`, with a "did you mean" where one is close.
    pub(crate) fn choice(what: &'static str, value: &str, allowed: &[&str]) -> Self {
        Error::bad(
            what,
            value,
            format!("unknown {what}{}", did_you_mean(value, allowed)),
        )
        .expecting(allowed.join(", "))
    }

    /// [`Error::BadPath`].
    pub(crate) fn path(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::BadPath {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// [`Error::Internal`].
    pub(crate) fn internal(what: &'static str, message: impl Into<String>) -> Self {
        Error::Internal {
            what,
            message: message.into(),
        }
    }
}

/// `" (did you mean 'X'?)"` for the candidate closest to `input` within
/// two edits (Levenshtein), else an empty string: for messages about a
/// mistyped choice.
pub(crate) fn did_you_mean(input: &str, candidates: &[&str]) -> String {
    let a: Vec<char> = input.to_ascii_lowercase().chars().collect();
    let distance = |b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut cur = vec![i + 1; b.len() + 1];
            for (j, cb) in b.iter().enumerate() {
                cur[j + 1] = (prev[j] + usize::from(ca != cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1);
            }
            prev = cur;
        }
        prev[b.len()]
    };
    candidates
        .iter()
        .map(|c| (distance(c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map_or(String::new(), |(_, c)| format!(" (did you mean '{c}'?)"))
}

/// deepinit's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
