//! An OCF agent's parameters as one table: [`parameters!`] turns it into a
//! typed struct with its environment parsing, defaults and type checks, and
//! into the rows ([`ParamSpec`]) that meta-data and the man page list, so a
//! parameter exists in every one of them or in none.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Boolean,
    Integer,
}

impl ParamType {
    pub fn ocf_name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Boolean => "boolean",
            ParamType::Integer => "integer",
        }
    }
}

/// One row of the table, as meta-data and the man page see it.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamType,
    /// The default advertised in meta-data and applied when the variable is unset.
    pub default: Option<&'static str>,
    pub required: bool,
    pub unique: bool,
    /// OCF 1.1: a change of it alone takes effect through `reload-agent`,
    /// without a restart of the resource.
    pub reloadable: bool,
    pub shortdesc: &'static str,
    pub longdesc: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub name: &'static str,
    pub message: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameter {}: {}", self.name, self.message)
    }
}

impl std::error::Error for ParamError {}

/// How one kind of parameter turns its (possibly absent) text into a value.
pub trait ParamKind {
    type Value;
    const TYPE: ParamType;
    fn parse(name: &'static str, raw: Option<&str>) -> Result<Self::Value, ParamError>;
}

/// Free text; empty counts as unset, as in the classic agent.
pub struct Text;
/// An OCF boolean (`ocf_is_true`): yes/true/on/1 and no/false/off/0, any case.
pub struct Flag;
/// A non-negative integer.
pub struct Number;
/// A non-negative integer without a default.
pub struct OptNumber;

impl ParamKind for Text {
    type Value = Option<String>;
    const TYPE: ParamType = ParamType::String;
    fn parse(_: &'static str, raw: Option<&str>) -> Result<Self::Value, ParamError> {
        Ok(raw.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned))
    }
}

pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "on" | "ja" => Some(true),
        "0" | "no" | "n" | "false" | "off" | "nein" => Some(false),
        _ => None,
    }
}

impl ParamKind for Flag {
    type Value = bool;
    const TYPE: ParamType = ParamType::Boolean;
    fn parse(name: &'static str, raw: Option<&str>) -> Result<bool, ParamError> {
        let raw = raw.map(str::trim).filter(|s| !s.is_empty()).unwrap_or("false");
        parse_bool(raw).ok_or_else(|| ParamError {
            name,
            message: format!("'{raw}' is not a boolean (use true or false)"),
        })
    }
}

impl ParamKind for OptNumber {
    type Value = Option<u64>;
    const TYPE: ParamType = ParamType::Integer;
    fn parse(name: &'static str, raw: Option<&str>) -> Result<Option<u64>, ParamError> {
        match raw.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(text) => text.parse::<u64>().map(Some).map_err(|_| ParamError {
                name,
                message: format!("'{text}' is not a non-negative integer"),
            }),
        }
    }
}

impl ParamKind for Number {
    type Value = u64;
    const TYPE: ParamType = ParamType::Integer;
    fn parse(name: &'static str, raw: Option<&str>) -> Result<u64, ParamError> {
        Ok(OptNumber::parse(name, raw)?.unwrap_or(0))
    }
}

/// Declares an agent's parameter table (see `vdomain::params`).
macro_rules! parameters {
    ($(
        $field:ident : $kind:ident
            $(= $default:literal)?
            $(, required = $required:literal)?
            $(, unique = $unique:literal)?
            $(, reloadable = $reloadable:literal)?
            ;
            short: $short:literal;
            long: $long:literal;
    )*) => {
        /// The resource's parameters, typed, after defaults.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Params {
            $( pub $field: <$kind as ParamKind>::Value, )*
        }

        pub const TABLE: &[ParamSpec] = &[
            $( ParamSpec {
                name: stringify!($field),
                kind: <$kind as ParamKind>::TYPE,
                default: parameters!(@opt $($default)?),
                required: parameters!(@flag $($required)?),
                unique: parameters!(@flag $($unique)?),
                reloadable: parameters!(@flag $($reloadable)?),
                shortdesc: $short,
                longdesc: $long,
            }, )*
        ];

        impl Params {
            /// Builds the parameters from `lookup(name)` (the value of
            /// `OCF_RESKEY_<name>`), applying the table's defaults.
            pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Params, Vec<ParamError>> {
                let mut errors = Vec::new();
                $(
                    let raw = lookup(stringify!($field));
                    let raw = raw.as_deref().filter(|s| !s.trim().is_empty()).or(parameters!(@opt $($default)?));
                    let $field = <$kind as ParamKind>::parse(stringify!($field), raw)
                        .map_err(|e| errors.push(e)).ok();
                )*
                if !errors.is_empty() {
                    return Err(errors);
                }
                Ok(Params { $( $field: $field.expect("parsed above"), )* })
            }
        }
    };
    (@opt) => { None };
    (@opt $v:literal) => { Some($v) };
    (@flag) => { false };
    (@flag $v:literal) => { $v };
}

pub(crate) use parameters;
