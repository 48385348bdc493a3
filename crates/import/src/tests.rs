//! Given/when/then tests of presets and mappings on small inline CSV texts.

use std::io::Write;

use plaint_events::{
    decode, Channel, ComplaintFiled, Event, EventBody, Limits, Severity, Timestamp,
};
use proptest::prelude::*;

use crate::*;

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn import(mapping: &Mapping, csv: &str) -> (Vec<ImportItem>, ImportSummary) {
    let mut importer = Importer::new(mapping, csv.as_bytes()).unwrap();
    let items: Vec<ImportItem> = importer.by_ref().map(Result::unwrap).collect();
    let summary = importer.summary().clone();
    for event in items.iter().flat_map(ImportItem::events) {
        let decoded =
            decode(&event.to_wire(), now(), &Limits::default()).expect("every event decodes");
        assert_eq!(&decoded, event);
    }
    (items, summary)
}

fn only_row(mapping: &Mapping, csv: &str) -> ImportedRow {
    let (items, _) = import(mapping, csv);
    assert_eq!(items.len(), 1);
    match items.into_iter().next().unwrap() {
        ImportItem::Imported { imported, .. } => imported,
        skipped => panic!("expected an import, got {skipped:?}"),
    }
}

fn filed(event: &Event) -> &ComplaintFiled {
    match &event.body {
        EventBody::Filed(f) => f,
        other => panic!("expected complaint.filed, got {other:?}"),
    }
}

const CFPB_HEADER: &str = "Date received,Product,Sub-product,Issue,Sub-issue,Company,State,ZIP code,Tags,Consumer consent provided?,Submitted via,Date sent to company,Company response to consumer,Timely response?,Consumer disputed?,Complaint ID,source_repo";

fn cfpb(rows: &[&str]) -> String {
    format!("{CFPB_HEADER}\n{}\n", rows.join("\n"))
}

#[test]
fn cfpb_row_becomes_one_filed_event_with_documented_fields() {
    // Given a CFPB export row (a real one from 2012)
    let csv = cfpb(&[
        r#"2012-06-08,Credit card,,Identity theft / Fraud / Embezzlement,,"CITIBANK, N.A.",MO,63017,"Older American, Servicemember",N/A,Phone,2012-07-08,Closed with monetary relief,Yes,No,130785,some/repo"#,
    ]);
    // When it is imported with the cfpb preset
    let row = only_row(&Mapping::preset(Preset::Cfpb), &csv);
    // Then it is filed (only: CFPB has no close date) with the preset's rules
    assert_eq!(row.complaint_id, "cfpb-130785");
    assert_eq!(row.region, "mo");
    assert_eq!(row.events.len(), 1);
    let event = &row.events[0];
    assert_eq!(
        event.id,
        plaint_events::own::event_id(&["import", "cfpb", "130785", "filed"])
    );
    assert_eq!(event.source, "import/cfpb");
    assert_eq!(
        event.time.to_string(),
        "2012-06-08T16:00:00Z",
        "noon in New York (EDT)"
    );
    let f = filed(event);
    assert_eq!(f.region, "mo");
    assert_eq!(f.category, "credit-card");
    assert_eq!(f.channel, Channel::Phone);
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.customer_id, "anonymous:cfpb-130785");
    assert_eq!(
        f.summary.as_deref(),
        Some("Identity theft / Fraud / Embezzlement")
    );
    assert_eq!(
        f.tags,
        [
            "company:citibank-n-a",
            "issue:identity-theft-fraud-embezzlement",
            "tag:older-american",
            "tag:servicemember"
        ]
    );
    assert_eq!(f.amount_at_stake, None);
}

