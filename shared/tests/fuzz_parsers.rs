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
        prop_assert_eq!(IpList::from_str(&ip.to_string()).map(|l| l.0), Ok(vec![ip]));
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
