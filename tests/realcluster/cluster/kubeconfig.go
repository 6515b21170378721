package main

// The kubeconfig the tests use: one context per cluster (admin), plus a restricted user per
// cluster without a context, for the 401/403 tests.

import (
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func kubeconfigFor(clusters []*cluster) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	for _, c := range clusters {
		cfg.Clusters[c.name] = &clientcmdapi.Cluster{Server: c.url(), CertificateAuthorityData: c.caPEM}
		cfg.AuthInfos[c.name] = &clientcmdapi.AuthInfo{Token: c.adminToken}
		cfg.AuthInfos[c.name+"-restricted"] = &clientcmdapi.AuthInfo{Token: c.viewerToken}
		cfg.Contexts[c.name] = &clientcmdapi.Context{Cluster: c.name, AuthInfo: c.name, Namespace: "default"}
	}
	if len(clusters) > 0 {
		cfg.CurrentContext = clusters[0].name
	}
	return cfg
}

func writeKubeconfig(path string, clusters []*cluster) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*kubeconfigFor(clusters), path)
}
