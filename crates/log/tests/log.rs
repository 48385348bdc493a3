//! The log against a real sled database in a temp dir.

use plaint_events::{decode_stored, RejectReason};
use plaint_log::{Candidate, ExpectedVersion, Log, LogError, LogOptions, Outcome};
use plaint_testkit::fixtures::{self, at};
use proptest::prelude::*;
use serde_json::Value;

fn open(dir: &std::path::Path) -> Log {
    reopen(
        dir,
        LogOptions {
            durability: plaint_log::Durability::Flush,
            ..Default::default()
        },
    )
}

/// Opens the log in `dir`, waiting up to two seconds for a handle just dropped to let go:
/// sled's background threads may hold the database's file lock for a moment after its
/// last handle is gone, which made reopening tests fail on a loaded machine.
fn reopen(dir: &std::path::Path, options: LogOptions) -> Log {
    for _ in 0..200 {
        match Log::open(dir.join("plaint.sled"), options.clone()) {
            Err(error) if error.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            opened => return opened.unwrap(),
        }
    }
    panic!("the log's file lock was not released within two seconds")
}

/// Stages each event in one batch and commits; returns the outcomes.
fn append(log: &Log, events: &[Value]) -> Vec<Outcome> {
    append_from(log, events, None)
}

fn append_from(log: &Log, events: &[Value], subject_region: Option<&str>) -> Vec<Outcome> {
    let writer = log.writer();
    let mut batch = writer.begin();
    let mut outcomes = Vec::new();
    let encoded: Vec<Vec<u8>> = events.iter().map(fixtures::bytes).collect();
    for bytes in &encoded {
        let event = decode_stored(bytes).unwrap();
        let candidate = Candidate {
            event: &event,
            bytes,
            subject_region,
            expected: ExpectedVersion::Any,
        };
        outcomes.push(writer.stage(&mut batch, candidate).unwrap());
    }
    writer.commit(batch).unwrap();
    outcomes
}

fn rejected(outcome: &Outcome) -> Option<RejectReason> {
    match outcome {
        Outcome::Rejected(r) => Some(r.reason),
        _ => None,
    }
}

#[test]
fn appends_are_gapless_ordered_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut all = Vec::new();
    for batch in 0..5 {
        let events: Vec<Value> = (0..40)
            .map(|i| fixtures::filed(&format!("C-{batch}-{i}"), "eu", "billing", at(i)))
            .collect();
        let outcomes = append(&log, &events);
        for (i, o) in outcomes.iter().enumerate() {
            assert_eq!(*o, Outcome::Appended((batch * 40 + i + 1) as u64));
        }
        all.extend(events);
    }
    let stored: Vec<(u64, Vec<u8>)> = log.read_range(1, u64::MAX).map(Result::unwrap).collect();
    assert_eq!(stored.len(), 200);
    for (i, (seq, bytes)) in stored.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(
            bytes,
            &fixtures::bytes(&all[i]),
            "bytes are kept exactly as received"
        );
    }
    let head = log.status();
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.status().last_seq, 200);
    assert_eq!(log.status().chain_head, head.chain_head);
    assert_eq!(log.stream("C-3-7").unwrap().unwrap().seqs, vec![128]);
    assert!(log.verify(|_| {}).unwrap().problem.is_none());
}

#[test]
fn same_id_same_content_is_a_duplicate_even_reformatted() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let filed = fixtures::filed("C-1", "eu", "billing", at(0));
    assert_eq!(
        append(&log, std::slice::from_ref(&filed)),
        vec![Outcome::Appended(1)]
    );
    // serde_json::Value prints keys sorted: a different byte layout of the same JSON.
    let reformatted: Value =
        serde_json::from_str(&serde_json::to_string_pretty(&filed).unwrap()).unwrap();
    assert_eq!(append(&log, &[reformatted]), vec![Outcome::Duplicate(1)]);
    // Within one batch too.
    let ack = fixtures::acknowledged("C-1", at(5));
    assert_eq!(
        append(&log, &[ack.clone(), ack]),
        vec![Outcome::Appended(2), Outcome::Duplicate(2)]
    );
    assert_eq!(log.last_seq(), 2);
}

