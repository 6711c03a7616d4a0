//! One error type for everything this crate reads: each variant names the file it came from.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A syntax or structure error at a known line (1-based).
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// A problem found after parsing, where no single line is to blame (e.g. a `children` cycle).
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },

    #[error("group {group:?} is not defined in {}", path.display())]
    UnknownGroup { group: String, path: PathBuf },

    #[error("host pattern item {item:?} matches no host or group in {}", path.display())]
    NoMatch { item: String, path: PathBuf },

    #[error("invalid host pattern {pattern:?}: {message}")]
    BadPattern { pattern: String, message: String },
}

impl InventoryError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        InventoryError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn parse(path: &Path, line: usize, message: impl Into<String>) -> Self {
        InventoryError::Parse {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        InventoryError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
