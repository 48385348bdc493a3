//! What a CSV export's columns mean: [`Mapping`] (deserialised from TOML) and the built-in
//! [`Preset`]s, which are mappings shipped inside the crate (`src/presets/*.toml`).

use std::{collections::BTreeMap, fmt, path::Path, str::FromStr};

use plaint_events::{is_token, Channel, Severity};
use serde::Deserialize;

use crate::ImportError;

/// The built-in mappings for well-known public exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Preset {
    /// The CFPB Consumer Complaint Database export.
    Cfpb,
    /// The NYC Council Constituent Services (CouncilStat) export.
    NycCouncil,
}

impl Preset {
    pub const ALL: [Preset; 2] = [Preset::Cfpb, Preset::NycCouncil];

    /// The name users type (`plaint import cfpb FILE`); also the mapping's `name`, so it
    /// appears in `source = "import/<name>"` and in every event id.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Cfpb => "cfpb",
            Preset::NycCouncil => "nyc-council",
        }
    }

    /// The preset's mapping in the TOML format of [`Mapping`], with its decisions as comments.
    pub fn mapping_toml(self) -> &'static str {
        match self {
            Preset::Cfpb => include_str!("presets/cfpb.toml"),
            Preset::NycCouncil => include_str!("presets/nyc_council.toml"),
        }
    }

    fn names() -> String {
        Preset::ALL.map(Preset::name).join(", ")
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = ImportError;

    fn from_str(s: &str) -> Result<Preset, ImportError> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| ImportError::UnknownPreset {
                name: s.to_owned(),
                presets: Preset::names(),
            })
    }
}

/// How to turn one CSV row into events: which header holds what, constant defaults for
/// what the export lacks, value tables, and how to read its dates.
///
/// `crates/import/import.example.toml` documents every key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// `[a-z0-9_-]{1,64}`; part of `source` (`import/<name>`) and of every event id.
    pub name: String,
    /// Prepended to the source id to form the complaint id. `None` means `"<name>-"`.
    #[serde(default)]
    pub id_prefix: Option<String>,
    /// IANA time zone for times without an offset.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// strftime-style format of the opened/closed columns; `None` accepts ISO forms.
    #[serde(default)]
    pub date_format: Option<String>,
    /// `HH:MM` given to date-only values.
    #[serde(default = "default_date_only_time")]
    pub date_only_time: String,
    /// Values that count as empty, compared after trimming. `""` always does.
    #[serde(default)]
    pub null_values: Vec<String>,
    pub columns: Columns,
    #[serde(default)]
    pub defaults: Defaults,
    /// Source value (case-insensitive) → channel.
    #[serde(default)]
    pub channel_values: BTreeMap<String, Channel>,
    /// Source value (case-insensitive) → severity.
    #[serde(default)]
    pub severity_values: BTreeMap<String, Severity>,
}

/// CSV header names. Only `id` and `opened` are required.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub id: String,
    pub opened: String,
    #[serde(default)]
    pub closed: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub amount: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub resolved_by: Option<String>,
    #[serde(default)]
    pub tags: Vec<TagColumn>,
}

/// A column whose (slugged) value becomes the tag `<name>:<slug>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagColumn {
    pub name: String,
    pub column: String,
    /// When set, the value is a list: one tag per non-empty part.
    #[serde(default)]
    pub split: Option<String>,
}

/// Constants for what a row does not say.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Region token when the region column is absent or empty; `None` skips such rows.
    pub region: Option<String>,
    /// Category token when the category column is absent or empty; `None` skips such rows.
    pub category: Option<String>,
    pub channel: Channel,
    pub severity: Severity,
    /// ISO 4217 code of the amount column.
    pub currency: Option<String>,
    /// `by` of `complaint.resolved` when no `resolved_by` column gives one.
    pub resolved_by: String,
    /// `resolution` text of `complaint.resolved`.
    pub resolution: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            region: None,
            category: None,
            channel: Channel::Other,
            severity: Severity::Medium,
            currency: None,
            resolved_by: "import".to_owned(),
            resolution: "closed in the source system".to_owned(),
        }
    }
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

fn default_date_only_time() -> String {
    "12:00".to_owned()
}