#[test]
fn same_id_other_content_is_rejected_and_the_original_stays() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let filed = fixtures::filed("C-1", "eu", "billing", at(0));
    append(&log, std::slice::from_ref(&filed));
    let mut changed = filed.clone();
    changed["data"]["category"] = "delivery".into();
    let outcomes = append(&log, &[changed]);
    assert_eq!(
        rejected(&outcomes[0]),
        Some(RejectReason::ConflictingDuplicate)
    );
    assert_eq!(log.read(1).unwrap().unwrap(), fixtures::bytes(&filed));
}

#[test]
fn lifecycle_rules_are_enforced_with_the_batch_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let outcomes = append(
        &log,
        &[
            fixtures::acknowledged("C-9", at(0)),
            fixtures::filed("C-1", "eu", "billing", at(0)),
            fixtures::filed("C-1", "eu", "billing", at(1)),
            fixtures::resolved("C-1", at(2)),
            fixtures::acknowledged("C-1", at(3)),
            fixtures::closed("C-1", at(4)),
            fixtures::contacted("C-1", at(5)),
            fixtures::reopened("C-1", at(6)),
            fixtures::acknowledged("C-1", at(7)),
        ],
    );
    let reasons: Vec<Option<RejectReason>> = outcomes.iter().map(rejected).collect();
    use RejectReason::*;
    assert_eq!(
        reasons,
        vec![
            Some(UnknownComplaint),
            None,
            Some(LifecycleViolation),
            None,
            Some(LifecycleViolation),
            None,
            Some(LifecycleViolation),
            None,
            None
        ]
    );
    assert_eq!(log.stream("C-1").unwrap().unwrap().version(), 5);
}

#[test]
fn subject_region_must_be_the_complaints_region() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let o = append_from(
        &log,
        &[fixtures::filed("C-1", "eu", "billing", at(0))],
        Some("us"),
    );
    assert_eq!(rejected(&o[0]), Some(RejectReason::SubjectRegionMismatch));
    append_from(
        &log,
        &[fixtures::filed("C-1", "eu", "billing", at(0))],
        Some("eu"),
    );
    let o = append_from(&log, &[fixtures::acknowledged("C-1", at(1))], Some("us"));
    assert_eq!(rejected(&o[0]), Some(RejectReason::SubjectRegionMismatch));
}

#[test]
fn racing_expected_version_appends_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append(&log, &[fixtures::filed("C-1", "eu", "billing", at(0))]);
    let version = log.stream("C-1").unwrap().unwrap().version();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                let bytes = fixtures::bytes(&fixtures::acknowledged("C-1", at(1)));
                let event = decode_stored(&bytes).unwrap();
                log.writer()
                    .append_one(Candidate {
                        event: &event,
                        bytes: &bytes,
                        subject_region: None,
                        expected: ExpectedVersion::Exactly(version),
                    })
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    outcomes.sort_by_key(|o| matches!(o, Outcome::VersionConflict { .. }));
    assert_eq!(outcomes[0], Outcome::Appended(2));
    assert_eq!(
        outcomes[1],
        Outcome::VersionConflict {
            expected: 1,
            actual: 2
        }
    );
}

/// The location of the segment holding `seq` and the path of its file, read the way the
/// log's layout (`plaint_log::format`) describes.
fn locate(log: &Log, seq: u64) -> (u64, plaint_log::Location, std::path::PathBuf) {
    use plaint_log::format;
    let tree = log.db().open_tree("log").unwrap();
    let (key, value) = tree
        .range(format::segment_key(1)..=format::segment_key(seq))
        .next_back()
        .unwrap()
        .unwrap();
    let location = plaint_log::Location::decode(&value).unwrap();
    let file = format::segment_file(log.path(), location.file);
    (format::seq_of_key(&key).unwrap(), location, file)
}

