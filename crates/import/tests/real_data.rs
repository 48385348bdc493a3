//! The presets and the example mapping over the real public exports in /work/shared/data
//! (see its README for what they hold). Each test prints a note and passes when its file is
//! absent, so the crate still tests on machines without the data; the expected counts were
//! computed independently of this crate (Python's csv module) from the published files.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

use plaint_events::{decode, Channel, EventBody, Limits, Severity, Timestamp};
use plaint_import::{ImportItem, ImportSummary, Importer, Mapping, Preset, Progress, SkipReason};

/// The events of the first `DECODE_FIRST` rows, and of every `DECODE_EVERY`th row after
/// them, go through the ingester's decoder: the whole files would make the unoptimised
/// test build slow, and sampling the tail still covers every era of each export.
const DECODE_FIRST: u64 = 20_000;
const DECODE_EVERY: u64 = 20;

fn data_file(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("PLAINT_REAL_DATA")
        .map_or_else(|| PathBuf::from("/work/shared/data"), PathBuf::from);
    let path = dir.join(name);
    if path.exists() {
        Some(path)
    } else {
        println!(
            "note: {} is absent; skipping this real-data test",
            path.display()
        );
        None
    }
}

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// Imports a whole file, decoding the events of the sampled rows and handing every item
/// to `each`.
fn import_file(
    mapping: &Mapping,
    path: &Path,
    mut each: impl FnMut(&ImportItem),
) -> (ImportSummary, Progress) {
    let mut importer = Importer::open(mapping, path).unwrap();
    let limits = Limits::default();
    for item in importer.by_ref() {
        let item = item.unwrap();
        if item.row() <= DECODE_FIRST || item.row() % DECODE_EVERY == 0 {
            for event in item.events() {
                let wire = event.to_wire();
                match decode(&wire, now(), &limits) {
                    Ok(decoded) => assert_eq!(&decoded, event),
                    Err(rejection) => panic!(
                        "row {}: {rejection:?}\n{}",
                        item.row(),
                        String::from_utf8_lossy(&wire)
                    ),
                }
            }
        }
        each(&item);
    }
    (importer.summary().clone(), importer.progress())
}

#[test]
fn nyc_council_export_imports_with_the_expected_counts() {
    let Some(path) = data_file("nyc_council_complaints.csv.gz") else {
        return;
    };
    let size = std::fs::metadata(&path).unwrap().len();
    // The export is sorted by opendate then unique_key, and each repeated key's two copies
    // share their opendate, so a repeat always follows its first copy directly.
    let mut seen_keys: HashSet<String> = HashSet::new();
    let mut previous: Option<ImportItem> = None;
    let (mut repeated_keys, mut imported_pairs, mut differing_pairs) = (0, 0, 0);
    let mut regions: BTreeMap<String, u64> = BTreeMap::new();

    let (summary, progress) = import_file(&Mapping::preset(Preset::NycCouncil), &path, |item| {
        let key = match item {
            ImportItem::Imported { imported, .. } => {
                *regions.entry(imported.region.clone()).or_default() += 1;
                imported.source_id.clone()
            }
            ImportItem::Skipped {
                source_id, reason, ..
            } => {
                assert_eq!(*reason, SkipReason::MissingCategory);
                source_id.clone().expect("NYC keys are all valid")
            }
        };
        if !seen_keys.insert(key.clone()) {
            repeated_keys += 1;
            let first = previous.as_ref().expect("a repeat follows its first copy");
            if let (
                ImportItem::Imported { imported: a, .. },
                ImportItem::Imported { imported: b, .. },
            ) = (first, item)
            {
                assert_eq!(a.source_id, key, "a repeat follows its first copy");
                imported_pairs += 1;
                let ids = |row: &plaint_import::ImportedRow| {
                    row.events.iter().map(|e| e.id).collect::<Vec<_>>()
                };
                assert_eq!(
                    ids(a),
                    ids(b),
                    "{key}: a repeated key must repeat its event ids"
                );
                differing_pairs += u32::from(a.events[0].to_wire() != b.events[0].to_wire());
            }
        }
        previous = Some(item.clone());
    });

    assert_eq!(
        summary,
        ImportSummary {
            rows: 341_299,
            imported: 332_964,
            events: 332_964 + 320_638,
            skipped: [(SkipReason::MissingCategory, 7_431 + 904)].into(),
            close_before_open: 0,
        }
    );
    assert_eq!(
        progress,
        Progress {
            rows: 341_299,
            bytes_read: size,
            total_bytes: Some(size)
        }
    );
    // The README's 105 keys that appear twice; 98 of them have both copies imported.
    assert_eq!(repeated_keys, 105);
    assert_eq!(imported_pairs, 98);
    assert!(
        differing_pairs > 0,
        "some repeated keys differ in content: the log must see conflicts"
    );
    assert_eq!(regions.get("unknown"), Some(&60_586));
    assert_eq!(regions.len(), 6, "{regions:?}");
}

#[test]
fn cfpb_export_imports_every_row_as_one_filed_event() {
    let Some(path) = data_file("cfpb_complaints.csv.gz") else {
        return;
    };
    let mut by_channel: BTreeMap<Channel, u64> = BTreeMap::new();
    let (mut high, mut unknown_region, mut with_tags) = (0, 0, 0);
    let (summary, _) = import_file(&Mapping::preset(Preset::Cfpb), &path, |item| {
        let [event] = item.events() else {
            panic!("one event per CFPB row: {item:?}")
        };
        let EventBody::Filed(filed) = &event.body else {
            panic!("filed expected")
        };
        *by_channel.entry(filed.channel).or_default() += 1;
        high += u64::from(filed.severity == Severity::High);
        unknown_region += u64::from(filed.region == "unknown");
        with_tags += u64::from(filed.tags.iter().any(|t| t.starts_with("tag:")));
        assert!(
            filed.tags.iter().any(|t| t.starts_with("company:")),
            "{filed:?}"
        );
    });
    assert_eq!(
        summary,
        ImportSummary {
            rows: 34_924,
            imported: 34_924,
            events: 34_924,
            skipped: BTreeMap::new(),
            close_before_open: 0
        }
    );
    assert_eq!(high, 432, "Timely response? = No");
    assert_eq!(unknown_region, 459 + 6, "empty State and the literal None");
    assert_eq!(
        with_tags,
        1_771 + 843 + 258,
        "CFPB's own Tags, when not empty or None"
    );
    assert_eq!(
        by_channel,
        [
            (Channel::Web, 30_394),
            (Channel::Other, 1_873 + 14),
            (Channel::Phone, 1_524),
            (Channel::Letter, 892 + 224),
            (Channel::Email, 3),
        ]
        .into()
    );
}

#[test]
fn the_example_mapping_imports_the_nyc311_sample() {
    let Some(path) = data_file("nyc311_requests_sample.csv.gz") else {
        return;
    };
    let mapping = Mapping::from_toml(include_str!("../import.example.toml")).unwrap();
    let (summary, _) = import_file(&mapping, &path, |_| {});
    assert_eq!(
        summary,
        ImportSummary {
            rows: 8_679,
            imported: 7_562,
            events: 7_562 + 5_949,
            skipped: [(SkipReason::MissingRegion, 631 + 486)].into(),
            close_before_open: 49,
        }
    );
}