#[test]
fn cfpb_untimely_response_is_high_severity_and_channels_follow_the_table() {
    let rows = [
        "2023-06-01,Mortgage,,Trouble,,Bank,FL,33101,,N/A,Postal mail,2023-06-01,In progress,No,N/A,1,r",
        "2023-06-01,Mortgage,,Trouble,,Bank,FL,33101,,N/A,Fax,2023-06-01,Closed,Yes,N/A,2,r",
        "2023-06-01,Mortgage,,Trouble,,Bank,FL,33101,,N/A,Referral,2023-06-01,Closed,Yes,N/A,3,r",
        "2023-06-01,Mortgage,,Trouble,,Bank,FL,33101,,N/A,Web,2023-06-01,Closed,Yes,N/A,4,r",
        "2023-06-01,Mortgage,,Trouble,,Bank,FL,33101,,N/A,Email,2023-06-01,Closed,Yes,N/A,5,r",
        "2023-06-01,Mortgage,,Trouble,,Bank,FL,33101,,N/A,Web Referral,2023-06-01,Closed,Yes,N/A,6,r",
    ];
    let (items, summary) = import(&Mapping::preset(Preset::Cfpb), &cfpb(&rows));
    let got: Vec<(Channel, Severity)> = items
        .iter()
        .map(|i| {
            let f = filed(&i.events()[0]);
            (f.channel, f.severity)
        })
        .collect();
    assert_eq!(
        got,
        [
            (Channel::Letter, Severity::High),
            (Channel::Letter, Severity::Medium),
            (Channel::Other, Severity::Medium),
            (Channel::Web, Severity::Medium),
            (Channel::Email, Severity::Medium),
            (Channel::Other, Severity::Medium),
        ]
    );
    assert_eq!(summary.events, 6, "no resolved events for CFPB");
}

#[test]
fn cfpb_missing_state_is_region_unknown_and_none_tags_are_dropped() {
    let rows = [
        "2023-06-01,Debt collection,,Attempts,,Acme,,,None,N/A,Web,2023-06-01,Closed,Yes,N/A,10,r",
        "2023-06-01,Debt collection,,Attempts,,Acme,None,,,N/A,Web,2023-06-01,Closed,Yes,N/A,11,r",
        "2023-06-01,Debt collection,,Attempts,,Acme,UNITED STATES MINOR OUTLYING ISLANDS,,,N/A,Web,2023-06-01,Closed,Yes,N/A,12,r",
    ];
    let (items, _) = import(&Mapping::preset(Preset::Cfpb), &cfpb(&rows));
    let regions: Vec<&str> = items
        .iter()
        .map(|i| filed(&i.events()[0]).region.as_str())
        .collect();
    assert_eq!(
        regions,
        ["unknown", "unknown", "united-states-minor-outlying-islands"]
    );
    assert_eq!(
        filed(&items[0].events()[0]).tags,
        ["company:acme", "issue:attempts"]
    );
}

const NYC_HEADER: &str =
    "unique_key,account,opendate,closedate,complaint_type,descriptor,zip,borough,city,council_dist,community_board";

fn nyc(rows: &[&str]) -> String {
    format!("{NYC_HEADER}\n{}\n", rows.join("\n"))
}

#[test]
fn nyc_closed_row_becomes_filed_and_resolved_at_noon_new_york() {
    // Given a closed CouncilStat case
    let csv = nyc(&["NYCC30506075,NYCC30,2015-01-01,2017-12-19,Cultural Affairs,Community Based Organization,11379,Queens,Middle Village,NYCC30,05 Queens"]);
    // When it is imported with the nyc-council preset
    let row = only_row(&Mapping::preset(Preset::NycCouncil), &csv);
    // Then it is filed at its open date and resolved at its close date, by the office
    assert_eq!(row.complaint_id, "nycc-NYCC30506075");
    assert_eq!(row.region, "queens");
    let [filed_event, resolved] = row.events.as_slice() else {
        panic!("two events expected")
    };
    assert_eq!(filed_event.time.to_string(), "2015-01-01T17:00:00Z");
    let f = filed(filed_event);
    assert_eq!(
        (f.category.as_str(), f.channel, f.severity),
        ("cultural-affairs", Channel::Other, Severity::Medium)
    );
    assert_eq!(f.tags, ["district:nycc30"]);
    assert_eq!(f.summary.as_deref(), Some("Community Based Organization"));
    assert_eq!(f.customer_id, "anonymous:nycc-NYCC30506075");
    assert_eq!(resolved.time.to_string(), "2017-12-19T17:00:00Z");
    assert_eq!(
        resolved.id,
        plaint_events::own::event_id(&["import", "nyc-council", "NYCC30506075", "resolved"])
    );
    match &resolved.body {
        EventBody::Resolved(r) => {
            assert_eq!(r.by, "NYCC30");
            assert_eq!(r.resolution, "closed in CouncilStat");
        }
        other => panic!("expected resolved, got {other:?}"),
    }
    let messages: Vec<ImportMessage> = row.messages("complaints").collect();
    assert_eq!(messages[0].msg_id, filed_event.id.to_string());
    assert_eq!(messages[1].payload, resolved.to_wire());
    let messages: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        messages,
        [
            "complaints.events.queens.filed",
            "complaints.events.queens.resolved"
        ]
    );
}

