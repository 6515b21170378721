// Command mesh-testcluster starts real Kubernetes API servers (each with an embedded etcd) and,
// on request, an istiod per cluster, for kubectl-mesh's real-cluster test tier.
//
// Every cluster runs in a child process of its own, because kube-apiserver installs process-wide
// signal handlers and metrics registries: two in one process would share them.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == serveCommand {
		if err := serve(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "mesh-testcluster serve:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mesh-testcluster:", err)
		os.Exit(1)
	}
}

type options struct {
	kubeconfig string
	clusters   []string
	istiod     bool
	istiodBin  string
	crds       string
	workDir    string
	keep       bool
	noCRDs     bool
}

func parseFlags() (options, error) {
	var o options
	var clusters string
	exeDir := "."
	if exe, err := os.Executable(); err == nil {
		exeDir = filepath.Dir(exe)
	}
	fs := flag.NewFlagSet("mesh-testcluster", flag.ContinueOnError)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "where to write the kubeconfig (one context per cluster)")
	fs.StringVar(&clusters, "clusters", "cluster1", "comma-separated cluster names")
	fs.BoolVar(&o.istiod, "istiod", false, "start an istiod per cluster")
	fs.StringVar(&o.istiodBin, "istiod-bin", filepath.Join(exeDir, "pilot-discovery"), "pilot-discovery binary")
	fs.StringVar(&o.crds, "crds", filepath.Join(exeDir, "..", "share", "istio-crds.yaml"), "Istio CRDs to apply")
	fs.StringVar(&o.workDir, "work-dir", "", "state directory (default: a new temporary one, removed at exit)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory at exit")
	fs.BoolVar(&o.noCRDs, "no-crds", false, "leave Istio's CRDs out (a cluster without Istio)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return o, err
	}
	if o.kubeconfig == "" {
		return o, errors.New("--kubeconfig PATH is required")
	}
	for _, c := range strings.Split(clusters, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if !validName(c) {
			return o, fmt.Errorf("--clusters: %q is not a DNS label", c)
		}
		o.clusters = append(o.clusters, c)
	}
	if len(o.clusters) == 0 {
		return o, errors.New("--clusters: give at least one name")
	}
	return o, nil
}

func validName(s string) bool {
	if len(s) > 63 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(s)-1
		if !ok {
			return false
		}
	}
	return true
}

// cluster is one running API server, as the parent sees it.
type cluster struct {
	name        string
	dir         string
	port        int
	adminToken  string
	viewerToken string
	caPEM       []byte
	child       *proc
	istiod      *proc
	istiodPorts istiodPorts
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	for _, f := range []string{o.crds} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("Istio CRDs: %w (run tests/realcluster/build)", err)
		}
	}
	if o.istiod {
		if _, err := os.Stat(o.istiodBin); err != nil {
			return fmt.Errorf("istiod: %w (run tests/realcluster/build)", err)
		}
	}
	work := o.workDir
	if work == "" {
		work, err = os.MkdirTemp("", "mesh-testcluster-")
		if err != nil {
			return err
		}
	} else if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(work)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()

	var clusters []*cluster
	defer func() { shutdown(clusters) }()
	for _, name := range o.clusters {
		c, err := startCluster(ctx, work, name)
		if c != nil {
			clusters = append(clusters, c)
		}
		if err != nil {
			return fmt.Errorf("cluster %s: %w", name, err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(clusters))
	for i, c := range clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			crds := o.crds
			if o.noCRDs {
				crds = ""
			}
			errs[i] = waitAndSetup(ctx, c, crds)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, c := range clusters {
		if err := startTokensController(ctx, c); err != nil {
			return fmt.Errorf("cluster %s: token controller: %w", c.name, err)
		}
	}
	if err := writeKubeconfig(o.kubeconfig, clusters); err != nil {
		return err
	}
	if o.istiod {
		for _, c := range clusters {
			if err := startIstiod(ctx, o.istiodBin, c); err != nil {
				return fmt.Errorf("istiod %s: %w", c.name, err)
			}
		}
		for _, c := range clusters {
			if err := waitIstiod(ctx, c); err != nil {
				return fmt.Errorf("istiod %s: %w", c.name, err)
			}
		}
		for _, c := range clusters {
			fmt.Printf("istiod %s %s %s %s\n", c.name, c.istiodPorts.grpc, c.istiodPorts.http, c.istiodPorts.secureGRPC)
		}
	}
	fmt.Printf("ready %s\n", o.kubeconfig)

	// Stop on stdin EOF, so a test that dies takes its clusters with it; but never read a
	// terminal, where a background job reading stdin is stopped by the shell.
	eof := make(chan struct{})
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		go func() {
			r := bufio.NewReader(os.Stdin)
			for {
				if _, err := r.ReadByte(); err != nil {
					close(eof)
					return
				}
			}
		}()
	}
	dead := make(chan string, len(clusters)*2)
	for _, c := range clusters {
		for _, p := range []*proc{c.child, c.istiod} {
			if p != nil {
				go func() { <-p.done; dead <- p.what }()
			}
		}
	}
	select {
	case <-ctx.Done():
	case <-eof:
	case who := <-dead:
		return fmt.Errorf("%s exited; its log is in %s", who, work)
	}
	return nil
}