/// At most this many tag columns, so that with `split` values a row still stays well under
/// the contract's default limit of 32 tags (the importer also caps the tags of a row).
pub(crate) const MAX_TAG_COLUMNS: usize = 16;
pub(crate) const MAX_TAGS_PER_ROW: usize = 16;

impl Mapping {
    /// The mapping of a built-in preset.
    pub fn preset(preset: Preset) -> Mapping {
        Mapping::from_toml(preset.mapping_toml()).expect("built-in presets are valid (tested)")
    }

    /// Parses and validates a mapping file's text.
    pub fn from_toml(text: &str) -> Result<Mapping, ImportError> {
        let mapping: Mapping =
            toml::from_str(text).map_err(|e| ImportError::MappingToml(Box::new(e)))?;
        mapping.validate()?;
        Ok(mapping)
    }

    /// What the CLI's `<preset|mapping>` argument names: a preset name, else a path to a
    /// mapping TOML file.
    pub fn load(preset_or_path: &str) -> Result<Mapping, ImportError> {
        if let Ok(preset) = preset_or_path.parse::<Preset>() {
            return Ok(Mapping::preset(preset));
        }
        let path = Path::new(preset_or_path);
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::MappingFile {
            arg: preset_or_path.to_owned(),
            presets: Preset::names(),
            source,
        })?;
        Mapping::from_toml(&text)
    }

    /// The complaint-id prefix in effect.
    pub fn id_prefix(&self) -> String {
        self.id_prefix
            .clone()
            .unwrap_or_else(|| format!("{}-", self.name))
    }

    /// The `source` of every event this mapping produces.
    pub fn source(&self) -> String {
        format!("import/{}", self.name)
    }

    /// Checks everything that does not depend on the CSV header, so a bad mapping fails
    /// before any row is read.
    pub fn validate(&self) -> Result<(), ImportError> {
        let invalid = |msg: String| Err(ImportError::InvalidMapping(msg));
        if !is_token(&self.name) {
            return invalid(format!(
                "name must match [a-z0-9_-]{{1,64}}, got {:?}",
                self.name
            ));
        }
        let prefix = self.id_prefix();
        if prefix.len() > 64 || !prefix.bytes().all(is_complaint_id_byte) {
            return invalid(format!(
                "id_prefix must be at most 64 characters of [A-Za-z0-9._:-], got {prefix:?}"
            ));
        }
        if let Err(e) = jiff::tz::TimeZone::get(&self.time_zone) {
            return invalid(format!(
                "time_zone {:?} is not an IANA time zone: {e}",
                self.time_zone
            ));
        }
        if let Err(e) = self.date_only_time.parse::<jiff::civil::Time>() {
            return invalid(format!(
                "date_only_time must be HH:MM, got {:?}: {e}",
                self.date_only_time
            ));
        }
        if self.date_format.as_deref() == Some("") {
            return invalid(
                "date_format must not be empty; remove it to accept ISO dates".to_owned(),
            );
        }
        for (what, token) in [
            ("region", &self.defaults.region),
            ("category", &self.defaults.category),
        ] {
            if let Some(token) = token {
                if !is_token(token) {
                    return invalid(format!(
                        "defaults.{what} must match [a-z0-9_-]{{1,64}}, got {token:?}"
                    ));
                }
            }
        }
        if self.columns.amount.is_some() {
            match &self.defaults.currency {
                Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => {}
                Some(c) => {
                    return invalid(format!(
                        "defaults.currency must be an ISO 4217 code like \"USD\", got {c:?}"
                    ))
                }
                None => {
                    return invalid(
                        "columns.amount needs defaults.currency (e.g. \"USD\")".to_owned(),
                    )
                }
            }
        }
        for (what, value) in [
            ("defaults.resolved_by", &self.defaults.resolved_by),
            ("defaults.resolution", &self.defaults.resolution),
        ] {
            if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
                return invalid(format!(
                    "{what} must be 1-256 bytes without control characters"
                ));
            }
        }
        if self.columns.tags.len() > MAX_TAG_COLUMNS {
            return invalid(format!(
                "at most {MAX_TAG_COLUMNS} tag columns, got {}",
                self.columns.tags.len()
            ));
        }
        for tag in &self.columns.tags {
            if !is_token(&tag.name) || tag.name.len() > 32 {
                return invalid(format!(
                    "tag name must match [a-z0-9_-]{{1,32}}, got {:?}",
                    tag.name
                ));
            }
            if tag.split.as_deref() == Some("") {
                return invalid(format!("tag {:?}: split must not be empty", tag.name));
            }
        }
        Ok(())
    }
}