#[test]
fn nyc_open_ungeocoded_and_placeholder_rows_follow_the_preset() {
    let rows = [
        // open, no borough, bare NYCC district
        "NYCC18501367,NYCC18,2015-01-01,,Civil Service and Labor,Employee Benefits,,,,NYCC,",
        // an unselected form placeholder is no category
        "NYCC18501368,NYCC18,2015-01-01,,Select One,,,,,,",
        "NYCC18501369,NYCC18,2015-01-01,,,,,,,,",
        // closed before opened: filed only
        "NYCC18501370,NYCC18,2015-01-05,2015-01-04,Parks,,,Bronx,,NYCC17,",
    ];
    let (items, summary) = import(&Mapping::preset(Preset::NycCouncil), &nyc(&rows));
    let open = &items[0].events();
    assert_eq!(open.len(), 1);
    assert_eq!(filed(&open[0]).region, "unknown");
    assert!(filed(&open[0]).tags.is_empty());
    assert!(matches!(
        items[1],
        ImportItem::Skipped {
            reason: SkipReason::MissingCategory,
            row: 2,
            ..
        }
    ));
    assert!(matches!(
        items[2],
        ImportItem::Skipped {
            reason: SkipReason::MissingCategory,
            row: 3,
            ..
        }
    ));
    assert_eq!(items[3].events().len(), 1);
    assert_eq!(
        summary,
        ImportSummary {
            rows: 4,
            imported: 2,
            events: 2,
            skipped: [(SkipReason::MissingCategory, 2)].into(),
            close_before_open: 1,
        }
    );
    assert_eq!(
        summary.to_string(),
        "4 rows: 2 imported as 2 events, 2 skipped\n  skipped missing_category: 2\n  filed without resolution (closed before opened): 1"
    );
}