fn open_rw(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

fn flip_byte_in_segment_holding(log: &Log, seq: u64) {
    use std::os::unix::fs::FileExt;
    let (_, location, path) = locate(log, seq);
    let file = open_rw(&path);
    let mut value = vec![0u8; location.segment_len as usize];
    file.read_exact_at(&mut value, location.offset).unwrap();
    let view = plaint_log::SegmentView::parse(&value).unwrap();
    let target = view.event((seq - view.first_seq) as usize);
    let offset = target.as_ptr() as usize - value.as_ptr() as usize + target.len() / 2;
    file.write_all_at(&[value[offset] ^ 0x01], location.offset + offset as u64)
        .unwrap();
}

#[test]
fn verify_names_the_sequence_of_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for batch in 0..3 {
        let events: Vec<Value> = (0..10)
            .map(|i| fixtures::filed(&format!("C-{batch}-{i}"), "eu", "billing", at(i)))
            .collect();
        append(&log, &events);
    }
    assert!(log.verify(|_| {}).unwrap().problem.is_none());
    flip_byte_in_segment_holding(&log, 14);
    let report = log.verify(|_| {}).unwrap();
    assert_eq!(report.problem.unwrap().seq, 14);
}

/// Rewrites the index record of `seq` (the bytes and chain stay as they are), with a
/// matching checksum in its location, as a forger would.
fn forge_index_record(log: &Log, seq: u64, change: impl FnOnce(&mut plaint_log::EntryMeta)) {
    use plaint_log::format;
    use std::os::unix::fs::FileExt;
    let (first, mut location, path) = locate(log, seq);
    let file = open_rw(&path);
    let mut value = vec![0u8; location.meta_len as usize];
    file.read_exact_at(&mut value, location.meta_offset())
        .unwrap();
    let mut metas = format::decode_meta(&value).unwrap();
    change(&mut metas[(seq - first) as usize]);
    let forged = format::encode_meta(&metas);
    assert_eq!(
        forged.len(),
        value.len(),
        "forgeries keep the record's length"
    );
    file.write_all_at(&forged, location.meta_offset()).unwrap();
    location.meta_check = format::meta_check(&forged);
    log.db()
        .open_tree("log")
        .unwrap()
        .insert(format::segment_key(first), &location.encode()[..])
        .unwrap();
}

#[test]
fn verify_names_a_repeated_id_and_a_broken_stream_version() {
    for forgery in ["id", "version"] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        append(&log, &[fixtures::filed("C-1", "eu", "billing", at(0))]);
        append(
            &log,
            &[
                fixtures::filed("C-2", "eu", "billing", at(1)),
                fixtures::acknowledged("C-1", at(2)),
            ],
        );
        let first_id = log.read_range(1, 1).next().unwrap().unwrap().1;
        let first_id: uuid::Uuid = serde_json::from_slice::<Value>(&first_id).unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        forge_index_record(&log, 3, |meta| match forgery {
            "id" => meta.id = first_id,
            _ => meta.version = 5,
        });
        let problem = log.verify(|_| {}).unwrap().problem.unwrap();
        assert_eq!(problem.seq, 3, "{forgery}: {}", problem.what);
        let expected = if forgery == "id" {
            "appears twice"
        } else {
            "stream version 5 where 2"
        };
        assert!(
            problem.what.contains(expected),
            "{forgery}: {}",
            problem.what
        );
    }
}

