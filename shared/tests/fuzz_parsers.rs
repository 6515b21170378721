//! Property-based fuzzing of every parser of user input: arbitrary strings never panic, and what
//! a parser accepts survives a round trip through its printed form. `PROPTEST_CASES` sets the
//! number of cases (CI runs the default 256 per property; see the README for longer runs).

use std::str::FromStr;

use mesh_shared::addr::IpList;
use mesh_shared::duration::HumanDuration;
use mesh_shared::names::{Annotation, Label};
use mesh_shared::ports::{self, PortSpec};
use proptest::prelude::*;

fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9:=,./_ -]{0,40}",
        "[0-9]{0,7}",
        "(grpc|http|tcp|https|redis|smtp|GRPC|http-web)[:=][0-9]{0,6}",
        "[0-9a-f:.]{0,45}",
    ]
}

proptest! {
    #[test]
    fn port_specs_never_panic_and_round_trip(s in junk()) {
        if let Ok(p) = PortSpec::from_str(&s) {
            prop_assert!(p.number >= 1);
            let again = PortSpec::from_str(&p.to_string());
            prop_assert_eq!(again, Ok(p));
        }
        let _ = ports::parse_list(&s);
    }

    #[test]
    fn valid_named_ports_are_accepted(name in "(http|http2|https|grpc|grpc-web|tcp|tls|mongo|mysql|redis)(-[a-z0-9]{1,8})?", port in 1u32..=65535) {
        let spec = format!("{name}:{port}");
        let p = PortSpec::from_str(&spec);
        prop_assert!(p.is_ok(), "refused: {:?}", p);
    }

    #[test]
    fn out_of_range_ports_are_refused(port in 65536u64..10_000_000) {
        let bare = port.to_string();
        let named = format!("grpc:{port}");
        prop_assert!(PortSpec::from_str(&bare).is_err());
        prop_assert!(PortSpec::from_str(&named).is_err());
    }

    #[test]
    fn ip_lists_never_panic_and_round_trip(s in junk()) {
        if let Ok(list) = IpList::from_str(&s) {
            prop_assert!(!list.0.is_empty());
            let printed: Vec<String> = list.0.iter().map(ToString::to_string).collect();
            prop_assert_eq!(IpList::from_str(&printed.join(",")), Ok(list));
        }
    }

    #[test]
    fn any_ip_is_accepted(ip in any::<std::net::IpAddr>()) {
        // An IPv4-mapped IPv6 address is the IPv4 address it maps.
        prop_assert_eq!(IpList::from_str(&ip.to_string()).map(|l| l.0), Ok(vec![ip.to_canonical()]));
    }

    #[test]
    fn labels_never_panic_and_round_trip(s in junk()) {
        if let Ok(Label(k, v)) = Label::from_str(&s) {
            let printed = format!("{k}={v}");
            prop_assert_eq!(Label::from_str(&printed), Ok(Label(k, v)));
        }
        let _ = Annotation::from_str(&s);
    }

    #[test]
    fn durations_never_panic_and_round_trip(s in prop_oneof![junk(), "([0-9]{1,4}(ms|s|m|h)){1,3}"]) {
        if let Ok(d) = HumanDuration::from_str(&s) {
            prop_assert_eq!(HumanDuration::from_str(&d.to_string()), Ok(d));
        }
    }
}

mod plugins {
    //! The parsers that live with their plugins: weights, CIDR pools, WorkloadGroup files, and
    //! the cluster.env writer's quoting.
    use std::process::Command;
    use std::str::FromStr;

    use mesh_shared::link::Pool;
    use mesh_shared::prom::parse_url;
    use mesh_shared::split::{Percent, Weights};
    use mesh_shared::vm::{bootstrap::shell_quote, group};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn weights_never_panic_and_round_trip(s in prop_oneof![
            any::<String>(),
            "[0-9/:=,a-z -]{0,30}",
            "([0-9]{1,3}/){1,4}[0-9]{1,3}",
            "([a-z0-9]{1,4}=[0-9]{1,3},){0,3}[a-z0-9]{1,4}=[0-9]{1,3}",
        ]) {
            if let Ok(w) = Weights::from_str(&s) {
                let printed = w.to_string();
                prop_assert_eq!(Weights::from_str(&printed), Ok(w));
            }
        }

