//! The `avro` format: a datum sent in the Avro spec's JSON encoding, stored in Avro's binary
//! encoding (the bare datum: no container header, no schema id), rendered back as JSON
//! encoding.
//!
//! JSON encoding, as the spec defines it: records are objects, enums their symbol, `bytes` and
//! `fixed` strings whose code points 0-255 are the bytes, maps objects, arrays arrays, and a
//! union value is `null` for the null branch, else an object naming one branch:
//! `{"int": 3}`, `{"com.acme.Address": {...}}` (named types by full name; the short name is
//! accepted on input). Non-finite floats are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
//! A record field left out takes its schema default (a union default is for its first branch,
//! untagged).
//!
//! Logical types (`timestamp-millis`, `decimal`, `uuid`, …) are treated as their underlying type:
//! the binary encoding is the same and the spec's JSON encoding of a logical type is its
//! underlying type's, so `{"type": "long", "logicalType": "timestamp-millis"}` takes and renders
//! a number. The annotation is removed before apache-avro parses the schema so that its logical
//! type support (which changes what values it accepts) never applies.
//!
//! Encoding: the JSON is converted to an `apache_avro::types::Value` guided by the schema (the
//! crate's own JSON conversion cannot know union branches), then `apache_avro::to_avro_datum`.
//! Decoding for the read API is rill's own `Decoder`, straight to JSON text: the bytes come
//! from the log, written by anyone, and apache-avro's decoder reserves memory for an array's
//! declared item count before reading the items, so ten crafted bytes could demand gigabytes.
//! The decoder here checks every length against the bytes left, caps items and nesting, and
//! writes record fields in schema order.
//!
//! Schemas are parsed once: [`AvroSchemaCache`] maps schema text to the parsed schema, bounded
//! in entries and bytes, evicting the least recently used.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use apache_avro::schema::{
    ArraySchema, EnumSchema, FixedSchema, MapSchema, Name, Namespace, RecordSchema, ResolvedSchema,
    Schema, SchemaKind, UnionSchema,
};
use apache_avro::types::Value;
use serde_json::value::RawValue;
use serde_json::Value as Json;

use super::{FormatError, FormatSpecError, RenderError};

/// Deepest nesting of records, arrays, maps and unions handled, on input and output. Matches
/// serde_json's parser limit, so anything accepted on produce can be rendered.
const MAX_DEPTH: usize = 128;

/// Array items that take no bytes (nulls, empty records) that one datum may decode to, beyond
/// one per byte of input: bounds the output of a datum declaring a billion nulls.
const ZERO_SIZE_ITEM_ALLOWANCE: usize = 1 << 20;

/// A parsed Avro schema with its named types resolved, ready to encode and decode datums.
#[derive(Debug)]
pub struct AvroSchema {
    schema: Schema,
    /// Every named type (record, enum, fixed) by full name, to follow `Schema::Ref`s.
    names: HashMap<Name, Schema>,
}

/// Checks every name the Avro library will parse — `type` names, `name`, `namespace`,
/// `aliases` — against the specification's grammar (`[A-Za-z_][A-Za-z0-9_]*`, dotted for full
/// names), so that a bad one is a clear error instead of a panic inside the library.
fn check_names(json: &Json) -> Result<(), String> {
    fn identifier(part: &str) -> bool {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }
    fn full_name(name: &str) -> bool {
        name.strip_prefix('.')
            .unwrap_or(name)
            .split('.')
            .all(identifier)
    }
    match json {
        Json::Array(items) => items.iter().try_for_each(check_names),
        Json::Object(object) => {
            for key in ["type", "name"] {
                if let Some(Json::String(name)) = object.get(key) {
                    if !full_name(name) {
                        return Err(format!("{key} {name:?} is not a valid Avro name"));
                    }
                }
            }
            if let Some(Json::String(namespace)) = object.get("namespace") {
                if !namespace.is_empty() && !namespace.split('.').all(identifier) {
                    return Err(format!(
                        "namespace {namespace:?} is not a valid Avro namespace"
                    ));
                }
            }
            if let Some(Json::Array(aliases)) = object.get("aliases") {
                for alias in aliases {
                    if let Json::String(alias) = alias {
                        if !full_name(alias) {
                            return Err(format!("alias {alias:?} is not a valid Avro name"));
                        }
                    }
                }
            }
            // Only what holds schemas: a `default` value may well have a "name" of any text.
            ["type", "fields", "items", "values"]
                .iter()
                .filter_map(|key| object.get(*key))
                .try_for_each(check_names)
        }
        _ => Ok(()),
    }
}

impl AvroSchema {
    /// Parses a schema's JSON text.
    pub fn parse(text: &str) -> Result<Self, FormatSpecError> {
        let mut json: Json = serde_json::from_str(text)
            .map_err(|e| FormatSpecError::InvalidSchema(format!("not JSON: {e}")))?;
        strip_logical_types(&mut json);
        check_names(&json).map_err(FormatSpecError::InvalidSchema)?;
        // apache-avro unwraps some name parses; `check_names` keeps those inputs out, and this
        // keeps any other panic in the library a 400 rather than a dead worker.
        let parsed = std::panic::catch_unwind(|| -> Result<Self, FormatSpecError> {
            let schema =
                Schema::parse(&json).map_err(|e| FormatSpecError::InvalidSchema(e.to_string()))?;
            let names = ResolvedSchema::try_from(&schema)
                .map_err(|e| FormatSpecError::InvalidSchema(e.to_string()))?
                .get_names()
                .iter()
                .map(|(name, schema)| (name.clone(), (*schema).clone()))
                .collect();
            Ok(Self { schema, names })
        });
        parsed.unwrap_or_else(|_| {
            Err(FormatSpecError::InvalidSchema(
                "the Avro library could not parse this schema".into(),
            ))
        })
    }

