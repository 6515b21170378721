package main

// istiod per cluster, outside the cluster, against that cluster's kube-apiserver: CA on (it
// writes istio-ca-root-cert into namespaces), injection and webhooks off.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

type istiodPorts struct {
	http, grpc, secureGRPC, monitoring, https string
	ctrlz                                     int
}

func startIstiod(ctx context.Context, bin string, c *cluster) error {
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	addr := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	c.istiodPorts = istiodPorts{
		http: addr(ports[0]), grpc: addr(ports[1]), secureGRPC: addr(ports[2]),
		monitoring: addr(ports[3]), https: addr(ports[4]), ctrlz: ports[5],
	}
	kubeconfig := filepath.Join(c.dir, "istiod.kubeconfig")
	if err := clientcmd.WriteToFile(*kubeconfigFor([]*cluster{c}), kubeconfig); err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(c.dir, "istiod.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "discovery",
		"--kubeconfig", kubeconfig,
		"--meshConfig", filepath.Join(c.dir, "no-mesh-file"), // absent: read ConfigMap istio
		"--networksConfig", filepath.Join(c.dir, "no-networks-file"),
		"--httpAddr", c.istiodPorts.http,
		"--grpcAddr", c.istiodPorts.grpc,
		"--secureGRPCAddr", c.istiodPorts.secureGRPC,
		"--monitoringAddr", c.istiodPorts.monitoring,
		"--httpsAddr", c.istiodPorts.https,
		"--ctrlz_port", fmt.Sprint(c.istiodPorts.ctrlz),
		"--ctrlz_address", "127.0.0.1",
		"--clusterID", c.name,
		"--domain", "cluster.local",
		"--shutdownDuration", "1s",
		"--log_output_level", "default:warn",
	)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(),
		"POD_NAMESPACE=istio-system",
		"POD_NAME=istiod-"+c.name,
		"CLUSTER_ID="+c.name,
		"REVISION=default",
		"INJECTION_WEBHOOK_CONFIG_NAME=",
		"VALIDATION_WEBHOOK_CONFIG_NAME=",
		"PILOT_ENABLE_ANALYSIS=false",
		"ISTIOD_CUSTOM_HOST=istiod.istio-system.svc",
		"KUBECONFIG="+kubeconfig,
	)
	cmd.Stdout = log
	cmd.Stderr = log
	c.istiod, err = startProc("istiod "+c.name, cmd)
	return err
}

func waitIstiod(ctx context.Context, c *cluster) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(120 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+c.istiodPorts.http+"/ready", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.istiod.exited() || time.Now().After(deadline) {
			return fmt.Errorf("not ready; see %s", filepath.Join(c.dir, "istiod.log"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