#[test]
fn a_damaged_last_segment_refuses_to_open_and_repair_truncates() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append(&log, &[fixtures::filed("C-1", "eu", "billing", at(0))]);
    append(&log, &[fixtures::filed("C-2", "eu", "billing", at(0))]);
    flip_byte_in_segment_holding(&log, 2);
    log.sync().unwrap();
    drop(log);
    let err = Log::open(dir.path().join("plaint.sled"), LogOptions::default()).unwrap_err();
    assert!(matches!(err, LogError::Corrupt { seq: 2, .. }), "{err}");
    assert!(
        err.to_string().contains("plaint repair"),
        "the error names the recovery command: {err}"
    );
    // The repair path: truncate before the damaged entry; the log opens and verifies.
    let (kept, removed) = plaint_log::repair_truncate(&dir.path().join("plaint.sled"), 1).unwrap();
    assert_eq!((kept, removed), (1, 1));
    let log = open(dir.path());
    assert_eq!(log.last_seq(), 1);
    assert!(log.verify(|_| {}).unwrap().problem.is_none());
    // Appends continue the chain from the kept head.
    append(&log, &[fixtures::filed("C-2", "eu", "billing", at(0))]);
    assert_eq!(log.last_seq(), 2);
    assert!(log.verify(|_| {}).unwrap().problem.is_none());
}

fn open_rolling(dir: &std::path::Path, segment_file_bytes: u64) -> Log {
    reopen(
        dir,
        LogOptions {
            durability: plaint_log::Durability::Flush,
            segment_file_bytes,
            ..Default::default()
        },
    )
}

fn segment_files(log_dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(plaint_log::format::segments_dir(log_dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn filed_batch(batch: usize, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| fixtures::filed(&format!("C-{batch}-{i}"), "eu", "billing", at(i as i64)))
        .collect()
}

#[test]
fn segment_files_roll_over_and_read_back_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plaint.sled");
    let log = open_rolling(dir.path(), 2048);
    let mut stored = Vec::new();
    for batch in 0..12 {
        let events = filed_batch(batch, 4);
        append(&log, &events);
        stored.extend(events.iter().map(fixtures::bytes));
    }
    let files = segment_files(&db);
    assert!(files.len() >= 6, "2 KiB files roll: {files:?}");
    // Each file is named after the first sequence number it holds.
    assert_eq!(files[0], "00000000000000000001.seg");
    let check = |log: &Log, stored: &[Vec<u8>]| {
        let all: Vec<(u64, Vec<u8>)> = log.read_range(1, u64::MAX).map(Result::unwrap).collect();
        assert_eq!(all.len(), stored.len());
        for (i, (seq, bytes)) in all.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1);
            assert_eq!(bytes, &stored[i]);
            assert_eq!(log.read(*seq).unwrap().as_ref(), Some(bytes));
        }
        assert_eq!(log.read(stored.len() as u64 + 1).unwrap(), None);
        // Ranges that start and end inside segments in different files.
        let middle: Vec<u64> = log.read_range(6, 43).map(|r| r.unwrap().0).collect();
        assert_eq!(middle, (6..=43).collect::<Vec<_>>());
        assert!(log.verify(|_| {}).unwrap().problem.is_none());
    };
    check(&log, &stored);
    drop(log);
    let log = open_rolling(dir.path(), 2048);
    check(&log, &stored);
    // Appends after a reopen go on in the last file or a new one, never over old bytes.
    let more = filed_batch(99, 4);
    append(&log, &more);
    stored.extend(more.iter().map(fixtures::bytes));
    check(&log, &stored);
}