// proc is a child process with one waiter, so that shutdown and the exit watch never race.
type proc struct {
	what string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(what string, cmd *exec.Cmd) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{what: what, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func startCluster(ctx context.Context, work, name string) (*cluster, error) {
	dir := filepath.Join(work, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &cluster{name: name, dir: dir, adminToken: randomToken(), viewerToken: randomToken()}
	var err error
	if c.caPEM, err = writePKI(dir); err != nil {
		return nil, err
	}
	tokens := fmt.Sprintf("%s,admin,admin-uid,\"system:masters\"\n%s,restricted,restricted-uid,\n", c.adminToken, c.viewerToken)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(filepath.Join(dir, "apiserver.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	log.Close()
	if err := launch(c); err != nil {
		return nil, err
	}
	return c, nil
}

// launch starts the child that serves c (etcd and kube-apiserver) on fresh ports.
func launch(c *cluster) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	c.port = ports[0]
	log, err := os.OpenFile(filepath.Join(c.dir, "apiserver.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, serveCommand,
		"--dir", c.dir,
		"--secure-port", fmt.Sprint(ports[0]),
		"--etcd-client-port", fmt.Sprint(ports[1]),
		"--etcd-peer-port", fmt.Sprint(ports[2]))
	cmd.Stdout = log
	cmd.Stderr = log
	c.child, err = startProc("kube-apiserver "+c.name, cmd)
	return err
}

// logTail is the end of a cluster's log, for an error that outlives the work directory.
func logTail(c *cluster, lines int) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "apiserver.log"))
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func shutdown(clusters []*cluster) {
	var wg sync.WaitGroup
	for _, c := range clusters {
		for _, p := range []*proc{c.istiod, c.child} {
			if p == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-p.done:
				case <-time.After(15 * time.Second):
					_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
					<-p.done
				}
			}()
		}
	}
	wg.Wait()
}

func waitAndSetup(ctx context.Context, c *cluster, crds string) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(120 * time.Second)
	relaunches := 0
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", c.url()+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.child.exited() && relaunches < 3 && strings.Contains(logTail(c, 50), "address already in use") {
			// A port picked free was taken before the child bound it (other servers start
			// beside us): pick new ones.
			relaunches++
			// etcd keeps its member's peer URL in its data: start it afresh on the new ports.
			_ = os.RemoveAll(filepath.Join(c.dir, "etcd"))
			if err := launch(c); err != nil {
				return err
			}
			continue
		}
		if c.child.exited() || time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver did not become ready; the end of %s:\n%s", filepath.Join(c.dir, "apiserver.log"), logTail(c, 15))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return setup(ctx, c, crds)
}

func (c *cluster) url() string { return fmt.Sprintf("https://127.0.0.1:%d", c.port) }

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
