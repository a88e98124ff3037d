//! Typed custom headers and their `extFields` form.
//!
//! RocketMQ decodes headers by Java field name from a map of strings. Each typed header here lists
//! its fields with their wire names; required fields (Java's `@CFNotNull`) are plain types and a
//! missing one is a [`HeaderError::Missing`], optional fields are `Option`s.

use crate::command::ExtFields;

/// Why a custom header could not be decoded; the message is fit for a response remark.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the request header lacks the required field '{0}'")]
    Missing(&'static str),
    #[error("the request header field '{field}' has an invalid value '{value}': {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// A typed custom header.
pub trait CommandHeader: Sized {
    /// Writes every present field into `fields` under its wire name.
    fn encode(&self, fields: &mut ExtFields);
    /// Reads the header from `fields`, refusing missing required fields and unparsable values.
    fn decode(fields: &ExtFields) -> Result<Self, HeaderError>;

    /// The header as a fresh `extFields` map.
    fn to_ext_fields(&self) -> ExtFields {
        let mut fields = ExtFields::new();
        self.encode(&mut fields);
        fields
    }
}

/// A header with no fields, for requests that carry none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmptyHeader;

impl CommandHeader for EmptyHeader {
    fn encode(&self, _fields: &mut ExtFields) {}
    fn decode(_fields: &ExtFields) -> Result<Self, HeaderError> {
        Ok(EmptyHeader)
    }
}

/// One field type as it is written to and read from `extFields`.
pub trait HeaderValue: Sized {
    fn put(&self, fields: &mut ExtFields, name: &'static str);
    fn take(fields: &ExtFields, name: &'static str) -> Result<Self, HeaderError>;
}

/// Scalars stored as their decimal / textual form.
pub trait HeaderScalar: Sized {
    fn to_wire(&self) -> String;
    fn from_wire(value: &str, name: &'static str) -> Result<Self, HeaderError>;
}

impl HeaderScalar for String {
    fn to_wire(&self) -> String {
        self.clone()
    }
    fn from_wire(value: &str, _name: &'static str) -> Result<Self, HeaderError> {
        Ok(value.to_owned())
    }
}

macro_rules! numeric_scalar {
    ($($ty:ty => $reason:literal),*) => {$(
        impl HeaderScalar for $ty {
            fn to_wire(&self) -> String {
                self.to_string()
            }
            fn from_wire(value: &str, name: &'static str) -> Result<Self, HeaderError> {
                value.trim().parse().map_err(|_| HeaderError::Invalid {
                    field: name,
                    value: truncate(value),
                    reason: $reason,
                })
            }
        }
    )*};
}

numeric_scalar!(
    i8 => "not an 8-bit integer",
    i16 => "not a 16-bit integer",
    i32 => "not a 32-bit integer",
    i64 => "not a 64-bit integer",
    f64 => "not a number"
);

impl HeaderScalar for bool {
    fn to_wire(&self) -> String {
        self.to_string()
    }
    /// Java's `Boolean.parseBoolean`: "true" in any case is true, anything else false.
    fn from_wire(value: &str, _name: &'static str) -> Result<Self, HeaderError> {
        Ok(value.trim().eq_ignore_ascii_case("true"))
    }
}

fn truncate(value: &str) -> String {
    const LIMIT: usize = 64;
    if value.len() <= LIMIT {
        return value.to_owned();
    }
    let mut end = LIMIT;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

impl<T: HeaderScalar> HeaderValue for T {
    fn put(&self, fields: &mut ExtFields, name: &'static str) {
        fields.insert(name.to_owned(), self.to_wire());
    }
    fn take(fields: &ExtFields, name: &'static str) -> Result<Self, HeaderError> {
        match fields.get(name) {
            Some(value) => T::from_wire(value, name),
            None => Err(HeaderError::Missing(name)),
        }
    }
}

impl<T: HeaderScalar> HeaderValue for Option<T> {
    fn put(&self, fields: &mut ExtFields, name: &'static str) {
        if let Some(value) = self {
            fields.insert(name.to_owned(), value.to_wire());
        }
    }
    fn take(fields: &ExtFields, name: &'static str) -> Result<Self, HeaderError> {
        fields.get(name).map(|v| T::from_wire(v, name)).transpose()
    }
}

/// Declares a typed header: `field: Type = "wireName"`. Plain types are required, `Option`s are
/// optional.
#[macro_export]
macro_rules! command_header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty = $wire:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $crate::header::CommandHeader for $name {
            fn encode(&self, fields: &mut $crate::command::ExtFields) {
                // Headers without fields leave the map unused.
                let _ = &fields;
                $( $crate::header::HeaderValue::put(&self.$field, fields, $wire); )*
            }
            fn decode(fields: &$crate::command::ExtFields) -> Result<Self, $crate::header::HeaderError> {
                let _ = fields;
                Ok(Self {
                    $( $field: $crate::header::HeaderValue::take(fields, $wire)?, )*
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    command_header! {
        /// A header used only to test the macro.
        pub struct SampleHeader {
            topic: String = "topic",
            queue_id: i32 = "queueId",
            offset: Option<i64> = "offset",
            unit_mode: Option<bool> = "unitMode",
        }
    }

    #[test]
    fn round_trip_and_errors() {
        let header = SampleHeader {
            topic: "T".into(),
            queue_id: 3,
            offset: Some(-7),
            unit_mode: None,
        };
        let fields = header.to_ext_fields();
        assert_eq!(fields.get("queueId").map(String::as_str), Some("3"));
        assert!(!fields.contains_key("unitMode"));
        assert_eq!(SampleHeader::decode(&fields), Ok(header));

        let mut missing = fields.clone();
        missing.remove("topic");
        assert_eq!(
            SampleHeader::decode(&missing),
            Err(HeaderError::Missing("topic"))
        );

        let mut bad = fields;
        bad.insert("queueId".into(), "three".into());
        let err = SampleHeader::decode(&bad).unwrap_err();
        assert!(err.to_string().contains("queueId"), "{err}");
    }
}
