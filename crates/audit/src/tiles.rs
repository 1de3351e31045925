//! Reading a C2SP tlog-tiles directory (an export of ours, or any static copy)
//! for the auditor. Every file is named in its errors.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use ceasefire_core::merkle::Hash;
use ceasefire_core::tiles::*;

/// What `ceasefire-ledger/projection` holds.
#[derive(Deserialize)]
struct ProjectionFile {
    as_of_seq: u64,
    digest: String,
}

/// Why reading a tiles directory failed, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TilesError {
    #[error("{} is missing", .path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {len} bytes, but a tile of width {width} is exactly {expected}", .path.display())]
    TileLength {
        path: PathBuf,
        width: u16,
        len: usize,
        expected: usize,
    },
    #[error("{}: entry {entry} at byte {offset}: {problem}", .path.display())]
    BadEntry {
        path: PathBuf,
        entry: usize,
        offset: usize,
        problem: String,
    },
    #[error("{}: holds {found} entries, expected {expected} (truncated)", .path.display())]
    TooFewEntries {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
    #[error("{}: {reason}", .path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("no tile has width {width} (1 to 256) or level {level} (0 to 7)")]
    BadTile { level: u8, width: u16 },
}

/// A tiles directory, read as an auditor would (nothing here is trusted:
/// check the checkpoint's signature and rebuild the tree from the leaves).
pub struct TilesReader {
    dir: PathBuf,
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, TilesError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TilesError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Splits an entry bundle into exactly `expected` leaves.
fn parse_bundle(path: &Path, bytes: &[u8], expected: usize) -> Result<Vec<Vec<u8>>, TilesError> {
    let mut entries = Vec::with_capacity(expected);
    let mut offset = 0usize;
    let bad = |entry: usize, offset: usize, problem: String| TilesError::BadEntry {
        path: path.to_path_buf(),
        entry,
        offset,
        problem,
    };
    while offset < bytes.len() {
        let entry = entries.len();
        if entry == expected {
            return Err(bad(
                entry,
                offset,
                format!(
                    "{} bytes follow the bundle's {expected} entries",
                    bytes.len() - offset
                ),
            ));
        }
        let Some(prefix) = bytes.get(offset..offset + 2) else {
            return Err(bad(
                entry,
                offset,
                "the file ends inside the 2-byte length prefix".into(),
            ));
        };
        let length = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        let start = offset + 2;
        let Some(leaf) = bytes.get(start..start + length) else {
            return Err(bad(
                entry,
                offset,
                format!(
                    "length {length} runs past the end of the file ({} bytes)",
                    bytes.len()
                ),
            ));
        };
        entries.push(leaf.to_vec());
        offset = start + length;
    }
    if entries.len() < expected {
        return Err(TilesError::TooFewEntries {
            path: path.to_path_buf(),
            found: entries.len(),
            expected,
        });
    }
    Ok(entries)
}

impl TilesReader {
    /// A directory holding a `checkpoint`.
    pub fn open(dir: &Path) -> Result<TilesReader, TilesError> {
        let path = dir.join(CHECKPOINT_PATH);
        if !path.is_file() {
            return Err(TilesError::Missing { path });
        }
        Ok(TilesReader {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `checkpoint` file's text (unverified).
    pub fn checkpoint_note(&self) -> Result<String, TilesError> {
        let path = self.dir.join(CHECKPOINT_PATH);
        let bytes = read_file(&path)?.ok_or_else(|| TilesError::Missing { path: path.clone() })?;
        String::from_utf8(bytes).map_err(|_| TilesError::Malformed {
            path,
            reason: "is not UTF-8 text".into(),
        })
    }

    /// The first `width` hashes of level-`level` tile `index`: the `.p/W`
    /// file, or (C2SP lets logs delete partials once the full tile exists)
    /// the start of the full tile.
    pub fn tile_hashes(&self, level: u8, index: u64, width: u16) -> Result<Vec<Hash>, TilesError> {
        if !(1..=TILE_WIDTH).contains(&width) || level > MAX_TILE_LEVEL {
            return Err(TilesError::BadTile { level, width });
        }
        let path = self.dir.join(tile_path(level, index, width));
        let (path, bytes, file_width) = match read_file(&path)? {
            Some(bytes) => (path, bytes, width),
            None if width < TILE_WIDTH => {
                let full = self.dir.join(tile_path(level, index, TILE_WIDTH));
                match read_file(&full)? {
                    Some(bytes) => (full, bytes, TILE_WIDTH),
                    None => return Err(TilesError::Missing { path }),
                }
            }
            None => return Err(TilesError::Missing { path }),
        };
        let expected = usize::from(file_width) * HASH_SIZE;
        if bytes.len() != expected {
            return Err(TilesError::TileLength {
                path,
                width: file_width,
                len: bytes.len(),
                expected,
            });
        }
        Ok(bytes
            .chunks_exact(HASH_SIZE)
            .take(usize::from(width))
            .map(|chunk| {
                let mut hash = [0u8; HASH_SIZE];
                hash.copy_from_slice(chunk);
                hash
            })
            .collect())
    }

    /// The first `width` leaves of entry bundle `index` (the `.p/W` file,
    /// or the start of the full bundle).
    pub fn bundle(&self, index: u64, width: u16) -> Result<Vec<Vec<u8>>, TilesError> {
        if !(1..=TILE_WIDTH).contains(&width) {
            return Err(TilesError::BadTile { level: 0, width });
        }
        let path = self.dir.join(bundle_path(index, width));
        if let Some(bytes) = read_file(&path)? {
            return parse_bundle(&path, &bytes, usize::from(width));
        }
        if width < TILE_WIDTH {
            let full = self.dir.join(bundle_path(index, TILE_WIDTH));
            if let Some(bytes) = read_file(&full)? {
                let mut entries = parse_bundle(&full, &bytes, TILE_FULL)?;
                entries.truncate(usize::from(width));
                return Ok(entries);
            }
        }
        Err(TilesError::Missing { path })
    }

    /// Leaves `0..size` in order, read one bundle at a time: exactly `size`
    /// items, the last an error if a bundle is missing or malformed.
    pub fn leaves(&self, size: u64) -> impl Iterator<Item = Result<Vec<u8>, TilesError>> {
        BundleLeaves {
            reader: TilesReader {
                dir: self.dir.clone(),
            },
            size,
            next_seq: 0,
            current: Vec::new().into_iter(),
            done: false,
        }
    }

    /// The root of the tree of `size` leaves, rebuilt from the tiles of its
    /// right edge (each level's partial tile). Compare it with a verified
    /// checkpoint before trusting any tile.
    pub fn root(&self, size: u64) -> Result<Hash, TilesError> {
        root_from_right_edge(size, |level| {
            let count = shr(size, u32::from(level) * u32::from(TILE_HEIGHT));
            let width = (count % u64::from(TILE_WIDTH)) as u16;
            self.tile_hashes(level, count / u64::from(TILE_WIDTH), width)
        })
    }

    /// The projection head the export recorded: (as_of_seq, digest).
    pub fn projection(&self) -> Result<Option<(u64, Hash)>, TilesError> {
        let path = self.dir.join(PROJECTION_PATH);
        let Some(bytes) = read_file(&path)? else {
            return Ok(None);
        };
        let malformed = |reason: String| TilesError::Malformed {
            path: path.clone(),
            reason,
        };
        let file: ProjectionFile = serde_json::from_slice(&bytes)
            .map_err(|error| malformed(format!("is not a projection head: {error}")))?;
        let digest = hex::decode(&file.digest)
            .ok()
            .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
            .ok_or_else(|| malformed("digest is not 64 hex digits".into()))?;
        Ok(Some((file.as_of_seq, digest)))
    }
}

struct BundleLeaves {
    reader: TilesReader,
    size: u64,
    next_seq: u64,
    current: std::vec::IntoIter<Vec<u8>>,
    done: bool,
}

impl Iterator for BundleLeaves {
    type Item = Result<Vec<u8>, TilesError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(leaf) = self.current.next() {
            self.next_seq += 1;
            return Some(Ok(leaf));
        }
        if self.next_seq >= self.size {
            self.done = true;
            return None;
        }
        let index = self.next_seq / u64::from(TILE_WIDTH);
        let width = (self.size - self.next_seq).min(u64::from(TILE_WIDTH)) as u16;
        match self.reader.bundle(index, width) {
            Ok(entries) => {
                self.current = entries.into_iter();
                self.next()
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ceasefire_core::merkle::hash_leaf;
    use ceasefire_core::tiles::tile_bytes;

    fn leaf_hashes(count: u64) -> Vec<Hash> {
        (0..count)
            .map(|seq| hash_leaf(format!("leaf {seq}").as_bytes()))
            .collect()
    }

    fn bundle_bytes(leaves: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for leaf in leaves {
            bytes.extend_from_slice(&(leaf.len() as u16).to_be_bytes());
            bytes.extend_from_slice(leaf);
        }
        bytes
    }

    fn write(dir: &Path, relative: &str, bytes: &[u8]) {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn the_reader_names_missing_truncated_and_overrunning_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        write(path, CHECKPOINT_PATH, b"not checked here\n");
        let reader = TilesReader::open(path).unwrap();
        let leaves = |size| reader.leaves(size).collect::<Vec<_>>();

        // Missing.
        let items = leaves(3);
        assert_eq!(items.len(), 1);
        match &items[0] {
            Err(TilesError::Missing { path }) => {
                assert!(path.ends_with("tile/entries/000.p/3"), "{path:?}")
            }
            other => panic!("{other:?}"),
        }

        // Exactly the leaves, and nothing for size 0.
        write(
            path,
            "tile/entries/000.p/3",
            &bundle_bytes(&[b"a", b"", b"ccc"]),
        );
        let items: Vec<Vec<u8>> = reader.leaves(3).map(Result::unwrap).collect();
        assert_eq!(items, vec![b"a".to_vec(), Vec::new(), b"ccc".to_vec()]);
        assert_eq!(leaves(0).len(), 0);

        // Truncated: fewer entries than the width.
        write(path, "tile/entries/000.p/3", &bundle_bytes(&[b"a", b"b"]));
        let error = leaves(3).pop().unwrap().unwrap_err();
        assert!(matches!(
            error,
            TilesError::TooFewEntries {
                found: 2,
                expected: 3,
                ..
            }
        ));
        assert!(error.to_string().contains("000.p/3"), "{error}");

        // A length prefix running past the end.
        let mut bytes = bundle_bytes(&[b"a", b"b"]);
        bytes.extend_from_slice(&[0x00, 0x05, b'x', b'y']);
        write(path, "tile/entries/000.p/3", &bytes);
        let error = leaves(3).pop().unwrap().unwrap_err();
        assert!(
            matches!(
                &error,
                TilesError::BadEntry {
                    entry: 2,
                    offset: 6,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("runs past the end"), "{error}");

        // A length prefix cut in half.
        let mut bytes = bundle_bytes(&[b"a", b"b"]);
        bytes.push(0x00);
        write(path, "tile/entries/000.p/3", &bytes);
        let error = leaves(3).pop().unwrap().unwrap_err();
        assert!(error.to_string().contains("length prefix"), "{error}");

        // Bytes after the last entry.
        let mut bytes = bundle_bytes(&[b"a", b"b", b"c"]);
        bytes.extend_from_slice(&[0x00, 0x00]);
        write(path, "tile/entries/000.p/3", &bytes);
        let error = leaves(3).pop().unwrap().unwrap_err();
        assert!(error.to_string().contains("follow the bundle"), "{error}");

        // A partial bundle that was deleted is read from the full one.
        let full: Vec<Vec<u8>> = (0..256u16).map(|i| i.to_be_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = full.iter().map(Vec::as_slice).collect();
        write(path, "tile/entries/000", &bundle_bytes(&refs));
        write(path, "tile/entries/001.p/1", &bundle_bytes(&[b"z"]));
        let items: Vec<Vec<u8>> = reader.leaves(257).map(Result::unwrap).collect();
        assert_eq!(items.len(), 257);
        assert_eq!(items[255], full[255]);
        assert_eq!(items[256], b"z".to_vec());
        fs::remove_file(path.join("tile/entries/000.p/3")).unwrap();
        let items: Vec<Vec<u8>> = reader.leaves(3).map(Result::unwrap).collect();
        assert_eq!(items, full[..3].to_vec());
    }

    #[test]
    fn the_reader_checks_tile_lengths_and_projection_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        assert!(matches!(
            TilesReader::open(path),
            Err(TilesError::Missing { .. })
        ));
        write(path, CHECKPOINT_PATH, b"x\n");
        let reader = TilesReader::open(path).unwrap();
        let hashes = leaf_hashes(256);
        write(path, "tile/0/000", &tile_bytes(&hashes));
        write(path, "tile/0/001.p/2", &tile_bytes(&hashes[..3]));
        assert_eq!(reader.tile_hashes(0, 0, 256).unwrap(), hashes);
        assert_eq!(reader.tile_hashes(0, 0, 5).unwrap(), hashes[..5].to_vec());
        let error = reader.tile_hashes(0, 1, 2).unwrap_err();
        assert!(
            matches!(
                error,
                TilesError::TileLength {
                    len: 96,
                    expected: 64,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("tile/0/001.p/2"), "{error}");
        assert!(matches!(
            reader.tile_hashes(0, 2, 1),
            Err(TilesError::Missing { .. })
        ));
        assert!(matches!(
            reader.tile_hashes(0, 0, 0),
            Err(TilesError::BadTile { .. })
        ));

        assert_eq!(reader.projection().unwrap(), None);
        let digest = [7u8; 32];
        write(
            path,
            PROJECTION_PATH,
            format!(
                "{{\"as_of_seq\": 9, \"digest\": \"{}\"}}",
                hex::encode(digest)
            )
            .as_bytes(),
        );
        assert_eq!(reader.projection().unwrap(), Some((9, digest)));
        write(
            path,
            PROJECTION_PATH,
            b"{\"as_of_seq\": 9, \"digest\": \"07\"}",
        );
        let error = reader.projection().unwrap_err();
        assert!(
            error.to_string().contains("ceasefire-ledger/projection"),
            "{error}"
        );
    }
}
