//! Where a view's rows live: one redb database per projector, `views/<name>.redb` in the
//! log's directory.
//!
//! Why not sled, which holds the log's segment locations: sled 0.34's resident memory
//! grows with what a process *writes*, whatever its cache setting (6 million writes of
//! 120-byte rows over 1.5 million keys: 7.3 GB resident; the same writes into redb with a
//! 64 MiB cache: 74 MB, and faster). Views are written on every event, so at 10 million
//! events sled's growth was most of `serve`'s memory. redb's page cache is bounded by
//! [`ViewStore::DEFAULT_CACHE_BYTES`] (or `RunnerOptions::view_cache_bytes`).
//!
//! Durability: rows and checkpoint commit in one redb write transaction (atomic). Most
//! commits are not fsynced; one per [`ViewStore::DURABLE_EVERY`], the last one of a
//! rebuild and the one at shutdown are. A crash loses at most that much view progress,
//! consistently (rows and checkpoint roll back together), and the runner applies those
//! events again: views are a function of the log, and effects are idempotent. Durable
//! commits also save redb's allocator state ("quick repair"), so opening after a crash
//! does not walk the whole file.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock, Weak},
    time::{Duration, Instant},
};

use plaint_projection::{ProjectionError, RowSource, ViewChange, ViewRow};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::RunnerError;

const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");
/// The runner's own values: `checkpoint` and `layout`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// A projector's persisted rows and checkpoint. Cheap to clone; every clone in the
/// process shares one open database (redb opens a file once).
#[derive(Clone)]
pub struct ViewStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    last_durable: Mutex<Instant>,
}

/// Views open in this process, so that a runner, a query and a digest of the same view
/// share one database.
fn open_views() -> &'static Mutex<BTreeMap<PathBuf, Weak<Inner>>> {
    static OPEN: OnceLock<Mutex<BTreeMap<PathBuf, Weak<Inner>>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// The file of `projector`'s view in the log directory `log_dir`.
fn view_path(log_dir: &Path, projector: &str) -> PathBuf {
    log_dir.join("views").join(format!("{projector}.redb"))
}

fn storage(e: impl std::fmt::Display) -> RunnerError {
    RunnerError::Storage(e.to_string())
}

fn row_error(e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Storage(e.to_string())
}

impl ViewStore {
    /// Page cache of one view's database when the runner is not told otherwise. A page
    /// it misses is read from the operating system's file cache, which is not the
    /// process's memory; four views at 16 MiB held 37 MB at 10 M events.
    pub const DEFAULT_CACHE_BYTES: usize = 8 << 20;
    /// At most this much view progress is lost in a crash (and applied again).
    pub const DURABLE_EVERY: Duration = Duration::from_secs(1);

