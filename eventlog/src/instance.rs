//! The identity of one process of a data directory, for Kafka: the `group.instance.id` of its
//! store consumer (static membership) and the `transactional.id` of its producer.
//!
//! Several processes may share a data directory by design (split roles, several stores on
//! one host), and each needs its own identity, kept across restarts. They are slots under
//! `DATA/kafka-members/member-N/`: a process takes the first slot no running process holds
//! (an exclusive lock, released by the operating system when the process dies) and reads its
//! id from the slot, made once at random. A store killed and started again takes its slot
//! back, and with it its partitions, at once.

use std::path::{Path, PathBuf};

use crate::{DirLock, LogError, Result};

/// Slots tried before giving up.
const MAX_SLOTS: usize = 1024;

/// A claimed identity, held until dropped (or the process ends).
#[derive(Debug)]
pub struct Instance {
    _lock: DirLock,
    /// The id (`eventide-` and 16 hex digits), the same at every start that takes this slot.
    pub id: String,
    /// The slot's directory.
    pub dir: PathBuf,
}

impl Instance {
    /// Takes the first free slot of `data_dir`.
    pub fn claim(data_dir: &Path) -> Result<Self> {
        let root = data_dir.join("kafka-members");
        for n in 0..MAX_SLOTS {
            let dir = root.join(format!("member-{n}"));
            let lock = match DirLock::acquire(&dir) {
                Ok(l) => l,
                Err(LogError::Locked { .. }) => continue,
                Err(e) => return Err(e),
            };
            let path = dir.join("id");
            let id = match std::fs::read_to_string(&path) {
                Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
                _ => {
                    let id = format!("eventide-{:016x}", crate::kafka::rand_u64() ^ (n as u64));
                    eventide_durable::replace(&path, id.as_bytes()).map_err(|e| LogError::Io {
                        path: path.display().to_string(),
                        source: e,
                    })?;
                    id
                }
            };
            return Ok(Self {
                _lock: lock,
                id,
                dir,
            });
        }
        Err(LogError::Kafka(format!(
            "no free member slot among {MAX_SLOTS} under {}",
            root.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_its_own_slot_and_the_same_id_again() {
        let dir = tempfile::tempdir().unwrap();
        let a = Instance::claim(dir.path()).unwrap();
        let b = Instance::claim(dir.path()).unwrap();
        assert_ne!(a.id, b.id, "two holders at once never share an id");
        let a_id = a.id.clone();
        drop(a);
        let again = Instance::claim(dir.path()).unwrap();
        assert_eq!(again.id, a_id, "a freed slot keeps its id");
    }
}
