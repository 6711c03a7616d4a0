//! Reading input files within [`MAX_FILE_BYTES`](crate::limits::MAX_FILE_BYTES): never more
//! than the limit plus one byte is read, whatever the file is (`/dev/zero`, a FIFO, a file
//! that grows while it is read).

use std::io::Read;
use std::path::Path;

use crate::limits::{human_bytes, MAX_FILE_BYTES, MAX_TOTAL_BYTES};
use crate::InventoryError;

/// Reads `path` as UTF-8 text, refusing a file larger than
/// [`MAX_FILE_BYTES`](crate::limits::MAX_FILE_BYTES) without reading more of it than that.
pub fn read_text_file(path: &Path) -> Result<String, InventoryError> {
    read_limited(path, MAX_FILE_BYTES)
}

/// The bytes left for one inventory load ([`MAX_TOTAL_BYTES`]).
pub(crate) struct Budget {
    left: u64,
}

impl Budget {
    pub fn new() -> Self {
        Budget {
            left: MAX_TOTAL_BYTES,
        }
    }

    /// [`read_text_file`], charged to this budget.
    pub fn read(&mut self, path: &Path) -> Result<String, InventoryError> {
        let text = read_limited(path, MAX_FILE_BYTES.min(self.left))?;
        self.left -= text.len() as u64;
        Ok(text)
    }
}

fn read_limited(path: &Path, limit: u64) -> Result<String, InventoryError> {
    let too_big = || {
        let what = if limit < MAX_FILE_BYTES {
            format!(
                "the files of this inventory together are larger than {}",
                human_bytes(MAX_TOTAL_BYTES)
            )
        } else {
            format!("file is larger than {}", human_bytes(MAX_FILE_BYTES))
        };
        InventoryError::invalid(path, format!("{what}, virtfleet's limit"))
    };
    let file = std::fs::File::open(path).map_err(|e| InventoryError::io(path, e))?;
    let meta = file.metadata().map_err(|e| InventoryError::io(path, e))?;
    if meta.is_file() && meta.len() > limit {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| InventoryError::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        InventoryError::parse(path, line, "not UTF-8 text")
    })
}