    /// Opens (or creates) `projector`'s view in the log directory `log_dir`, or returns
    /// the one already open in this process.
    pub fn open(
        log_dir: &Path,
        projector: &str,
        cache_bytes: usize,
    ) -> Result<ViewStore, RunnerError> {
        let path = view_path(log_dir, projector);
        let mut open = open_views().lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, view| view.strong_count() > 0);
        if let Some(inner) = open.get(&path).and_then(Weak::upgrade) {
            return Ok(ViewStore { inner });
        }
        let dir = path.parent().expect("a view path has a directory");
        std::fs::create_dir_all(dir)
            .map_err(|e| RunnerError::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| {
                RunnerError::Storage(format!(
                    "cannot open the view database {}: {e}",
                    path.display()
                ))
            })?;
        let inner = Arc::new(Inner {
            db,
            last_durable: Mutex::new(Instant::now()),
        });
        open.insert(path, Arc::downgrade(&inner));
        Ok(ViewStore { inner })
    }

    /// `table` as of now; `None` while the view has never written it.
    fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, String> {
        let tx = self.inner.db.begin_read().map_err(|e| e.to_string())?;
        match tx.open_table(table) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn meta(&self, key: &str) -> Result<Option<u64>, RunnerError> {
        let Some(table) = self.read_table(META).map_err(storage)? else {
            return Ok(None);
        };
        let value = table.get(key).map_err(storage)?.map(|v| v.value());
        Ok(value)
    }

    /// Last sequence number whose effects on the rows are committed; 0 for a new view.
    pub fn checkpoint(&self) -> Result<u64, RunnerError> {
        Ok(self.meta("checkpoint")?.unwrap_or(0))
    }

    /// The [`plaint_projection::Projection::layout`] of the projector that wrote the rows;
    /// `None` for a view never written.
    pub fn layout(&self) -> Result<Option<u32>, RunnerError> {
        Ok(self.meta("layout")?.map(|v| v as u32))
    }

    /// The last [`plaint_projection::Projection::tick_cursor`] kept for this view.
    pub fn tick_cursor(&self) -> Result<Option<u64>, RunnerError> {
        self.meta("tick_cursor")
    }

    /// Keeps a tick cursor beside the rows (not in them: it is no part of the digest).
    /// Not synced on its own: the next durable commit carries it, and a crash before
    /// then repeats at most a second's alerts.
    pub fn set_tick_cursor(&self, cursor: u64) -> Result<(), RunnerError> {
        self.write(false, |_, meta| {
            meta.insert("tick_cursor", cursor).map_err(storage)?;
            Ok(())
        })
    }

    /// Records the row layout (a new view, before its first commit).
    pub fn set_layout(&self, layout: u32) -> Result<(), RunnerError> {
        self.write(true, |_, meta| {
            meta.insert("layout", u64::from(layout)).map_err(storage)?;
            Ok(())
        })
    }

    /// Writes changed rows and the checkpoint in one transaction.
    pub fn commit(&self, changes: Vec<ViewChange>, checkpoint: u64) -> Result<(), RunnerError> {
        let durable = {
            let last = self
                .inner
                .last_durable
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            last.elapsed() >= Self::DURABLE_EVERY
        };
        self.write(durable, |rows, meta| {
            for (key, value) in &changes {
                match value {
                    Some(v) => rows.insert(key.as_slice(), v.as_slice()).map_err(storage)?,
                    None => rows.remove(key.as_slice()).map_err(storage)?,
                };
            }
            meta.insert("checkpoint", checkpoint).map_err(storage)?;
            Ok(())
        })
    }

    /// Makes every commit so far durable.
    pub fn sync(&self) -> Result<(), RunnerError> {
        self.write(true, |_, _| Ok(()))
    }

    /// Drops every row, the checkpoint and the layout (durably).
    /// Empties the view for a rebuild and marks it as being rebuilt until
    /// [`ViewStore::finish_rebuild`]: a rebuild interrupted by a crash or a stop leaves the
    /// mark, and the next start rebuilds again instead of catching up from a partial view
    /// live (which would repeat the effects of the whole history).
    ///
    /// The tick cursor stays: what ticks sent before the rebuild was sent all the same.
    pub fn begin_rebuild(&self) -> Result<(), RunnerError> {
        let cursor = self.tick_cursor()?;
        self.clear()?;
        self.write(true, |_, meta| {
            meta.insert("rebuilding", 1).map_err(storage)?;
            if let Some(cursor) = cursor {
                meta.insert("tick_cursor", cursor).map_err(storage)?;
            }
            Ok(())
        })
    }

    /// Records the layout of a finished rebuild and removes its mark, durably.
    pub fn finish_rebuild(&self, layout: u32) -> Result<(), RunnerError> {
        self.write(true, |_, meta| {
            meta.insert("layout", u64::from(layout)).map_err(storage)?;
            meta.remove("rebuilding").map_err(storage)?;
            Ok(())
        })
    }

    /// Whether a rebuild began and did not finish.
    pub fn rebuild_interrupted(&self) -> Result<bool, RunnerError> {
        Ok(self.meta("rebuilding")?.is_some())
    }

    pub fn clear(&self) -> Result<(), RunnerError> {
        let mut tx = self.inner.db.begin_write().map_err(storage)?;
        tx.set_quick_repair(true);
        tx.delete_table(ROWS).map_err(storage)?;
        tx.delete_table(META).map_err(storage)?;
        tx.commit().map_err(storage)?;
        self.durable_now();
        Ok(())
    }

    fn durable_now(&self) {
        *self
            .inner
            .last_durable
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn write(
        &self,
        durable: bool,
        change: impl FnOnce(
            &mut redb::Table<&[u8], &[u8]>,
            &mut redb::Table<&str, u64>,
        ) -> Result<(), RunnerError>,
    ) -> Result<(), RunnerError> {
        let mut tx = self.inner.db.begin_write().map_err(storage)?;
        if durable {
            tx.set_quick_repair(true);
        } else {
            tx.set_durability(Durability::None).map_err(storage)?;
        }
        {
            let mut rows = tx.open_table(ROWS).map_err(storage)?;
            let mut meta = tx.open_table(META).map_err(storage)?;
            change(&mut rows, &mut meta)?;
        }
        tx.commit().map_err(storage)?;
        if durable {
            self.durable_now();
        }
        Ok(())
    }

    /// Every row in key order (for digests).
    pub fn for_each_row(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), RunnerError> {
        let Some(table) = self.read_table(ROWS).map_err(storage)? else {
            return Ok(());
        };
        for row in table.range(..).map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            f(k.value(), v.value());
        }
        Ok(())
    }
}

impl RowSource for ViewStore {
    fn row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        let Some(table) = self.read_table(ROWS).map_err(row_error)? else {
            return Ok(None);
        };
        let row = table
            .get(key)
            .map_err(row_error)?
            .map(|v| v.value().to_vec());
        Ok(row)
    }

    fn rows_with_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<ViewRow, ProjectionError>> + 'a> {
        let range = self.read_table(ROWS).map_err(row_error).and_then(|table| {
            table
                .map(|table| table.range_owned(prefix..))
                .transpose()
                .map_err(row_error)
        });
        let prefix = prefix.to_vec();
        match range {
            Err(e) => Box::new(std::iter::once(Err(e))),
            Ok(None) => Box::new(std::iter::empty()),
            Ok(Some(range)) => Box::new(
                range
                    .map(|row| {
                        row.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                            .map_err(row_error)
                    })
                    .take_while(move |row| !matches!(row, Ok((k, _)) if !k.starts_with(&prefix))),
            ),
        }
    }
}