#[test]
fn nyc_duplicate_keys_with_different_contents_share_ids_but_not_bytes() {
    // Given the real-world quirk: the same unique_key twice, geocoded once
    let rows = [
        "NYCC02511981,NYCC02,2015-01-14,2015-01-14,Public Safety,,10003,Manhattan,New York,NYCC02,03 Manhattan",
        "NYCC02511981,NYCC02,2015-01-14,2015-01-14,Public Safety,,10003,,New York,,",
    ];
    let (items, _) = import(&Mapping::preset(Preset::NycCouncil), &nyc(&rows));
    let (first, second) = (items[0].events(), items[1].events());
    // Then the ids agree, so the log sees a conflicting duplicate filed and a plain
    // duplicate resolved
    assert_eq!(
        first.iter().map(|e| e.id).collect::<Vec<_>>(),
        second.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    assert_ne!(first[0].to_wire(), second[0].to_wire());
    assert_eq!(first[1].to_wire(), second[1].to_wire());
}

/// A generic mapping exercising every column kind.
const CRM_MAPPING: &str = r#"
name = "crm"
time_zone = "Europe/Berlin"
date_format = "%d.%m.%Y %H:%M"
null_values = ["-"]

[columns]
id = "Ticket"
opened = "Created"
closed = "Closed"
region = "Region"
category = "Category"
channel = "Via"
severity = "Prio"
customer_id = "Customer"
amount = "Amount"
resolved_by = "Agent"
tags = [{ name = "product", column = "Products", split = "|" }]

[defaults]
currency = "EUR"

[channel_values]
"Brief" = "letter"

[severity_values]
"P1" = "critical"
"P2" = "high"
"#;

const CRM_HEADER: &str =
    "Ticket,Created,Closed,Region,Category,Via,Prio,Customer,Amount,Agent,Products";

fn crm(rows: &[&str]) -> (Vec<ImportItem>, ImportSummary) {
    let mapping = Mapping::from_toml(CRM_MAPPING).unwrap();
    import(&mapping, &format!("{CRM_HEADER}\n{}\n", rows.join("\n")))
}

#[test]
fn generic_mapping_reads_every_column_kind() {
    let (items, _) = crm(&["T-1,01.03.2024 09:15,04.03.2024 17:00,DE North,Billing,Brief,P1,cust-7,120.50,anna,Router X| Modem |-"]);
    let events = items[0].events();
    assert_eq!(events[0].complaint_id, "crm-T-1");
    assert_eq!(events[0].time.to_string(), "2024-03-01T08:15:00Z");
    assert_eq!(events[0].source, "import/crm");
    let f = filed(&events[0]);
    assert_eq!(
        (f.region.as_str(), f.category.as_str()),
        ("de-north", "billing")
    );
    assert_eq!(
        (f.channel, f.severity),
        (Channel::Letter, Severity::Critical)
    );
    assert_eq!(f.customer_id, "cust-7");
    let amount = f.amount_at_stake.as_ref().unwrap();
    assert_eq!(
        (amount.value.to_string().as_str(), amount.currency.as_str()),
        ("120.5", "EUR")
    );
    assert_eq!(f.tags, ["product:router-x", "product:modem"]);
    assert_eq!(events[1].time.to_string(), "2024-03-04T16:00:00Z");
    assert!(matches!(&events[1].body, EventBody::Resolved(r) if r.by == "anna"));
}

#[test]
fn generic_mapping_falls_back_to_defaults_and_names_values_case_insensitively() {
    let (items, _) = crm(&["T-2,01.03.2024 09:15,,eu,Billing,PHONE,high,,,,"]);
    let events = items[0].events();
    assert_eq!(events.len(), 1);
    let f = filed(&events[0]);
    assert_eq!((f.channel, f.severity), (Channel::Phone, Severity::High));
    assert_eq!(f.customer_id, "anonymous:crm-T-2");
    assert_eq!(f.amount_at_stake, None);
    let (items, _) = crm(&["T-3,01.03.2024 09:15,,eu,Billing,,,,,,"]);
    let f = filed(&items[0].events()[0]);
    assert_eq!((f.channel, f.severity), (Channel::Other, Severity::Medium));
}

#[test]
fn every_skip_reason_is_reported_with_its_row() {
    let long = "x".repeat(300);
    let rows = [
        (
            ",01.03.2024 09:15,,eu,Billing,,,,,,".to_owned(),
            SkipReason::MissingId,
        ),
        (
            "T 4,01.03.2024 09:15,,eu,Billing,,,,,,".to_owned(),
            SkipReason::InvalidId,
        ),
        (
            format!("{},01.03.2024 09:15,,eu,Billing,,,,,,", "T".repeat(125)),
            SkipReason::InvalidId,
        ),
        (
            "T-5,-,,eu,Billing,,,,,,".to_owned(),
            SkipReason::MissingOpenDate,
        ),
        (
            "T-6,2024-03-01,,eu,Billing,,,,,,".to_owned(),
            SkipReason::InvalidOpenDate,
        ),
        (
            "T-7,01.03.2024 09:15,soon,eu,Billing,,,,,,".to_owned(),
            SkipReason::InvalidCloseDate,
        ),
        (
            "T-8,01.03.2024 09:15,,,Billing,,,,,,".to_owned(),
            SkipReason::MissingRegion,
        ),
        (
            "T-9,01.03.2024 09:15,,***,Billing,,,,,,".to_owned(),
            SkipReason::MissingRegion,
        ),
        (
            "T-10,01.03.2024 09:15,,eu,,,,,,,".to_owned(),
            SkipReason::MissingCategory,
        ),
        (
            "T-11,01.03.2024 09:15,,eu,Billing,pigeon,,,,,".to_owned(),
            SkipReason::InvalidChannel,
        ),
        (
            "T-12,01.03.2024 09:15,,eu,Billing,,urgent,,,,".to_owned(),
            SkipReason::InvalidSeverity,
        ),
        (
            format!("T-13,01.03.2024 09:15,,eu,Billing,,,{long},,,"),
            SkipReason::InvalidCustomerId,
        ),
        (
            "T-14,01.03.2024 09:15,,eu,Billing,,,,-5,,".to_owned(),
            SkipReason::InvalidAmount,
        ),
        (
            "T-15,01.03.2024 09:15,,eu,Billing,,,,1.23456,,".to_owned(),
            SkipReason::InvalidAmount,
        ),
        (
            format!("T-16,01.03.2024 09:15,02.03.2024 09:15,eu,Billing,,,,,{long},"),
            SkipReason::InvalidResolvedBy,
        ),
        (
            "T-17,01.03.2024 09:15,,eu".to_owned(),
            SkipReason::WrongFieldCount,
        ),
    ];
    let texts: Vec<&str> = rows.iter().map(|(text, _)| text.as_str()).collect();
    let (items, summary) = crm(&texts);
    for (index, ((text, reason), item)) in rows.iter().zip(&items).enumerate() {
        match item {
            ImportItem::Skipped {
                row, reason: got, ..
            } => {
                assert_eq!(got, reason, "{text}");
                assert_eq!(*row, index as u64 + 1);
            }
            other => panic!("{text}: expected {reason}, got {other:?}"),
        }
    }
    assert_eq!(summary.imported, 0);
    assert_eq!(summary.rows, rows.len() as u64);

    // Invalid UTF-8 cannot be written in a &str: build the bytes.
    let mapping = Mapping::from_toml(CRM_MAPPING).unwrap();
    let mut bytes = format!("{CRM_HEADER}\n").into_bytes();
    bytes.extend_from_slice(
        b"T-18,01.03.2024 09:15,,eu,Bill\xffing,,,,,,\nT-19,01.03.2024 09:15,,eu,Billing,,,,,,\n",
    );
    let items: Vec<ImportItem> = Importer::new(&mapping, bytes.as_slice())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(matches!(
        items[0],
        ImportItem::Skipped {
            reason: SkipReason::InvalidUtf8,
            ..
        }
    ));
    assert!(
        matches!(items[1], ImportItem::Imported { .. }),
        "the row after a bad one is still read"
    );

    let covered: std::collections::BTreeSet<SkipReason> = rows
        .iter()
        .map(|(_, r)| *r)
        .chain([SkipReason::InvalidUtf8])
        .collect();
    assert_eq!(
        covered.len(),
        SkipReason::ALL.len(),
        "every reason has a case here"
    );
}

#[test]
fn skipped_rows_keep_their_source_id_when_it_is_usable() {
    let (items, _) = crm(&["T-20,01.03.2024 09:15,,,Billing,,,,,,"]);
    assert!(matches!(&items[0], ImportItem::Skipped { source_id: Some(id), .. } if id == "T-20"));
}

#[test]
fn a_mapped_column_missing_from_the_header_is_an_error_naming_it() {
    let mapping = Mapping::preset(Preset::NycCouncil);
    let err = Importer::new(&mapping, "unique_key,opendate\n".as_bytes()).unwrap_err();
    assert!(
        matches!(&err, ImportError::MissingColumn { column, .. } if column == "closedate"),
        "{err}"
    );
    assert!(matches!(
        Importer::new(&mapping, "".as_bytes()),
        Err(ImportError::NoHeader)
    ));
}

#[test]
fn a_byte_order_mark_and_padded_headers_are_tolerated() {
    let csv = format!(
        "\u{feff}{}\n{}\n",
        NYC_HEADER.replace(",opendate,", ", opendate ,"),
        "K1,NYCC01,2020-02-02,,Parks,,,,,,"
    );
    assert_eq!(
        only_row(&Mapping::preset(Preset::NycCouncil), &csv).complaint_id,
        "nycc-K1"
    );
}

#[test]
fn gzip_input_is_recognised_by_magic_bytes_and_progress_counts_input_bytes() {
    let csv = nyc(&[
        "K1,NYCC01,2020-02-02,2020-02-03,Parks,,,Bronx,,,",
        "K2,NYCC01,2020-02-02,,Parks,,,Bronx,,,",
    ]);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(csv.as_bytes()).unwrap();
    let gz = encoder.finish().unwrap();

    let (plain_reader, was_gzip) =
        gunzip_if_compressed(std::io::Cursor::new(csv.clone().into_bytes())).unwrap();
    assert!(!was_gzip);
    let (gz_reader, was_gzip) = gunzip_if_compressed(std::io::Cursor::new(gz)).unwrap();
    assert!(was_gzip);
    let mapping = Mapping::preset(Preset::NycCouncil);
    let collect = |reader| {
        let mut importer = Importer::new(&mapping, reader).unwrap();
        let items: Vec<ImportItem> = importer.by_ref().map(Result::unwrap).collect();
        (items, importer.progress())
    };
    let (plain, plain_progress) = collect(plain_reader);
    let (unzipped, _) = collect(gz_reader);
    assert_eq!(plain, unzipped);
    assert_eq!(
        plain_progress,
        Progress {
            rows: 2,
            bytes_read: csv.len() as u64,
            total_bytes: None
        }
    );
}

#[test]
fn an_importer_over_a_file_can_move_to_a_blocking_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Importer<Box<dyn std::io::Read + Send>>>();
    assert_send::<ImportItem>();
}

