//! The library's error type. The library returns these; only the binary decides
//! how to print them. Each message says what went wrong and, where there is
//! one, what to do next.

use std::path::PathBuf;

/// Everything that can go wrong in deepinit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No wgpu adapter matched the request.
    #[error(
        "no GPU adapter found{filter}; install a Vulkan driver (on Debian/Ubuntu: \
         apt-get install mesa-vulkan-drivers, which provides the lavapipe software \
         adapter) or run with --backend cpu"
    )]
    NoAdapter {
        /// A description of the name/backend filter that was applied, if any.
        filter: String,
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
    /// A bad user-supplied parameter.
    #[error("invalid {what}: {message}")]
    InvalidArgument {
        /// Which parameter.
        what: &'static str,
        /// Why it is invalid.
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
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(what: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            message: message.into(),
        }
    }
}

/// `" (did you mean 'X'?)"` for the candidate closest to `input` within
/// two edits (Levenshtein), else an empty string: for messages about a
/// mistyped choice.
pub fn did_you_mean(input: &str, candidates: &[&str]) -> String {
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