#[test]
fn bytes_of_an_append_that_never_committed_are_cut_when_the_log_opens() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plaint.sled");
    let log = open_rolling(dir.path(), 4096);
    append(&log, &filed_batch(0, 3));
    append(&log, &filed_batch(1, 3));
    let (_, location, path) = locate(&log, 6);
    drop(log);
    // A record written whose location never reached sled (the process died in between),
    // and a file created for the next one.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[0xAB; 1000])
        .unwrap();
    let orphan = plaint_log::format::segment_file(&db, 7);
    std::fs::write(&orphan, b"PLS1 half a record").unwrap();

    let log = open_rolling(dir.path(), 4096);
    assert_eq!(log.last_seq(), 6);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), location.end());
    assert!(!orphan.exists(), "a file no location refers to is removed");
    // The next append takes the place of the lost one.
    assert_eq!(append(&log, &filed_batch(2, 3))[0], Outcome::Appended(7));
    assert!(log.verify(|_| {}).unwrap().problem.is_none());
    drop(log);
    let log = open_rolling(dir.path(), 4096);
    assert_eq!(log.last_seq(), 9);
    assert_eq!(log.read_range(1, 9).count(), 9);
}

#[test]
fn a_committed_record_cut_short_refuses_to_open_and_repair_drops_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plaint.sled");
    let log = open(dir.path());
    append(&log, &filed_batch(0, 3));
    append(&log, &filed_batch(1, 3));
    append(&log, &filed_batch(2, 3));
    let (first, location, path) = locate(&log, 9);
    assert_eq!(first, 7);
    drop(log);
    // The disk lost the end of a record sled says is committed.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(location.end() - 10).unwrap();

    let err = Log::open(&db, LogOptions::default()).unwrap_err();
    assert!(matches!(err, LogError::Corrupt { seq: 7, .. }), "{err}");
    assert!(err.to_string().contains("plaint repair"), "{err}");
    let (kept, removed) = plaint_log::repair_truncate(&db, u64::MAX).unwrap();
    assert_eq!((kept, removed), (6, 3));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), location.offset);
    let log = open(dir.path());
    assert_eq!(log.last_seq(), 6);
    assert!(log.verify(|_| {}).unwrap().problem.is_none());
    append(&log, &filed_batch(2, 3));
    assert!(log.verify(|_| {}).unwrap().problem.is_none());
}

#[test]
fn repair_across_files_removes_the_later_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plaint.sled");
    let log = open_rolling(dir.path(), 1024);
    for batch in 0..6 {
        append(&log, &filed_batch(batch, 3));
    }
    assert!(segment_files(&db).len() >= 4);
    drop(log);
    let (kept, removed) = plaint_log::repair_truncate(&db, 7).unwrap();
    assert_eq!(
        (kept, removed),
        (6, 12),
        "the segment straddling 7 goes whole"
    );
    let log = open_rolling(dir.path(), 1024);
    assert_eq!(log.last_seq(), 6);
    let left = segment_files(&db);
    assert!(
        left.iter()
            .all(|name| name.as_str() <= "00000000000000000006.seg"),
        "{left:?}"
    );
    assert!(log.verify(|_| {}).unwrap().problem.is_none());
    append(&log, &filed_batch(6, 3));
    assert_eq!(log.read_range(1, u64::MAX).count(), 9);
    assert!(log.verify(|_| {}).unwrap().problem.is_none());
}

/// Ten complaints in three regions, with acknowledgements, resolutions and a reopening,
/// over several batches.
fn history() -> Vec<Vec<Value>> {
    let mut batches = Vec::new();
    batches.push(
        (0..10)
            .map(|i| {
                fixtures::filed(
                    &format!("C-{i}"),
                    ["eu", "us", "apac"][i % 3],
                    "billing",
                    at(i as i64),
                )
            })
            .collect(),
    );
    batches.push(
        (0..10)
            .map(|i| fixtures::acknowledged(&format!("C-{i}"), at(20)))
            .collect(),
    );
    batches.push(
        (0..5)
            .map(|i| fixtures::resolved(&format!("C-{i}"), at(30)))
            .collect(),
    );
    batches.push(vec![
        fixtures::reopened("C-1", at(40)),
        fixtures::closed("C-2", at(40)),
    ]);
    batches
}