    /// The parsed schema (logical type annotations removed, see the module doc).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Appends the binary encoding of a JSON-encoded datum to `out`.
    pub(super) fn serialize(&self, raw: &RawValue, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let json: Json =
            serde_json::from_str(raw.get()).map_err(|e| FormatError::AvroMismatch {
                at: String::new(),
                reason: e.to_string(),
            })?;
        let mut converter = ToValue {
            names: &self.names,
            path: Vec::new(),
        };
        let value = converter.value(&json, &self.schema, &None, true)?;
        let bytes = apache_avro::to_avro_datum(&self.schema, value)
            .map_err(|e| FormatError::AvroEncode(truncated(&e.to_string())))?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    /// Renders one stored datum as JSON encoding.
    pub(super) fn render(&self, bytes: &[u8]) -> Result<Box<RawValue>, RenderError> {
        let mut decoder = Decoder {
            input: bytes,
            names: &self.names,
            items_left: bytes.len().saturating_add(ZERO_SIZE_ITEM_ALLOWANCE),
            out: Vec::with_capacity(bytes.len().saturating_add(16)),
        };
        decoder
            .value(&self.schema, &None, 0)
            .map_err(RenderError::NotAvro)?;
        if !decoder.input.is_empty() {
            return Err(RenderError::NotAvro(format!(
                "{} bytes left over after the datum",
                decoder.input.len()
            )));
        }
        let text = String::from_utf8(decoder.out)
            .map_err(|e| RenderError::NotAvro(format!("rendered text is not UTF-8: {e}")))?;
        RawValue::from_string(text).map_err(RenderError::Encode)
    }
}

/// Removes `logicalType` from every schema position (not from field defaults, which are data).
fn strip_logical_types(schema: &mut Json) {
    match schema {
        Json::Array(branches) => branches.iter_mut().for_each(strip_logical_types),
        Json::Object(object) => {
            object.remove("logicalType");
            for key in ["type", "items", "values"] {
                if let Some(inner) = object.get_mut(key) {
                    strip_logical_types(inner);
                }
            }
            if let Some(Json::Array(fields)) = object.get_mut("fields") {
                for field in fields {
                    if let Json::Object(field) = field {
                        field.remove("logicalType");
                        if let Some(inner) = field.get_mut("type") {
                            strip_logical_types(inner);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// apache-avro's messages can embed whole values and schemas; keep responses readable.
fn truncated(message: &str) -> String {
    const MAX: usize = 300;
    match message.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

/// The name a union branch goes by in JSON encoding: the type name, or a named type's full
/// name.
fn branch_name(schema: &Schema, namespace: &Namespace) -> String {
    match schema {
        Schema::Null => "null".to_owned(),
        Schema::Boolean => "boolean".to_owned(),
        Schema::Int => "int".to_owned(),
        Schema::Long => "long".to_owned(),
        Schema::Float => "float".to_owned(),
        Schema::Double => "double".to_owned(),
        Schema::Bytes => "bytes".to_owned(),
        Schema::String => "string".to_owned(),
        Schema::Array(_) => "array".to_owned(),
        Schema::Map(_) => "map".to_owned(),
        Schema::Record(RecordSchema { name, .. })
        | Schema::Enum(EnumSchema { name, .. })
        | Schema::Fixed(FixedSchema { name, .. })
        | Schema::Ref { name } => name.fully_qualified_name(namespace).fullname(None),
        other => format!("{:?}", SchemaKind::from(other)).to_lowercase(),
    }
}

/// Follows a reference to a named type; returns it and the namespace its insides resolve in.
fn resolve<'s>(
    names: &'s HashMap<Name, Schema>,
    name: &Name,
    namespace: &Namespace,
) -> Option<(&'s Schema, Namespace)> {
    let full = name.fully_qualified_name(namespace);
    names.get(&full).map(|schema| (schema, full.namespace))
}

/// A short description of a JSON value's type for error messages (never the value: it may be
/// large or sensitive).
fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_f64() => "a number with a fraction or exponent",
        Json::Number(_) => "an integer",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// One step into a datum, for error paths.
enum Step {
    Field(String),
    Index(usize),
}

/// Converts JSON encoding to an apache-avro `Value`, guided by the schema.
struct ToValue<'s> {
    names: &'s HashMap<Name, Schema>,
    path: Vec<Step>,
}

impl<'s> ToValue<'s> {
    fn mismatch(&self, reason: String) -> FormatError {
        let mut at = String::new();
        for step in &self.path {
            match step {
                Step::Field(name) if at.is_empty() => at.push_str(name),
                Step::Field(name) => {
                    at.push('.');
                    at.push_str(name);
                }
                Step::Index(i) => at.push_str(&format!("[{i}]")),
            }
        }
        FormatError::AvroMismatch { at, reason }
    }

    fn expected(&self, what: &str, json: &Json) -> FormatError {
        self.mismatch(format!("expected {what}, found {}", kind(json)))
    }

    /// `tagged` is false inside field defaults, where a union value is its first branch's,
    /// untagged.
    fn value(
        &mut self,
        json: &Json,
        schema: &'s Schema,
        namespace: &Namespace,
        tagged: bool,
    ) -> Result<Value, FormatError> {
        if self.path.len() > MAX_DEPTH {
            return Err(self.mismatch(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        match schema {
            Schema::Ref { name } => match resolve(self.names, name, namespace) {
                Some((named, inner_namespace)) => self.value(json, named, &inner_namespace, tagged),
                None => Err(self.mismatch(format!("unknown type {name}"))),
            },
            Schema::Null => match json {
                Json::Null => Ok(Value::Null),
                other => Err(self.expected("null", other)),
            },
            Schema::Boolean => match json {
                Json::Bool(b) => Ok(Value::Boolean(*b)),
                other => Err(self.expected("a boolean", other)),
            },
            Schema::Int => json
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Value::Int)
                .ok_or_else(|| self.expected("an int (32-bit integer)", json)),
            Schema::Long => json
                .as_i64()
                .map(Value::Long)
                .ok_or_else(|| self.expected("a long (64-bit integer)", json)),
            Schema::Float => match number(json) {
                // A finite double out of f32 range would silently become infinity.
                Some(n) if n.is_finite() && (n as f32).is_infinite() => {
                    Err(self.mismatch(format!("{n:e} is out of range for a float")))
                }
                Some(n) => Ok(Value::Float(n as f32)),
                None => Err(self.expected("a float", json)),
            },
            Schema::Double => number(json)
                .map(Value::Double)
                .ok_or_else(|| self.expected("a double", json)),
            Schema::Bytes => self.code_points(json).map(Value::Bytes),
            Schema::String => match json {
                Json::String(s) => Ok(Value::String(s.clone())),
                other => Err(self.expected("a string", other)),
            },
            Schema::Fixed(FixedSchema { size, .. }) => {
                let bytes = self.code_points(json)?;
                if bytes.len() == *size {
                    Ok(Value::Fixed(*size, bytes))
                } else {
                    Err(self.mismatch(format!(
                        "expected {size} bytes (fixed), found {}",
                        bytes.len()
                    )))
                }
            }
            Schema::Enum(EnumSchema { symbols, .. }) => {
                let Json::String(symbol) = json else {
                    return Err(self.expected("an enum symbol (a string)", json));
                };
                match symbols.iter().position(|s| s == symbol) {
                    Some(i) => Ok(Value::Enum(i as u32, symbol.clone())),
                    None => Err(self.mismatch(format!(
                        "\"{symbol}\" is not one of the enum's symbols: {}",
                        symbols.join(", ")
                    ))),
                }
            }
            Schema::Array(ArraySchema { items, .. }) => {
                let Json::Array(elements) = json else {
                    return Err(self.expected("an array", json));
                };
                let mut values = Vec::with_capacity(elements.len());
                for (i, element) in elements.iter().enumerate() {
                    self.path.push(Step::Index(i));
                    let value = self.value(element, items, namespace, tagged)?;
                    self.path.pop();
                    values.push(value);
                }
                Ok(Value::Array(values))
            }
            Schema::Map(MapSchema { types, .. }) => {
                let Json::Object(entries) = json else {
                    return Err(self.expected("an object (a map)", json));
                };
                let mut values = HashMap::with_capacity(entries.len());
                for (key, entry) in entries {
                    self.path.push(Step::Field(key.clone()));
                    let value = self.value(entry, types, namespace, tagged)?;
                    self.path.pop();
                    values.insert(key.clone(), value);
                }
                Ok(Value::Map(values))
            }
            Schema::Record(record) => self.record(json, record, namespace, tagged),
            Schema::Union(union) => self.union(json, union, namespace, tagged),
            other => Err(self.mismatch(format!(
                "schema type {:?} is not supported",
                SchemaKind::from(other)
            ))),
        }
    }

    fn record(
        &mut self,
        json: &Json,
        record: &'s RecordSchema,
        namespace: &Namespace,
        tagged: bool,
    ) -> Result<Value, FormatError> {
        let Json::Object(object) = json else {
            return Err(self.expected("an object (a record)", json));
        };
        if let Some(unknown) = object.keys().find(|k| !record.lookup.contains_key(*k)) {
            return Err(self.mismatch(format!(
                "unknown field \"{unknown}\" for record {}",
                record.name
            )));
        }
        let inner_namespace = record.name.fully_qualified_name(namespace).namespace;
        let mut fields = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            self.path.push(Step::Field(field.name.clone()));
            let value = match (object.get(&field.name), &field.default) {
                (Some(given), _) => self.value(given, &field.schema, &inner_namespace, tagged)?,
                (None, Some(default)) => {
                    self.value(default, &field.schema, &inner_namespace, false)?
                }
                (None, None) => {
                    self.path.pop();
                    return Err(self.mismatch(format!(
                        "missing field \"{}\" (it has no default)",
                        field.name
                    )));
                }
            };
            self.path.pop();
            fields.push((field.name.clone(), value));
        }
        Ok(Value::Record(fields))
    }

    fn union(
        &mut self,
        json: &Json,
        union: &'s UnionSchema,
        namespace: &Namespace,
        tagged: bool,
    ) -> Result<Value, FormatError> {
        let branches = union.variants();
        if !tagged {
            let Some(first) = branches.first() else {
                return Err(self.mismatch("the union has no branches".to_owned()));
            };
            let value = self.value(json, first, namespace, false)?;
            return Ok(Value::Union(0, Box::new(value)));
        }
        let names = || {
            branches
                .iter()
                .map(|b| branch_name(b, namespace))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match json {
            Json::Null => match branches.iter().position(|b| matches!(b, Schema::Null)) {
                Some(i) => Ok(Value::Union(i as u32, Box::new(Value::Null))),
                None => Err(self.mismatch(format!(
                    "null is not a branch of the union ({})",
                    names()
                ))),
            },
            Json::Object(object) if object.len() == 1 => {
                let Some((tag, inner)) = object.iter().next() else {
                    return Err(self.mismatch("empty union object".to_owned()));
                };
                let full = branches
                    .iter()
                    .position(|b| branch_name(b, namespace) == *tag);
                // Named types may also be tagged by their short name.
                let short = || {
                    branches.iter().position(|b| {
                        b.name().is_some_and(|n| n.name == *tag)
                    })
                };
                let Some(i) = full.or_else(short) else {
                    return Err(self.mismatch(format!(
                        "\"{tag}\" is not a branch of the union ({})",
                        names()
                    )));
                };
                self.path.push(Step::Field(tag.clone()));
                let value = self.value(inner, &branches[i], namespace, true)?;
                self.path.pop();
                Ok(Value::Union(i as u32, Box::new(value)))
            }
            other => Err(self.mismatch(format!(
                "expected a union value: null or an object naming one branch ({}), e.g. {{\"{}\": …}}; found {}",
                names(),
                branches
                    .iter()
                    .find(|b| !matches!(b, Schema::Null))
                    .map(|b| branch_name(b, namespace))
                    .unwrap_or_else(|| "null".to_owned()),
                kind(other)
            ))),
        }
    }

    /// `bytes`/`fixed` in JSON encoding: a string whose code points are the byte values.
    fn code_points(&self, json: &Json) -> Result<Vec<u8>, FormatError> {
        let Json::String(text) = json else {
            return Err(self.expected("a string of code points 0-255 (bytes)", json));
        };
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| {
                self.mismatch(
                    "bytes are a string of code points U+0000 to U+00FF, one per byte".to_owned(),
                )
            })
    }
}

/// A float or double in JSON encoding: a number, or one of the non-finite spellings.
fn number(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Decodes Avro binary encoding straight into JSON-encoding text, checking every length and
/// count against the bytes left (see the module doc for why not apache-avro's decoder).
struct Decoder<'b, 's> {
    input: &'b [u8],
    names: &'s HashMap<Name, Schema>,
    /// Array and map items still allowed (see [`ZERO_SIZE_ITEM_ALLOWANCE`]).
    items_left: usize,
    out: Vec<u8>,
}

impl<'b, 's> Decoder<'b, 's> {
    fn value(
        &mut self,
        schema: &'s Schema,
        namespace: &Namespace,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        match schema {
            Schema::Ref { name } => {
                let (named, inner_namespace) = resolve(self.names, name, namespace)
                    .ok_or_else(|| format!("unknown type {name}"))?;
                self.value(named, &inner_namespace, depth + 1)
            }
            Schema::Null => {
                self.out.extend_from_slice(b"null");
                Ok(())
            }
            Schema::Boolean => match self.take(1)? {
                [0] => self.raw(b"false"),
                [1] => self.raw(b"true"),
                [other] => Err(format!("invalid boolean byte {other}")),
                _ => Err("truncated boolean".to_owned()),
            },
            Schema::Int => {
                let n = self.long()?;
                let n = i32::try_from(n).map_err(|_| format!("int {n} out of range"))?;
                self.json(&n)
            }
            Schema::Long => {
                let n = self.long()?;
                self.json(&n)
            }
            Schema::Float => {
                let bytes: [u8; 4] = self
                    .take(4)?
                    .try_into()
                    .map_err(|_| "truncated float".to_owned())?;
                let n = f32::from_le_bytes(bytes);
                if n.is_finite() {
                    // serde_json writes an f32 in its shortest form: 0.1, not 0.10000000149.
                    self.json(&n)
                } else {
                    self.non_finite(f64::from(n))
                }
            }
            Schema::Double => {
                let bytes: [u8; 8] = self
                    .take(8)?
                    .try_into()
                    .map_err(|_| "truncated double".to_owned())?;
                let n = f64::from_le_bytes(bytes);
                if n.is_finite() {
                    self.json(&n)
                } else {
                    self.non_finite(n)
                }
            }
            Schema::Bytes => {
                let len = self.length()?;
                let bytes = self.take(len)?;
                self.code_points(bytes)
            }
            Schema::String => {
                let len = self.length()?;
                let bytes = self.take(len)?;
                let text =
                    std::str::from_utf8(bytes).map_err(|e| format!("string is not UTF-8: {e}"))?;
                self.json(text)
            }
            Schema::Fixed(FixedSchema { size, .. }) => {
                let bytes = self.take(*size)?;
                self.code_points(bytes)
            }
            Schema::Enum(EnumSchema { symbols, .. }) => {
                let index = self.long()?;
                let symbol = usize::try_from(index)
                    .ok()
                    .and_then(|i| symbols.get(i))
                    .ok_or_else(|| format!("enum index {index} out of range"))?;
                self.json(symbol)
            }
            Schema::Union(union) => {
                let index = self.long()?;
                let branch = usize::try_from(index)
                    .ok()
                    .and_then(|i| union.variants().get(i))
                    .ok_or_else(|| format!("union index {index} out of range"))?;
                if matches!(branch, Schema::Null) {
                    return self.raw(b"null");
                }
                self.out.push(b'{');
                self.json(branch_name(branch, namespace).as_str())?;
                self.out.push(b':');
                self.value(branch, namespace, depth + 1)?;
                self.raw(b"}")
            }
            Schema::Array(ArraySchema { items, .. }) => {
                self.out.push(b'[');
                let mut first = true;
                while let Some(count) = self.block_count()? {
                    for _ in 0..count {
                        if !first {
                            self.out.push(b',');
                        }
                        first = false;
                        self.value(items, namespace, depth + 1)?;
                    }
                }
                self.raw(b"]")
            }
            Schema::Map(MapSchema { types, .. }) => {
                self.out.push(b'{');
                let mut first = true;
                while let Some(count) = self.block_count()? {
                    for _ in 0..count {
                        if !first {
                            self.out.push(b',');
                        }
                        first = false;
                        self.value(&Schema::String, namespace, depth + 1)?;
                        self.out.push(b':');
                        self.value(types, namespace, depth + 1)?;
                    }
                }
                self.raw(b"}")
            }
            Schema::Record(record) => {
                let inner_namespace = record.name.fully_qualified_name(namespace).namespace;
                self.out.push(b'{');
                for (i, field) in record.fields.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.json(field.name.as_str())?;
                    self.out.push(b':');
                    self.value(&field.schema, &inner_namespace, depth + 1)?;
                }
                self.raw(b"}")
            }
            other => Err(format!(
                "schema type {:?} is not supported",
                SchemaKind::from(other)
            )),
        }
    }

    fn raw(&mut self, text: &[u8]) -> Result<(), String> {
        self.out.extend_from_slice(text);
        Ok(())
    }

    fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), String> {
        serde_json::to_writer(&mut self.out, value).map_err(|e| e.to_string())
    }

    fn non_finite(&mut self, n: f64) -> Result<(), String> {
        let text = if n.is_nan() {
            "NaN"
        } else if n > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        };
        self.json(text)
    }

    fn code_points(&mut self, bytes: &[u8]) -> Result<(), String> {
        let text: String = bytes.iter().map(|&b| char::from(b)).collect();
        self.json(text.as_str())
    }

    fn take(&mut self, len: usize) -> Result<&'b [u8], String> {
        if len > self.input.len() {
            return Err(format!("needs {len} bytes, only {} left", self.input.len()));
        }
        let (taken, rest) = self.input.split_at(len);
        self.input = rest;
        Ok(taken)
    }

    /// A zigzag varint long, at most 10 bytes.
    fn long(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let [byte, rest @ ..] = self.input else {
                return Err("truncated integer".to_owned());
            };
            self.input = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err("integer longer than 10 bytes".to_owned())
    }

    /// A byte or string length: non-negative, and no more than the bytes left.
    fn length(&mut self) -> Result<usize, String> {
        let len = self.long()?;
        usize::try_from(len)
            .ok()
            .filter(|len| *len <= self.input.len())
            .ok_or_else(|| format!("length {len} invalid with {} bytes left", self.input.len()))
    }

    /// The item count of the next array or map block, `None` at the end. A negative count is
    /// followed by the block's size in bytes, which is not needed.
    fn block_count(&mut self) -> Result<Option<usize>, String> {
        let count = self.long()?;
        if count == 0 {
            return Ok(None);
        }
        if count < 0 {
            self.long()?;
        }
        let count = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
        if count > self.items_left {
            return Err(format!(
                "block of {count} items is more than the datum can hold"
            ));
        }
        self.items_left -= count;
        Ok(Some(count))
    }
}

/// Parsed schemas by their exact text, so a producer sending the same schema with every request
/// parses it once. Bounded in entries and in total schema text; when full, the least recently
/// used entry goes. Shared by all HTTP workers.
#[derive(Debug)]
pub struct AvroSchemaCache {
    max_entries: usize,
    max_text_bytes: usize,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    entries: HashMap<Box<str>, CacheEntry>,
    /// Total length of the cached schema texts.
    text_bytes: usize,
    /// Incremented on every lookup; entries remember when they were last used.
    clock: u64,
}

#[derive(Debug)]
struct CacheEntry {
    schema: Arc<AvroSchema>,
    last_used: u64,
}

impl Default for AvroSchemaCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_ENTRIES, Self::DEFAULT_MAX_TEXT_BYTES)
    }
}

impl AvroSchemaCache {
    pub const DEFAULT_MAX_ENTRIES: usize = 1024;
    pub const DEFAULT_MAX_TEXT_BYTES: usize = 16 * 1024 * 1024;

    /// A cache holding at most `max_entries` schemas whose texts total at most
    /// `max_text_bytes`. A longer text than that is parsed on every use, never cached.
    pub fn new(max_entries: usize, max_text_bytes: usize) -> Self {
        Self {
            max_entries,
            max_text_bytes,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// The parsed schema for `text`, parsing it if it is not cached. Parsing happens outside the
    /// lock; two workers missing at once both parse, and the first insert wins.
    pub fn get_or_parse(&self, text: &str) -> Result<Arc<AvroSchema>, FormatSpecError> {
        {
            let mut state = self.lock();
            state.clock += 1;
            let now = state.clock;
            if let Some(entry) = state.entries.get_mut(text) {
                entry.last_used = now;
                return Ok(Arc::clone(&entry.schema));
            }
        }
        let schema = Arc::new(AvroSchema::parse(text)?);
        if self.max_entries == 0 || text.len() > self.max_text_bytes {
            return Ok(schema);
        }
        let mut state = self.lock();
        while !state.entries.is_empty()
            && (state.entries.len() >= self.max_entries
                || state.text_bytes + text.len() > self.max_text_bytes)
        {
            state.evict_least_recently_used();
        }
        let now = state.clock;
        match state.entries.entry(text.into()) {
            Entry::Occupied(existing) => Ok(Arc::clone(&existing.get().schema)),
            Entry::Vacant(slot) => {
                slot.insert(CacheEntry {
                    schema: Arc::clone(&schema),
                    last_used: now,
                });
                state.text_bytes += text.len();
                Ok(schema)
            }
        }
    }

    /// Number of cached schemas.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // The state stays consistent even if a holder panicked: every update is one map call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CacheState {
    /// O(entries), run only when inserting into a full cache: misses are rare next to hits.
    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(text, _)| text.clone());
        if let Some(text) = oldest {
            self.entries.remove(&text);
            self.text_bytes = self.text_bytes.saturating_sub(text.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{raw, Payload, RecordFormat};
    use super::*;

    const ORDER: &str = r#"{"type": "record", "name": "Order", "namespace": "com.acme", "fields": [
        {"name": "id", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": null},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "int"}},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 2}},
        {"name": "address", "type": ["null", {"type": "record", "name": "Address",
            "fields": [{"name": "city", "type": "string"}]}]},
        {"name": "previous", "type": ["null", "Status"], "default": null},
        {"name": "raw", "type": "bytes", "default": "\u00ff"}
    ]}"#;

    const ORDER_DATUM: &str = r#"{"id": 7, "note": {"string": "hi"}, "tags": ["a", "b"],
        "attrs": {"x": 1}, "status": "PAID", "hash": "\u0001\u0002",
        "address": {"com.acme.Address": {"city": "Oslo"}}, "previous": {"Status": "NEW"}}"#;

    const NODE: &str = r#"{"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "int"},
        {"name": "next", "type": ["null", "Node"], "default": null}]}"#;

    fn schema(text: &str) -> AvroSchema {
        match AvroSchema::parse(text) {
            Ok(schema) => schema,
            Err(e) => panic!("{e}"),
        }
    }

    fn encode(schema_text: &str, datum: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        schema(schema_text)
            .serialize(&raw(datum), &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn decode(schema_text: &str, bytes: &[u8]) -> Result<Json, String> {
        let rendered = schema(schema_text)
            .render(bytes)
            .map_err(|e| e.to_string())?;
        serde_json::from_str(rendered.get()).map_err(|e| e.to_string())
    }

    fn json(text: &str) -> Json {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn names_the_library_would_panic_on_are_refused() {
        for schema in [
            r#"{"type":"record","name":":","fields":[]}"#,
            r#"{"type":"record","name":"r","fields":[{"name":"a","type":{"type":"fixed","name":"x y","size":1}}]}"#,
            r#"{"type":"record","name":"r","aliases":["-"],"fields":[]}"#,
            r#"{"type":"record","name":"r","namespace":"a..b","fields":[]}"#,
            r#"{"type":"enum","name":"9e","symbols":["A"]}"#,
            r#"{"type":":"}"#,
        ] {
            match AvroSchema::parse(schema) {
                Err(FormatSpecError::InvalidSchema(message)) => {
                    assert!(message.contains("not a valid Avro"), "{schema}: {message}")
                }
                other => panic!("{schema}: {:?}", other.map(|_| ())),
            }
        }
        // A default whose text looks like a bad name is only data.
        let ok = r#"{"type":"record","name":"ns.r","fields":[{"name":"p","type":{"type":"record","name":"P","fields":[{"name":"name","type":"string"}]},"default":{"name":"J. Doe"}}]}"#;
        assert!(AvroSchema::parse(ok).is_ok());
    }

    #[test]
    fn primitives_encode_as_the_spec_says() {
        let cases: [(&str, &str, &[u8]); 10] = [
            ("\"int\"", "3", &[0x06]),
            ("\"int\"", "-2147483648", &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            ("\"long\"", "-1", &[0x01]),
            ("\"long\"", "64", &[0x80, 0x01]),
            ("\"boolean\"", "true", &[0x01]),
            ("\"string\"", "\"foo\"", &[0x06, b'f', b'o', b'o']),
            ("\"bytes\"", "\"\\u00ff\\u0000\"", &[0x04, 0xff, 0x00]),
            ("\"double\"", "1.5", &[0, 0, 0, 0, 0, 0, 0xf8, 0x3f]),
            ("\"float\"", "1.5", &[0, 0, 0xc0, 0x3f]),
            ("[\"null\", \"int\"]", "{\"int\": 3}", &[0x02, 0x06]),
        ];
        for (schema_text, datum, bytes) in cases {
            assert_eq!(
                encode(schema_text, datum).as_deref(),
                Ok(bytes),
                "{schema_text} {datum}"
            );
            assert_eq!(
                decode(schema_text, bytes),
                Ok(json(datum)),
                "{schema_text} {datum}"
            );
        }
    }

    #[test]
    fn a_record_with_every_complex_type_round_trips() {
        let bytes = encode(ORDER, ORDER_DATUM).expect("encodes");
        let expected: &[u8] = &[
            0x0e, // id 7
            0x02, 0x04, b'h', b'i', // note: branch 1, "hi"
            0x04, 0x02, b'a', 0x02, b'b', 0x00, // tags: 2 items, end
            0x02, 0x02, b'x', 0x02, 0x00, // attrs: 1 entry x=1, end
            0x02, // status PAID
            0x01, 0x02, // hash
            0x02, 0x08, b'O', b's', b'l', b'o', // address: branch 1, city
            0x02, 0x00, // previous: branch 1, NEW
            0x02, 0xff, // raw: the default
        ];
        assert_eq!(bytes, expected);
        // The bytes are what apache-avro itself reads.
        let parsed = schema(ORDER);
        let read = apache_avro::from_avro_datum(parsed.schema(), &mut &bytes[..], None);
        assert!(read.is_ok(), "{read:?}");

        let rendered = decode(ORDER, &bytes).expect("renders");
        let mut expected = json(ORDER_DATUM);
        // Named branches render by full name; defaults are filled in.
        expected["previous"] = json(r#"{"com.acme.Status": "NEW"}"#);
        expected["raw"] = json("\"\u{ff}\"");
        assert_eq!(rendered, expected);
    }

    #[test]
    fn record_fields_render_in_schema_order() {
        let bytes = encode(ORDER, ORDER_DATUM).expect("encodes");
        let rendered = schema(ORDER).render(&bytes).expect("renders");
        assert!(
            rendered
                .get()
                .starts_with(r#"{"id":7,"note":{"string":"hi"},"tags":["a","b"]"#),
            "{}",
            rendered.get()
        );
    }

    #[test]
    fn recursive_types_and_defaults_work() {
        let bytes = encode(NODE, r#"{"value": 1, "next": {"Node": {"value": 2}}}"#);
        assert_eq!(bytes.as_deref(), Ok(&[0x02, 0x02, 0x04, 0x00][..]));
        assert_eq!(
            decode(NODE, &[0x02, 0x02, 0x04, 0x00]),
            Ok(json(
                r#"{"value": 1, "next": {"Node": {"value": 2, "next": null}}}"#
            ))
        );
        let first_branch_default = r#"{"type": "record", "name": "R", "fields": [
            {"name": "opt", "type": ["string", "null"], "default": "x"}]}"#;
        assert_eq!(
            encode(first_branch_default, "{}").as_deref(),
            Ok(&[0x00, 0x02, b'x'][..])
        );
    }

    #[test]
    fn logical_types_take_their_underlying_type() {
        let timestamp = r#"{"type": "long", "logicalType": "timestamp-millis"}"#;
        assert_eq!(
            decode(
                timestamp,
                &encode(timestamp, "1732838400000").expect("encodes")
            ),
            Ok(json("1732838400000"))
        );
        let uuid = r#"["null", {"type": "string", "logicalType": "uuid"}]"#;
        let datum = r#"{"string": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}"#;
        assert_eq!(
            decode(uuid, &encode(uuid, datum).expect("encodes")),
            Ok(json(datum))
        );
        let decimal = r#"{"type": "record", "name": "Price", "fields": [{"name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}}]}"#;
        let datum = r#"{"amount": "\u0004\u00d2"}"#;
        assert_eq!(
            encode(decimal, datum).as_deref(),
            Ok(&[0x04, 0x04, 0xd2][..])
        );
        assert_eq!(decode(decimal, &[0x04, 0x04, 0xd2]), Ok(json(datum)));
    }

    #[test]
    fn floats_render_in_their_shortest_form_and_non_finite_ones_as_strings() {
        assert_eq!(
            schema("\"float\"")
                .render(&encode("\"float\"", "0.1").expect("encodes"))
                .map(|r| r.get().to_owned())
                .ok()
                .as_deref(),
            Some("0.1")
        );
        for special in ["\"NaN\"", "\"Infinity\"", "\"-Infinity\""] {
            for kind in ["\"float\"", "\"double\""] {
                let bytes = encode(kind, special).expect("encodes");
                assert_eq!(decode(kind, &bytes), Ok(json(special)));
            }
        }
        let err = encode("\"float\"", "1e300").err().unwrap_or_default();
        assert_eq!(
            err,
            "does not match the Avro schema: 1e300 is out of range for a float"
        );
    }

    #[test]
    fn mismatches_name_the_path_inside_the_datum() {
        let with = |field: &str, value: &str| {
            let mut datum = json(ORDER_DATUM);
            datum[field] = json(value);
            encode(ORDER, &datum.to_string()).err().unwrap_or_default()
        };
        let prefix = "does not match the Avro schema: ";
        let cases = [
            (with("id", "\"7\""), "id: expected a long (64-bit integer), found a string"),
            (with("id", "null"), "id: expected a long (64-bit integer), found null"),
            (with("id", "7.5"), "id: expected a long (64-bit integer), found a number with a fraction or exponent"),
            (with("tags", "[\"a\", 2]"), "tags[1]: expected a string, found an integer"),
            (with("attrs", "{\"x\": 2147483648}"), "attrs.x: expected an int (32-bit integer), found an integer"),
            (with("note", "\"hi\""), "note: expected a union value: null or an object naming one branch (null, string), e.g. {\"string\": …}; found a string"),
            (with("note", "{\"int\": 3}"), "note: \"int\" is not a branch of the union (null, string)"),
            (with("note", "{\"string\": 3}"), "note.string: expected a string, found an integer"),
            (with("status", "\"LOST\""), "status: \"LOST\" is not one of the enum's symbols: NEW, PAID"),
            (with("hash", "\"abc\""), "hash: expected 2 bytes (fixed), found 3"),
            (with("raw", "\"\u{100}\""), "raw: bytes are a string of code points U+0000 to U+00FF, one per byte"),
            (with("address", "{\"com.acme.Address\": {}}"), "address.com.acme.Address: missing field \"city\" (it has no default)"),
            (with("extra", "1"), "unknown field \"extra\" for record com.acme.Order"),
        ];
        for (found, want) in cases {
            assert_eq!(found, format!("{prefix}{want}"));
        }
        let missing = encode(ORDER, r#"{"id": 1}"#).err().unwrap_or_default();
        assert_eq!(
            missing,
            format!("{prefix}missing field \"tags\" (it has no default)")
        );
        let no_null = encode(
            "{\"type\": \"array\", \"items\": [\"int\", \"string\"]}",
            "[null]",
        );
        assert_eq!(
            no_null.err().unwrap_or_default(),
            format!("{prefix}[0]: null is not a branch of the union (int, string)")
        );
    }

    #[test]
    fn a_top_level_null_is_a_kafka_null_even_for_nullable_schemas() {
        let cache = AvroSchemaCache::default();
        let format = RecordFormat::new(
            super::super::Format::Avro,
            Some("[\"int\", \"string\"]"),
            &cache,
        )
        .expect("valid");
        let mut out = Vec::new();
        assert_eq!(format.serialize(&raw("null"), &mut out), Ok(Payload::Null));
        let err = format
            .serialize(&raw("{\"null\": null}"), &mut out)
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("does not match the Avro schema: \"null\" is not a branch of the union (int, string)"));
    }

    #[test]
    fn invalid_schemas_are_refused() {
        for (text, want) in [
            ("not json", "invalid Avro schema: not JSON: "),
            ("{\"type\": \"nope\"}", "invalid Avro schema: "),
            ("[\"int\", \"int\"]", "invalid Avro schema: "),
            ("{\"type\": \"record\", \"name\": \"R\", \"fields\": [{\"name\": \"a\", \"type\": \"Missing\"}]}", "invalid Avro schema: "),
        ] {
            let err = AvroSchema::parse(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.starts_with(want), "{text}: {err}");
        }
    }

    #[test]
    fn bytes_that_do_not_fit_the_schema_do_not_render() {
        let cases: [(&str, &[u8], &str); 8] = [
            (
                "\"int\"",
                &[0x06, 0x00],
                "1 bytes left over after the datum",
            ),
            (
                "\"string\"",
                &[0x06, b'a'],
                "length 3 invalid with 1 bytes left",
            ),
            ("\"string\"", &[0x02, 0xff], "string is not UTF-8"),
            ("\"long\"", &[0x80], "truncated integer"),
            ("\"boolean\"", &[0x02], "invalid boolean byte 2"),
            ("[\"null\", \"int\"]", &[0x04], "union index 2 out of range"),
            (
                "{\"type\": \"enum\", \"name\": \"E\", \"symbols\": [\"A\"]}",
                &[0x02],
                "enum index 1 out of range",
            ),
            (
                "\"int\"",
                &[0x80, 0x80, 0x80, 0x80, 0x10],
                "int 2147483648 out of range",
            ),
        ];
        for (schema_text, bytes, want) in cases {
            let err = decode(schema_text, bytes).err().unwrap_or_default();
            assert!(
                err.starts_with("does not decode with the Avro schema: ") && err.contains(want),
                "{schema_text} {bytes:?}: {err}"
            );
        }
    }

    #[test]
    fn a_huge_declared_item_count_is_refused_without_allocating() {
        // 2^40 nulls declared in six bytes.
        let mut bytes = Vec::new();
        let mut n: u64 = (1u64 << 40) << 1;
        while n >= 0x80 {
            bytes.push((n as u8) | 0x80);
            n >>= 7;
        }
        bytes.push(n as u8);
        bytes.push(0);
        let err = decode("{\"type\": \"array\", \"items\": \"null\"}", &bytes)
            .err()
            .unwrap_or_default();
        assert!(err.contains("more than the datum can hold"), "{err}");
        // A modest number of zero-size items is fine, in blocks with byte sizes (negative counts).
        let rendered = decode(
            "{\"type\": \"array\", \"items\": \"null\"}",
            &[0x05, 0x00, 0x00],
        );
        assert_eq!(rendered, Ok(json("[null, null, null]")));
    }

    #[test]
    fn nesting_past_the_limit_does_not_render() {
        let mut bytes = Vec::new();
        for _ in 0..200 {
            bytes.extend_from_slice(&[0x00, 0x02]);
        }
        bytes.extend_from_slice(&[0x00, 0x00]);
        let err = decode(NODE, &bytes).err().unwrap_or_default();
        assert!(err.contains("nested deeper than 128 levels"), "{err}");
    }

    #[test]
    fn the_cache_parses_each_schema_text_once() {
        let cache = AvroSchemaCache::default();
        let first = cache.get_or_parse(ORDER).expect("parses");
        let again = cache.get_or_parse(ORDER).expect("cached");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(cache.len(), 1);
        assert!(cache.get_or_parse("{").is_err());
        assert_eq!(cache.len(), 1, "failures are not cached");
    }

    #[test]
    fn the_cache_evicts_the_least_recently_used_schema() {
        let cache = AvroSchemaCache::new(2, 1 << 20);
        let a = cache.get_or_parse("\"int\"").expect("parses");
        let b = cache.get_or_parse("\"long\"").expect("parses");
        let _ = cache.get_or_parse("\"int\"").expect("cached");
        let _ = cache.get_or_parse("\"string\"").expect("parses");
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(
            &a,
            &cache.get_or_parse("\"int\"").expect("still cached")
        ));
        assert!(!Arc::ptr_eq(
            &b,
            &cache.get_or_parse("\"long\"").expect("parsed again")
        ));

        let small = AvroSchemaCache::new(10, 7);
        let _ = small.get_or_parse("\"string\"").expect("parses");
        assert!(
            small.is_empty(),
            "a text longer than the byte budget is not cached"
        );
        let _ = small.get_or_parse("\"int\"").expect("parses");
        let _ = small.get_or_parse("\"long\"").expect("parses");
        assert_eq!(small.len(), 1, "the byte budget holds one of these");
    }
}
