package main

// The ServiceAccount token controller of kube-controller-manager ("serviceaccount-token"), run
// in this process against each cluster: it fills `kubernetes.io/service-account-token` Secrets
// with a legacy token signed by the cluster's service-account key and the cluster CA, as a real
// cluster does, so that `istioctl create-remote-secret` and `mesh-link --mode remote-secret`
// get a token from such a Secret on the real tier. No other controller runs.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	keyutil "k8s.io/client-go/util/keyutil"
	"k8s.io/klog/v2"
	sacontroller "k8s.io/kubernetes/pkg/controller/serviceaccount"
	"k8s.io/kubernetes/pkg/serviceaccount"
)

func startTokensController(ctx context.Context, c *cluster) error {
	key, err := keyutil.PrivateKeyFromFile(filepath.Join(c.dir, "sa.key"))
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	gen, err := serviceaccount.JWTTokenGenerator(serviceaccount.LegacyIssuer, key)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(c.restConfig())
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(c.dir, "ca.crt"))
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	tc, err := sacontroller.NewTokensController(klog.Background(), factory.Core().V1().ServiceAccounts(), factory.Core().V1().Secrets(), client,
		sacontroller.TokensControllerOptions{TokenGenerator: gen, RootCA: ca})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	go tc.Run(ctx, 1)
	return nil
}
