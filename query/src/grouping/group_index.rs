//! The groups of a partition: the key ids of each group, and the group of each combination
//! of ids (a direct lookup for one key column, a hash map of packed ids for several).

/// Key ids of each group, and the lookup from ids to groups.
#[derive(Default)]
pub(super) struct GroupIndex {
    /// `keys[g * k + c]`: the id of key column `c` in group `g`.
    pub(super) keys: Vec<u32>,
    /// One key column: the group of each id (`u32::MAX`: none yet).
    pub(super) by_id: Vec<u32>,
    /// Several key columns: the group of each combination of ids, 32 bits per column.
    pub(super) by_ids: foldhash::HashMap<u128, u32>,
    count: usize,
}

impl GroupIndex {
    pub(super) fn len(&self) -> usize {
        self.count
    }

    fn new_group(&mut self, ids: impl Iterator<Item = u32>) -> u32 {
        self.keys.extend(ids);
        self.count += 1;
        (self.count - 1) as u32
    }

    pub(super) fn assign(&mut self, ids: &[Vec<u32>], n: usize, out: &mut Vec<usize>) {
        out.clear();
        out.reserve(n);
        if let [only] = ids {
            for &id in &only[..n] {
                let slot = id as usize;
                if slot >= self.by_id.len() {
                    self.by_id.resize(slot + 1, u32::MAX);
                }
                let mut g = self.by_id[slot];
                if g == u32::MAX {
                    g = self.new_group(std::iter::once(id));
                    self.by_id[slot] = g;
                }
                out.push(g as usize);
            }
            return;
        }
        let mut last = (u128::MAX, 0u32);
        for r in 0..n {
            let packed = ids
                .iter()
                .fold(0u128, |acc, col| (acc << 32) | col[r] as u128);
            if packed != last.0 {
                let g = match self.by_ids.get(&packed) {
                    Some(&g) => g,
                    None => {
                        let g = self.new_group(ids.iter().map(|col| col[r]));
                        self.by_ids.insert(packed, g);
                        g
                    }
                };
                last = (packed, g);
            }
            out.push(last.1 as usize);
        }
    }
}
