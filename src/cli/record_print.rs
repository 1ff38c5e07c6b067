//! How a record prints, the same for every command that shows one (`resolve`, `get`,
//! `update`, `top-level resolve`): its values as text, or with `--json` the JSON record that
//! `register --file` and `import` read.

use anyhow::anyhow;

use super::connect::Client;
use idnode::api::grpc::pb;
use idnode::dataset::RecordJson;
use idnode::record::Value;

fn value_from_pb(v: pb::Value) -> anyhow::Result<Value> {
    idnode::api::grpc::convert::value_from(v).map_err(|e| anyhow!("{e}"))
}

fn print_values(identifier: &str, values: &[Value]) {
    println!("{identifier}");
    if values.is_empty() {
        println!("  (no values visible)");
    }
    for v in values {
        let data = match v.data_str() {
            Some(s) if v.format != idnode::record::Format::Binary => s.to_owned(),
            _ => format!("<{} bytes>", v.data.len()),
        };
        let private = if v.permissions.public_read {
            ""
        } else {
            "  [non-public]"
        };
        println!("  {:>5}  {:<22} {data}{private}", v.index, v.value_type);
    }
}

/// Prints a record's values, or with `--json` its JSON record; a value that does not
/// convert from the wire fails the command.
pub(crate) fn show_record(
    c: &Client,
    identifier: &str,
    values: Vec<pb::Value>,
) -> anyhow::Result<()> {
    let values: Vec<Value> = values
        .into_iter()
        .map(value_from_pb)
        .collect::<Result<_, _>>()?;
    if c.json() {
        c.print_json(&RecordJson::from_record(identifier, &values))
    } else {
        print_values(identifier, &values);
        Ok(())
    }
}
