//! Proxies, through a real one (Debian's tinyproxy, with basic auth) started by the test
//! (issue "Hardening" item 3): `HTTPS_PROXY` is used for a server reached by a routable address
//! but never for a loopback one, `NO_PROXY` exempts a host, a kubeconfig `proxy-url` is used
//! always, and no proxy credential appears in any output.

use crate::common;

use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Run;
use kube_emu::Emu;

const USER: &str = "meshuser";
const PASSWORD: &str = "Pr0xyS3cret";

/// tinyproxy in the foreground on a free loopback port, with basic auth and a connect log.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Proxy {
    fn start(dir: &Path) -> Proxy {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = dir.join("tinyproxy.log");
        let conf = dir.join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nLogLevel Connect\nLogFile \"{}\"\nPidFile \"{}\"\nBasicAuth {USER} {PASSWORD}\n",
                log.display(),
                dir.join("tinyproxy.pid").display()
            ),
        )
        .expect("write tinyproxy.conf");
        let child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy is required (.ci/run installs it: apt-get install tinyproxy)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tinyproxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Proxy { child, port, log }
    }

    fn url(&self, password: &str) -> String {
        format!("http://{USER}:{password}@127.0.0.1:{}", self.port)
    }

    /// How many CONNECTs to `target` the proxy has logged.
    fn connects_to(&self, target: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("CONNECT") && l.contains(target))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address of this machine that is not loopback: where a sidecar-less client would reach a
/// remote API server. UDP connect sends nothing; it only picks the route's source address.
fn routable_ip() -> IpAddr {
    let s = UdpSocket::bind("0.0.0.0:0").expect("udp");
    s.connect("203.0.113.1:9").expect("a default route");
    let ip = s.local_addr().expect("addr").ip();
    assert!(!ip.is_loopback(), "{ip}");
    ip
}

/// The emulator's kubeconfig with its server at `host` (TLS still checked, against the name
/// the certificate carries) and, when given, a `proxy-url`.
fn kubeconfig(emu: &Emu, dir: &Path, host: &str, proxy_url: Option<&str>) -> PathBuf {
    let text = std::fs::read_to_string(emu.kubeconfig()).expect("kubeconfig");
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    let cluster = &mut kc["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().expect("server").to_string();
    cluster["server"] = server.replace("127.0.0.1", host).into();
    cluster["tls-server-name"] = "localhost".into();
    if let Some(p) = proxy_url {
        cluster["proxy-url"] = p.into();
    }
    let path = dir.join(format!("kubeconfig-{host}-{}", proxy_url.is_some()));
    std::fs::write(&path, serde_yaml::to_string(&kc).expect("yaml")).expect("write");
    path
}

fn list(kubeconfig: &Path, env: &[(&str, String)]) -> Run {
    list_with(kubeconfig, env, &[])
}

fn list_with(kubeconfig: &Path, env: &[(&str, String)], args: &[&str]) -> Run {
    let mut cmd = Command::new(common::bin("register"));
    cmd.arg("--list")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run").into()
}

#[test]
fn proxies_follow_kubectls_rules_and_never_show_their_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(dir.path());
    let emu = Emu::builder()
        .bind(IpAddr::from([0, 0, 0, 0]))
        .start()
        .expect("kube-emu");
    let port = emu
        .url("cluster1")
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let ip = routable_ip().to_string();
    let remote = kubeconfig(&emu, dir.path(), &ip, None);
    let at_remote = format!("{ip}:{port}");
    let good = proxy.url(PASSWORD);

    // A routable server goes through HTTPS_PROXY.
    let run = list(&remote, &[("HTTPS_PROXY", good.clone())]).ok();
    assert_eq!(proxy.connects_to(&at_remote), 1, "{}", run.stderr);
    // NO_PROXY exempts it, by IP or by CIDR.
    for no in [ip.clone(), format!("{ip}/32"), "*".to_string()] {
        list(&remote, &[("HTTPS_PROXY", good.clone()), ("NO_PROXY", no)]).ok();
    }
    assert_eq!(proxy.connects_to(&at_remote), 1);
    // Never for a loopback server, whatever the environment says.
    let local = kubeconfig(&emu, dir.path(), "127.0.0.1", None);
    list(&local, &[("HTTPS_PROXY", good.clone())]).ok();
    let at_local = format!("127.0.0.1:{port}");
    assert_eq!(proxy.connects_to(&at_local), 0);
    // A kubeconfig proxy-url is used always, loopback or not, NO_PROXY or not.
    let pinned = kubeconfig(&emu, dir.path(), "127.0.0.1", Some(&good));
    list(&pinned, &[("NO_PROXY", "*".to_string())]).ok();
    assert_eq!(proxy.connects_to(&at_local), 1);
    // Through the real kubectl too.
    let out = Command::new("kubectl")
        .args(["mesh-register", "--list"])
        .env(
            "PATH",
            format!(
                "{}:{}",
                common::bin_dir().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("KUBECONFIG", &remote)
        .env("HTTPS_PROXY", &good)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(Stdio::null())
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(proxy.connects_to(&at_remote), 2);
    // `-v 8` builds its own client stack: it goes through the proxy too, and names the proxy
    // without its password.
    let run = list_with(&remote, &[("HTTPS_PROXY", good.clone())], &["-v", "8"]).ok();
    assert_eq!(proxy.connects_to(&at_remote), 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("proxy=\"http://***@127.0.0.1:"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(PASSWORD), "{}", run.stderr);

    // Failures: a refused password, a proxy that is not there, a malformed URL. Each is one
    // error line, and no credential of a proxy URL is in it.
    let wrong = proxy.url("WrongPassw0rd");
    let gone = format!("http://{USER}:{PASSWORD}@127.0.0.1:1");
    for (kc, env, code) in [
        (&remote, vec![("HTTPS_PROXY", wrong.clone())], 1),
        (&remote, vec![("HTTPS_PROXY", gone.clone())], 1),
        (
            &remote,
            vec![("HTTPS_PROXY", format!("ftp://{USER}:{PASSWORD}@proxy:21"))],
            2,
        ),
        (&kubeconfig(&emu, dir.path(), &ip, Some(&wrong)), vec![], 1),
    ] {
        let run = list(kc, &env).expect_code(code);
        let all = format!("{}{}", run.stdout, run.stderr);
        for secret in [PASSWORD, "WrongPassw0rd"] {
            assert!(!all.contains(secret), "{env:?}: {all}");
        }
        assert_eq!(run.stderr.lines().count(), 1, "{env:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    }
}
