//! A price file: one row a line, `channel,prefix,price[,category]`. Blank lines, lines
//! starting with `#` and a header line (first field `channel`) are skipped. The fields hold
//! no commas or quotes, so no CSV crate is needed for them.

use std::path::Path;

use super::{Category, Micros, Price, PriceRow};

/// The rows of `file`, each with the key path its errors name (`{key} line N`); every
/// mistake is pushed to `errors` as `{key}: ...`.
pub(super) fn read(key: &str, file: &Path, errors: &mut Vec<String>) -> Vec<(String, PriceRow)> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("{key}: cannot read {}: {e}", file.display()));
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if line.is_empty() || line.starts_with('#') || fields[0] == "channel" {
            continue;
        }
        let at = format!("{key} ({} line {})", file.display(), n + 1);
        match row(&fields) {
            Ok(r) => rows.push((at, r)),
            Err(e) => errors.push(format!("{at}: {e}")),
        }
    }
    rows
}

fn row(fields: &[&str]) -> Result<PriceRow, String> {
    let (channel, prefix, price, category) = match fields {
        [c, p, price] => (c, p, price, None),
        [c, p, price, cat] => (c, p, price, Some(cat).filter(|c| !c.is_empty())),
        _ => return Err(format!("want channel,prefix,price[,category], got {} fields", fields.len())),
    };
    let price = Micros::parse(price).map_err(|e| format!("price: {e}"))?;
    let category =
        category.map(|c| Category::parse(c).ok_or_else(|| format!("category: not one of marketing, utility, authentication, service: {c:?}"))).transpose()?;
    Ok(PriceRow { channel: (*channel).to_owned(), prefix: (*prefix).to_owned(), price: Price(price), category })
}
