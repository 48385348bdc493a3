//! The segment files: appends at the end of the active file, reads with `pread` from any
//! thread, trimming of what an interrupted append left behind. The layout and why it exists
//! are in [`crate::format`].

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
};

use crate::format::{self, Location};

/// The open segment files of one log.
pub(crate) struct SegmentFiles {
    log_dir: PathBuf,
    fsync: bool,
    roll_bytes: u64,
    files: RwLock<BTreeMap<u64, Arc<File>>>,
    /// The file appends go to and its length; only the log's single writer locks it.
    active: Mutex<Option<Active>>,
}

struct Active {
    number: u64,
    file: Arc<File>,
    len: u64,
}

impl SegmentFiles {
    /// Opens every segment file of the log in `log_dir` (creating the directory). Nothing is
    /// trimmed until [`SegmentFiles::trim_after`] says where the log ends.
    pub fn open(log_dir: &Path, fsync: bool, roll_bytes: u64) -> io::Result<SegmentFiles> {
        let dir = format::segments_dir(log_dir);
        std::fs::create_dir_all(&dir)?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let Some(number) = entry
                .file_name()
                .to_str()
                .and_then(format::segment_file_number)
            else {
                continue;
            };
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(entry.path())?;
            files.insert(number, Arc::new(file));
        }
        Ok(SegmentFiles {
            log_dir: log_dir.to_path_buf(),
            fsync,
            roll_bytes,
            files: RwLock::new(files),
            active: Mutex::new(None),
        })
    }

    /// Cuts what lies after `last` (the last committed record; `None`: the log is empty):
    /// the tail of its file and every later file. These are the leftovers of an append
    /// that was written but whose location never reached sled, so nothing was
    /// acknowledged for them. A file *shorter* than `last` says is left alone: that is
    /// damage, which the caller's check of the last segment reports.
    pub fn trim_after(&self, last: Option<&Location>) -> io::Result<()> {
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        let keep_through = last.map_or(0, |l| l.file);
        let later: Vec<u64> = files
            .range(keep_through + u64::from(last.is_some())..)
            .map(|(n, _)| *n)
            .collect();
        for number in later {
            files.remove(&number);
            std::fs::remove_file(format::segment_file(&self.log_dir, number))?;
            tracing::warn!(
                file = number,
                "removed a segment file that no committed append refers to"
            );
        }
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        *active = None;
        if let Some(last) = last {
            if let Some(file) = files.get(&last.file) {
                let len = file.metadata()?.len();
                if len > last.end() {
                    tracing::warn!(
                        file = last.file,
                        bytes = len - last.end(),
                        "cut the end of a segment file that no committed append refers to"
                    );
                    file.set_len(last.end())?;
                    if self.fsync {
                        file.sync_data()?;
                    }
                }
                *active = Some(Active {
                    number: last.file,
                    file: file.clone(),
                    len: len.min(last.end()),
                });
            }
        }
        Ok(())
    }

    /// Appends one record (a segment and its index records) and, with fsync durability,
    /// makes it durable before returning, so that the location may then be committed.
    /// Only the log's single writer calls this.
    pub fn append(&self, first_seq: u64, segment: &[u8], meta: &[u8]) -> io::Result<Location> {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if active.as_ref().is_none_or(|a| a.len >= self.roll_bytes) {
            *active = Some(self.create(first_seq)?);
        }
        let active = active.as_mut().expect("an active file was just ensured");
        let location = Location {
            file: active.number,
            offset: active.len,
            segment_len: u32::try_from(segment.len()).map_err(|_| too_big())?,
            meta_len: u32::try_from(meta.len()).map_err(|_| too_big())?,
            meta_check: format::meta_check(meta),
        };
        let written = active
            .file
            .write_all_at(segment, location.offset)
            .and_then(|()| active.file.write_all_at(meta, location.meta_offset()))
            .and_then(|()| {
                if self.fsync {
                    active.file.sync_data()
                } else {
                    Ok(())
                }
            });
        // On failure, whatever part was written lies past every location: the next append
        // overwrites it and a restart cuts it.
        written?;
        active.len = location.end();
        Ok(location)
    }

    fn create(&self, number: u64) -> io::Result<Active> {
        let path = format::segment_file(&self.log_dir, number);
        // A leftover of an append that never committed may hold this name.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        if self.fsync {
            // The new name must be durable before a location in sled refers to it.
            File::open(format::segments_dir(&self.log_dir))?.sync_all()?;
        }
        let file = Arc::new(file);
        self.files
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(number, file.clone());
        Ok(Active {
            number,
            file,
            len: 0,
        })
    }

    pub fn file(&self, number: u64) -> io::Result<Arc<File>> {
        self.files
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&number)
            .cloned()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("segment file {number} is missing"),
                )
            })
    }

    /// The segment's bytes.
    pub fn read_segment(&self, location: &Location) -> io::Result<Vec<u8>> {
        read_at(
            &*self.file(location.file)?,
            location.offset,
            location.segment_len as usize,
        )
    }

    /// The segment's index records; `None` if they fail their checksum.
    pub fn read_meta(&self, location: &Location) -> io::Result<Option<Vec<u8>>> {
        read_meta(&*self.file(location.file)?, location)
    }

    /// The bytes of the `index`-th event of the segment, read without reading the rest.
    pub fn read_event(&self, location: &Location, index: usize) -> io::Result<Option<Vec<u8>>> {
        let file = self.file(location.file)?;
        let header = read_at(&file, location.offset, format::SEGMENT_HEADER_LEN)?;
        let count = format::segment_count(&header).ok_or_else(|| unreadable(location))?;
        if index >= count {
            return Ok(None);
        }
        let table_at = location.offset + format::SEGMENT_HEADER_LEN as u64;
        let (start, end) = if index == 0 {
            (0, read_u32(&file, table_at)?)
        } else {
            let pair = read_at(&file, table_at + (index as u64 - 1) * 4, 8)?;
            let start = u32::from_be_bytes(pair[0..4].try_into().unwrap());
            (start, u32::from_be_bytes(pair[4..8].try_into().unwrap()))
        };
        let data_at = table_at + count as u64 * 4;
        if end < start || data_at + u64::from(end) > location.meta_offset() {
            return Err(unreadable(location));
        }
        read_at(&file, data_at + u64::from(start), (end - start) as usize).map(Some)
    }
}

/// Reads a segment's index records from its file and checks them against the location.
pub(crate) fn read_meta(file: &File, location: &Location) -> io::Result<Option<Vec<u8>>> {
    let bytes = read_at(file, location.meta_offset(), location.meta_len as usize)?;
    Ok((format::meta_check(&bytes) == location.meta_check).then_some(bytes))
}

fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

fn read_u32(file: &File, offset: u64) -> io::Result<u32> {
    let mut buf = [0u8; 4];
    file.read_exact_at(&mut buf, offset)?;
    Ok(u32::from_be_bytes(buf))
}

fn unreadable(location: &Location) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the segment at offset {} of segment file {} is unreadable",
            location.offset, location.file
        ),
    )
}

fn too_big() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "one append may hold at most 4 GiB",
    )
}
