//! Printing objects (`-o yaml|json|name`) and kubectl-style result lines.

use std::io::Write;

use anyhow::Result;
use serde_json::{json, Value};

use crate::api::{Applied, Outcome};
use crate::cli::{DryRun, OutputFormat};
use crate::objects::{self, Kind};

/// Prints objects in the chosen format, ready for `kubectl apply -f -`.
pub fn print_objects(out: &mut dyn Write, format: OutputFormat, objs: &[Value]) -> Result<()> {
    match format {
        OutputFormat::Yaml => {
            for (i, obj) in objs.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                out.write_all(serde_yaml::to_string(obj)?.as_bytes())?;
            }
        }
        OutputFormat::Json => {
            let doc = if objs.len() == 1 {
                objs[0].clone()
            } else {
                list(objs)
            };
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)?;
        }
        OutputFormat::Name => {
            for obj in objs {
                writeln!(out, "{}", type_and_name(obj))?;
            }
        }
    }
    Ok(())
}

/// A `v1` `List` of the objects, as kubectl prints several.
fn list(objs: &[Value]) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": objs, "metadata": {}})
}

/// Each context's objects, in the order of `--context`: YAML under a `# context: NAME` comment
/// (still one multi-document stream), JSON as one `List` per context, names as
/// `CONTEXT: type/name`.
pub fn print_per_context(
    out: &mut dyn Write,
    format: OutputFormat,
    per: &[(String, Vec<Value>)],
) -> Result<()> {
    for (i, (context, objs)) in per.iter().enumerate() {
        match format {
            OutputFormat::Yaml => {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                writeln!(out, "# context: {context}")?;
                print_objects(out, format, objs)?;
            }
            OutputFormat::Json => {
                serde_json::to_writer_pretty(&mut *out, &list(objs))?;
                writeln!(out)?;
            }
            OutputFormat::Name => {
                for obj in objs {
                    writeln!(out, "{context}: {}", type_and_name(obj))?;
                }
            }
        }
    }
    Ok(())
}

/// `service/x` or `serviceentry.networking.istio.io/x`.
pub fn type_and_name(obj: &Value) -> String {
    let ty = Kind::of(obj).map_or_else(
        || {
            obj["kind"]
                .as_str()
                .unwrap_or("object")
                .to_ascii_lowercase()
        },
        |k| k.type_name(),
    );
    format!("{ty}/{}", objects::name(obj))
}

/// One result line as kubectl prints it: `service/x created (dry run)`.
pub fn result_line(obj: &Value, outcome: Outcome, dry_run: DryRun) -> String {
    let suffix = match dry_run {
        DryRun::None => "",
        DryRun::Client => " (dry run)",
        DryRun::Server => " (server dry run)",
    };
    format!("{} {}{suffix}", type_and_name(obj), outcome.word())
}

/// After writes: the objects in the `-o` format, else one result line each.
pub fn print_results(
    out: &mut dyn Write,
    format: Option<OutputFormat>,
    dry_run: DryRun,
    results: &[Applied],
) -> Result<()> {
    match format {
        Some(f) => {
            let objs: Vec<Value> = results
                .iter()
                .filter(|r| r.outcome != Outcome::Deleted)
                .map(|r| objects::for_display(r.object.clone()))
                .collect();
            print_objects(out, f, &objs)
        }
        None => {
            for r in results {
                writeln!(out, "{}", result_line(&r.object, r.outcome, dry_run))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{core, istio, new_object};

    fn objs() -> Vec<Value> {
        vec![
            new_object(&core("Service"), Some("default"), "a"),
            new_object(&istio("ServiceEntry", "v1"), Some("default"), "b"),
        ]
    }

    #[test]
    fn yaml_is_multi_document() {
        let mut buf = Vec::new();
        print_objects(&mut buf, OutputFormat::Yaml, &objs()).expect("print");
        let text = String::from_utf8(buf).expect("utf8");
        assert_eq!(text.matches("\n---\n").count(), 1);
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).expect("doc"))
            .collect();
        assert_eq!(docs, objs());
    }

    use serde::Deserialize as _;

    #[test]
    fn json_is_a_list_and_name_is_type_slash_name() {
        let mut buf = Vec::new();
        print_objects(&mut buf, OutputFormat::Json, &objs()).expect("print");
        let v: Value = serde_json::from_slice(&buf).expect("json");
        assert_eq!(v["kind"], "List");
        assert_eq!(v["items"].as_array().map(Vec::len), Some(2));
        let mut buf = Vec::new();
        print_objects(&mut buf, OutputFormat::Name, &objs()).expect("print");
        assert_eq!(
            String::from_utf8(buf).expect("utf8"),
            "service/a\nserviceentry.networking.istio.io/b\n"
        );
    }

    #[test]
    fn per_context_output_names_each_context() {
        let per = vec![("c1".to_string(), objs()), ("c2".to_string(), objs())];
        let mut buf = Vec::new();
        print_per_context(&mut buf, OutputFormat::Yaml, &per).expect("print");
        let text = String::from_utf8(buf).expect("utf8");
        assert!(
            text.starts_with("# context: c1\napiVersion: v1\n"),
            "{text}"
        );
        assert!(
            text.contains("---\n# context: c2\napiVersion: v1\n"),
            "{text}"
        );
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).expect("doc"))
            .collect();
        assert_eq!(docs.len(), 4);
        let mut buf = Vec::new();
        print_per_context(&mut buf, OutputFormat::Json, &per).expect("print");
        let lists: Vec<Value> = serde_json::Deserializer::from_slice(&buf)
            .into_iter::<Value>()
            .map(|v| v.expect("json"))
            .collect();
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[1]["items"].as_array().map(Vec::len), Some(2));
        let mut buf = Vec::new();
        print_per_context(&mut buf, OutputFormat::Name, &per[..1]).expect("print");
        assert_eq!(
            String::from_utf8(buf).expect("utf8"),
            "c1: service/a\nc1: serviceentry.networking.istio.io/b\n"
        );
    }

    #[test]
    fn result_lines_read_like_kubectl() {
        let o = &objs()[1];
        assert_eq!(
            result_line(o, Outcome::Unchanged, DryRun::None),
            "serviceentry.networking.istio.io/b unchanged"
        );
        assert_eq!(
            result_line(o, Outcome::Created, DryRun::Server),
            "serviceentry.networking.istio.io/b created (server dry run)"
        );
    }
}
