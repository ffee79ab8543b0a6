//! The consumer group of an index that is a complete replica of the log (a durable node's own
//! index, or a search role's).

use std::io;
use std::path::{Path, PathBuf};

/// The Kafka consumer group of the index in `index_dir`: made up with the index and kept
/// beside it (`<index_dir>.group`), so a restarted process resumes its own group, and a new or
/// deleted index directory is built from the start of the log under a new group. Called
/// before the index directory is created.
pub fn replica_group(index_dir: &Path) -> io::Result<String> {
    let path = group_file(index_dir);
    if index_dir.is_dir() {
        if let Ok(group) = std::fs::read_to_string(&path) {
            return Ok(group.trim().to_owned());
        }
    }
    if let Some(parent) = index_dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let group = format!("parley-search-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(&path, &group)?;
    Ok(group)
}

fn group_file(index_dir: &Path) -> PathBuf {
    index_dir.with_extension("group")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_is_kept_with_its_index_and_renewed_without_it() {
        let data = tempfile::tempdir().expect("temporary directory");
        let index_dir = data.path().join("index");
        let first = replica_group(&index_dir).expect("group");
        assert!(first.starts_with("parley-search-"));
        std::fs::create_dir(&index_dir).expect("index directory");
        assert_eq!(replica_group(&index_dir).expect("same group"), first);
        std::fs::remove_dir(&index_dir).expect("index gone");
        assert_ne!(replica_group(&index_dir).expect("new group"), first);
    }
}
