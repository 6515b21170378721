//! Tables that look like `kubectl get`: upper-case headers, no borders, three spaces between columns.

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};

/// Renders rows under headers the way kubectl's tabwriter does.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(headers.iter().map(|h| h.to_ascii_uppercase()));
    for row in rows {
        t.add_row(row.clone());
    }
    for col in t.column_iter_mut() {
        col.set_padding((0, 3));
        col.set_cell_alignment(CellAlignment::Left);
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_like_kubectl_get() {
        let text = render(
            &["name", "age"],
            &[
                vec!["productcatalog".into(), "5m".into()],
                vec!["a".into(), "10d".into()],
            ],
        );
        assert_eq!(
            text,
            "NAME             AGE\nproductcatalog   5m\na                10d\n"
        );
    }
}