/// Everything the in-memory indexes answer, for comparing two opens of a log.
fn index_answers(log: &Log, events: &[Value]) -> Vec<String> {
    let mut answers = vec![format!("{:?}", log.status().last_seq)];
    let mut counts: Vec<_> = log.complaint_counts().into_iter().collect();
    counts.sort();
    answers.push(format!("{counts:?}"));
    for i in 0..12 {
        answers.push(format!("{:?}", log.stream(&format!("C-{i}")).unwrap()));
    }
    for event in events {
        let id: uuid::Uuid = event["id"].as_str().unwrap().parse().unwrap();
        answers.push(format!("{:?}", log.seq_of_id(&id).unwrap()));
    }
    answers
}

#[test]
fn the_index_snapshot_answers_exactly_like_a_rescan_and_bad_ones_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let sled_dir = dir.path().join("plaint.sled");
    let snapshot = plaint_log::index_snapshot_path(&sled_dir);
    let all: Vec<Value> = history().into_iter().flatten().collect();
    let log = open(dir.path());
    for batch in history() {
        append(&log, &batch);
    }
    let live = index_answers(&log, &all);
    drop(log);
    assert!(snapshot.exists(), "the last handle saves the snapshot");
    let log = open(dir.path());
    assert_eq!(
        log.status().index_snapshot_seq,
        all.len() as u64,
        "opened from the snapshot"
    );
    assert_eq!(index_answers(&log, &all), live);
    drop(log);

    std::fs::remove_file(&snapshot).unwrap();
    let log = open(dir.path());
    assert_eq!(log.status().index_snapshot_seq, 0, "rescanned");
    assert_eq!(index_answers(&log, &all), live);
    drop(log);

    // A damaged snapshot is detected by its checksum and ignored.
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&snapshot, &bytes).unwrap();
    let log = open(dir.path());
    assert_eq!(
        log.status().index_snapshot_seq,
        0,
        "the damaged snapshot is not used"
    );
    assert_eq!(index_answers(&log, &all), live);
    drop(log);

    // So is another log's snapshot (the chain hash at its sequence differs).
    let other = tempfile::tempdir().unwrap();
    let other_log = open(other.path());
    append(
        &other_log,
        &[fixtures::filed("C-0", "eu", "delivery", at(0))],
    );
    drop(other_log);
    std::fs::copy(
        plaint_log::index_snapshot_path(&other.path().join("plaint.sled")),
        &snapshot,
    )
    .unwrap();
    let log = open(dir.path());
    assert_eq!(
        log.status().index_snapshot_seq,
        0,
        "another log's snapshot is not used"
    );
    assert_eq!(index_answers(&log, &all), live);
}

#[test]
fn a_snapshot_behind_the_log_is_completed_from_the_index_records() {
    let dir = tempfile::tempdir().unwrap();
    let sled_dir = dir.path().join("plaint.sled");
    let snapshot = plaint_log::index_snapshot_path(&sled_dir);
    let batches = history();
    let all: Vec<Value> = batches.iter().flatten().cloned().collect();
    let log = open(dir.path());
    append(&log, &batches[0]);
    append(&log, &batches[1]);
    assert!(log.save_index_snapshot().unwrap());
    assert!(!log.save_index_snapshot().unwrap(), "nothing new to save");
    let old_snapshot = std::fs::read(&snapshot).unwrap();
    append(&log, &batches[2]);
    append(&log, &batches[3]);
    let live = index_answers(&log, &all);
    drop(log);
    // As after a crash: the snapshot on disk is from before the last appends.
    std::fs::write(&snapshot, old_snapshot).unwrap();
    let log = open(dir.path());
    assert_eq!(
        log.status().index_snapshot_seq,
        20,
        "the old snapshot plus a scan"
    );
    assert_eq!(index_answers(&log, &all), live);
    // Duplicates from both sides of the snapshot are recognised; lifecycle state after it
    // is enforced (C-2 was closed after the snapshot).
    let outcomes = append(
        &log,
        &[
            all[3].clone(),
            all.last().unwrap().clone(),
            fixtures::acknowledged("C-2", at(50)),
        ],
    );
    assert_eq!(outcomes[0], Outcome::Duplicate(4));
    assert_eq!(outcomes[1], Outcome::Duplicate(all.len() as u64));
    assert_eq!(
        rejected(&outcomes[2]),
        Some(RejectReason::LifecycleViolation)
    );
}