pub(crate) fn is_complaint_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        name = "crm"
        [columns]
        id = "Ticket"
        opened = "Created"
    "#;

    fn with(extra_top: &str, extra_columns: &str, defaults: &str) -> String {
        format!("name = \"crm\"\n{extra_top}\n[columns]\nid = \"Ticket\"\nopened = \"Created\"\n{extra_columns}\n[defaults]\n{defaults}\n")
    }

    #[test]
    fn every_preset_is_a_valid_mapping_named_after_itself() {
        for preset in Preset::ALL {
            let mapping = Mapping::preset(preset);
            assert_eq!(mapping.name, preset.name());
            assert_eq!(preset.name().parse::<Preset>().unwrap(), preset);
            assert_eq!(mapping.source(), format!("import/{preset}"));
        }
        assert_eq!(Mapping::preset(Preset::Cfpb).id_prefix(), "cfpb-");
        assert_eq!(Mapping::preset(Preset::NycCouncil).id_prefix(), "nycc-");
    }

    #[test]
    fn the_example_file_is_a_valid_mapping() {
        let mapping = Mapping::from_toml(include_str!("../import.example.toml")).unwrap();
        assert_eq!(mapping.name, "nyc311");
        assert_eq!(mapping.channel_values.get("ONLINE"), Some(&Channel::Web));
    }

    #[test]
    fn a_minimal_mapping_gets_documented_defaults() {
        let mapping = Mapping::from_toml(MINIMAL).unwrap();
        assert_eq!(mapping.id_prefix(), "crm-");
        assert_eq!(mapping.time_zone, "UTC");
        assert_eq!(mapping.date_only_time, "12:00");
        assert_eq!(mapping.defaults, Defaults::default());
        assert!(mapping.null_values.is_empty());
    }

    #[test]
    fn load_takes_a_preset_name_or_a_file_and_says_which_failed() {
        assert_eq!(
            Mapping::load("cfpb").unwrap(),
            Mapping::preset(Preset::Cfpb)
        );
        let err = Mapping::load("/nonexistent/mapping.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cfpb, nyc-council"), "{err}");
        assert!("nyc_council".parse::<Preset>().is_err());
    }

    #[test]
    fn invalid_mappings_are_refused_before_reading_rows() {
        let cases = [
            (MINIMAL.replace("\"crm\"", "\"CRM\""), "name"),
            (with("id_prefix = \"a b\"", "", ""), "id_prefix"),
            (with("time_zone = \"Mars/Olympus\"", "", ""), "time_zone"),
            (with("date_only_time = \"noon\"", "", ""), "date_only_time"),
            (with("date_format = \"\"", "", ""), "date_format"),
            (with("", "amount = \"Amt\"", ""), "currency"),
            (
                with("", "amount = \"Amt\"", "currency = \"usd\""),
                "currency",
            ),
            (with("", "", "region = \"Not A Token\""), "defaults.region"),
            (with("", "", "resolution = \"\""), "defaults.resolution"),
            (
                with("", "tags = [{ name = \"Bad Name\", column = \"X\" }]", ""),
                "tag name",
            ),
            (
                with(
                    "",
                    "tags = [{ name = \"t\", column = \"X\", split = \"\" }]",
                    "",
                ),
                "split",
            ),
        ];
        for (text, expected) in cases {
            let err = Mapping::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_channel_names_are_toml_errors() {
        assert!(matches!(
            Mapping::from_toml(&with("colour = \"red\"", "", "")),
            Err(ImportError::MappingToml(_))
        ));
        assert!(matches!(
            Mapping::from_toml(&format!("{}\n[channel_values]\nWeb = \"www\"\n", MINIMAL)),
            Err(ImportError::MappingToml(_))
        ));
    }
}