        #[test]
        fn percentages_never_panic_and_print_close_to_what_was_typed(s in prop_oneof![
            any::<String>(),
            "[0-9.%eE+-]{0,12}",
            "[0-9]{1,3}(\\.[0-9]{1,6})?%",
        ]) {
            if let Ok(p) = Percent::from_str(&s) {
                prop_assert!((0.0..=1.0).contains(&p.0), "{} gave {}", s, p.0);
                let again = Percent::from_str(&p.to_string()).map(|q| q.0);
                prop_assert!(again.is_ok_and(|q| (q - p.0).abs() < 1e-5), "{} printed {}", s, p);
            }
        }

        #[test]
        fn prometheus_urls_never_panic_nor_echo_credentials(s in prop_oneof![
            any::<String>(),
            "(http|https|ftp)://([a-z]{1,5}:[a-z]{1,8}@)?[a-z0-9.:-]{0,20}(/[a-z]{0,5})?",
        ]) {
            match parse_url(&s) {
                Ok(u) => prop_assert!(matches!(u.scheme_str(), Some("http" | "https"))),
                Err(e) => prop_assert!(!s.contains('@') || !e.to_string().contains(&s)),
            }
        }

        #[test]
        fn ordered_weights_must_add_up_to_100(ws in proptest::collection::vec(0u32..=100, 1..6)) {
            let text = ws.iter().map(ToString::to_string).collect::<Vec<_>>().join("/");
            let sum: u32 = ws.iter().sum();
            let ok = Weights::from_str(&text).is_ok();
            if sum != 100 {
                prop_assert!(!ok, "{} accepted", text);
            } else if ws.len() >= 2 {
                prop_assert!(ok, "{} refused", text);
            }
        }

        #[test]
        fn pools_never_panic_and_round_trip(s in prop_oneof![
            any::<String>(),
            "[0-9./]{0,20}",
            "2[0-9]{2}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}/[0-9]{1,2}",
        ]) {
            if let Ok(p) = Pool::from_str(&s) {
                prop_assert!(p.capacity() >= 1);
                let printed = p.to_string();
                prop_assert_eq!(Pool::from_str(&printed).map(|q| q.to_string()), Ok(printed));
            }
        }

        #[test]
        fn workload_group_files_never_panic(text in prop_oneof![
            any::<String>(),
            "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: \\{name: [a-z]{1,8}\\}\nspec:\n  template:\n    ports: \\{[a-z]{1,5}: [0-9]{1,6}\\}\n",
            "kind: WorkloadGroup\nspec: [\\[\\]{}:a-z0-9 ,\n]{0,60}",
        ]) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("wg.yaml");
            std::fs::write(&path, &text).expect("write");
            let _ = group::from_file(&path, "default");
        }
    }

    fn sh_round_trip(values: &[String]) -> Vec<String> {
        // Source a cluster.env-like file in a POSIX shell and print each value back, NUL-separated.
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join("cluster.env");
        let mut text = String::new();
        for (i, v) in values.iter().enumerate() {
            text.push_str(&format!("V{i}={}\n", shell_quote(v)));
        }
        std::fs::write(&env, text).expect("write");
        let mut script = format!(". '{}'", env.display());
        for i in 0..values.len() {
            script.push_str(&format!("; printf '%s\\0' \"$V{i}\""));
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut parts: Vec<String> = text.split('\0').map(String::from).collect();
        parts.pop();
        parts
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever a value holds (quotes, `$`, backticks, backslashes, newlines), a POSIX shell
        /// reading cluster.env gets it back unchanged.
        #[test]
        fn cluster_env_values_survive_a_posix_shell(values in proptest::collection::vec("[^\u{0}]{0,20}", 1..8)) {
            prop_assert_eq!(sh_round_trip(&values), values);
        }
    }

    #[test]
    fn cluster_env_tricky_values() {
        let values: Vec<String> = [
            "",
            "it's",
            "$HOME",
            "`id`",
            "a\\b",
            "\\",
            "w",
            "x\ny",
            "'",
            "\"",
            "*",
            "a b",
            "--",
            "=",
            "\\w@%+=:,./-",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(sh_round_trip(&values), values);
    }
}
