package main

// The child process: one embedded etcd and one kube-apiserver, until SIGTERM.

import (
	"flag"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const serveCommand = "__serve"

func serve(args []string) error {
	fs := flag.NewFlagSet(serveCommand, flag.ContinueOnError)
	dir := fs.String("dir", "", "cluster directory")
	securePort := fs.Int("secure-port", 0, "kube-apiserver port")
	clientPort := fs.Int("etcd-client-port", 0, "etcd client port")
	peerPort := fs.Int("etcd-peer-port", 0, "etcd peer port")
	if err := fs.Parse(args); err != nil {
		return err
	}

	cfg := embed.NewConfig()
	cfg.Name = "etcd"
	cfg.Dir = filepath.Join(*dir, "etcd")
	// Test data only: losing it on a crash is fine, and fsync dominates apply latency.
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *clientPort)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *peerPort)}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd did not become ready")
	}

	cmd := app.NewAPIServerCommand()
	cmd.SetArgs([]string{
		"--etcd-servers=" + client.String(),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", *securePort),
		"--cert-dir=" + filepath.Join(*dir, "cert"),
		"--tls-cert-file=" + filepath.Join(*dir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(*dir, "serving.key"),
		"--client-ca-file=" + filepath.Join(*dir, "ca.crt"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(*dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(*dir, "sa.key"),
		"--token-auth-file=" + filepath.Join(*dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		// No controller-manager runs, so nothing would create the default ServiceAccount
		// that this admission plugin insists on; scenarios create what they use.
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	})
	return cmd.Execute()
}