#[test]
fn run_returns_the_summary_it_counted() {
    let csv = nyc(&[
        "K1,NYCC01,2020-02-02,2020-02-03,Parks,,,Bronx,,,",
        "K2,NYCC01,2020-02-02,,,,,Bronx,,,",
    ]);
    let mut seen = 0;
    let summary = Importer::new(&Mapping::preset(Preset::NycCouncil), csv.as_bytes())
        .unwrap()
        .run(|_| seen += 1)
        .unwrap();
    assert_eq!(seen, 2);
    assert_eq!(
        (
            summary.rows,
            summary.imported,
            summary.events,
            summary.skipped_total()
        ),
        (2, 1, 2, 1)
    );
}

#[test]
fn a_truncated_gzip_stream_is_a_fatal_read_error() {
    let csv = nyc(&["K1,NYCC01,2020-02-02,2020-02-03,Parks,,,Bronx,,,"; 200]);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(csv.as_bytes()).unwrap();
    let mut gz = encoder.finish().unwrap();
    gz.truncate(gz.len() - 20);
    let (reader, _) = gunzip_if_compressed(std::io::Cursor::new(gz)).unwrap();
    let results: Vec<_> = Importer::new(&Mapping::preset(Preset::NycCouncil), reader)
        .unwrap()
        .collect();
    assert!(
        matches!(results.last(), Some(Err(ImportError::Read { .. }))),
        "{:?}",
        results.last()
    );
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9 ,.\"/_-]{1,20}",
        "\\PC{0,12}",
        Just("NYCC".to_owned()),
        Just("Select One".to_owned()),
    ]
}