#[test]
fn the_writer_saves_snapshots_periodically_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let sled_dir = dir.path().join("plaint.sled");
    let snapshot = plaint_log::index_snapshot_path(&sled_dir);
    let options = LogOptions {
        durability: plaint_log::Durability::Flush,
        index_snapshot_every: 10,
        ..Default::default()
    };
    let log = Log::open(&sled_dir, options.clone()).unwrap();
    let batches = history();
    let all: Vec<Value> = batches.iter().flatten().cloned().collect();
    append(&log, &batches[0]);
    append(&log, &batches[1]);
    // The snapshot is written on a thread of its own (one at a time: a second one may be
    // skipped while the first is written): wait for one (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.status().index_snapshot_seq < 10 {
        assert!(std::time::Instant::now() < deadline, "no periodic snapshot");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let periodic = std::fs::read(&snapshot).unwrap();
    append(&log, &batches[2]);
    append(&log, &batches[3]);
    let live = index_answers(&log, &all);
    drop(log);
    std::fs::write(&snapshot, periodic).unwrap();
    let log = Log::open(&sled_dir, options).unwrap();
    let covered = log.status().index_snapshot_seq;
    assert!(covered == 10 || covered == 20, "{covered}");
    assert_eq!(index_answers(&log, &all), live);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For any sequence of batches with duplicates, the log equals the deduplicated
    /// sequence (first occurrence wins, in order) and the hash chain verifies, also after
    /// a reopen.
    #[test]
    fn log_is_the_deduplicated_sequence(batches in prop::collection::vec(prop::collection::vec(0usize..30, 0..12), 1..8)) {
        let pool: Vec<Value> = (0..30).map(|i| fixtures::filed(&format!("C-{i}"), "eu", "billing", at(i as i64))).collect();
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let mut expected: Vec<usize> = Vec::new();
        for batch in &batches {
            let events: Vec<Value> = batch.iter().map(|&i| pool[i].clone()).collect();
            append(&log, &events);
            for &i in batch {
                if !expected.contains(&i) {
                    expected.push(i);
                }
            }
        }
        let check = |log: &Log| {
            let stored: Vec<Vec<u8>> = log.read_range(1, u64::MAX).map(|r| r.unwrap().1).collect();
            let want: Vec<Vec<u8>> = expected.iter().map(|&i| fixtures::bytes(&pool[i])).collect();
            assert_eq!(stored, want);
            assert!(log.verify(|_| {}).unwrap().problem.is_none());
        };
        check(&log);
        drop(log);
        // Reopened from the index snapshot, then from a rescan: every event of the pool is
        // known at its sequence number, or new.
        let snapshot = plaint_log::index_snapshot_path(&dir.path().join("plaint.sled"));
        for rescan in [false, true] {
            // An empty log has nothing to snapshot.
            prop_assert_eq!(snapshot.exists(), !expected.is_empty());
            if rescan && snapshot.exists() {
                std::fs::remove_file(&snapshot).unwrap();
            }
            let log = open(dir.path());
            check(&log);
            for (i, event) in pool.iter().enumerate() {
                let id: uuid::Uuid = event["id"].as_str().unwrap().parse().unwrap();
                let want = expected.iter().position(|&e| e == i).map(|p| p as u64 + 1);
                prop_assert_eq!(log.seq_of_id(&id).unwrap(), want);
                let stream = log.stream(&format!("C-{i}")).unwrap().map(|s| s.seqs);
                prop_assert_eq!(stream, want.map(|seq| vec![seq]));
            }
        }
    }
}