fn date() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (2010i16..2025, 1i8..13, 1i8..29).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        "[0-9/-]{0,10}",
    ]
}

fn nyc_row() -> impl Strategy<Value = Vec<String>> {
    (
        prop_oneof!["NYCC[0-9]{1,8}", "[A-Za-z0-9 :_-]{0,12}"],
        field(),
        date(),
        date(),
        field(),
        field(),
        field(),
        prop_oneof![Just("Brooklyn".to_owned()), Just(String::new()), field()],
        field(),
        field(),
        field(),
    )
        .prop_map(|(k, a, o, c, t, d, z, b, city, dist, cb)| {
            vec![k, a, o, c, t, d, z, b, city, dist, cb]
        })
}

fn csv_line(fields: &[String]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(fields).unwrap();
    String::from_utf8(writer.into_inner().unwrap()).unwrap()
}

fn events_of(csv: &str) -> Vec<(uuid::Uuid, Vec<u8>)> {
    Importer::new(&Mapping::preset(Preset::NycCouncil), csv.as_bytes())
        .unwrap()
        .map(Result::unwrap)
        .flat_map(|item| {
            item.events()
                .iter()
                .map(|e| (e.id, e.to_wire()))
                .collect::<Vec<_>>()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The same row gives the same events (ids and bytes) wherever it appears in a file,
    /// so re-importing, or importing overlapping exports, is idempotent.
    #[test]
    fn the_same_row_always_gives_the_same_events(row in nyc_row(), before in prop::collection::vec(nyc_row(), 0..4)) {
        let line = csv_line(&row);
        let alone = events_of(&format!("{NYC_HEADER}\n{line}"));
        let again = events_of(&format!("{NYC_HEADER}\n{line}"));
        prop_assert_eq!(&alone, &again);
        let preceding: String = before.iter().map(|r| csv_line(r)).collect();
        let in_context = events_of(&format!("{NYC_HEADER}\n{preceding}{line}"));
        prop_assert!(in_context.ends_with(&alone), "the row's events depend on the rows before it");
    }

    /// Whatever the row holds, what the importer produces passes the ingester's decoder.
    #[test]
    fn every_produced_event_decodes(rows in prop::collection::vec(nyc_row(), 1..6)) {
        let text: String = rows.iter().map(|r| csv_line(r)).collect();
        let csv = format!("{NYC_HEADER}\n{text}");
        let mut importer = Importer::new(&Mapping::preset(Preset::NycCouncil), csv.as_bytes()).unwrap();
        for item in importer.by_ref() {
            for event in item.unwrap().events() {
                let decoded = decode(&event.to_wire(), now(), &Limits::default());
                prop_assert_eq!(decoded.as_ref(), Ok(event), "{}", String::from_utf8_lossy(&event.to_wire()));
            }
        }
        prop_assert_eq!(importer.summary().rows, rows.len() as u64);
    }
}
