package main

// The --bootstrap mode: xds-dump as the proxyless gRPC application on a VM. A gRPC app with
// GRPC_XDS_BOOTSTRAP pointed at the file pilot-agent writes reads the node (ID and metadata,
// which the agent builds from cluster.env) and the agent's local xDS socket from it, and opens
// one ADS stream there; the agent carries it to istiod over mTLS with its workload certificate.
// That stream is what makes istiod auto-register the VM, so --hold keeps it open until stdin
// closes.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"istio.io/istio/pkg/istio-agent/grpcxds"
)

const listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"

type appOut struct {
	Node      string   `json:"node"`
	Server    string   `json:"server"`
	Listeners []string `json:"listeners"`
}

// runApp asks for the listener of `target` (the service the app calls, host:port) as the
// bootstrap's node, prints the node and the listeners istiod sent, and with hold keeps the
// stream open (ACKing pushes) until stdin reaches EOF.
func runApp(bootstrap, root, target string, timeout time.Duration, hold bool) error {
	b, err := grpcxds.LoadBootstrap(bootstrap)
	if err != nil {
		return fmt.Errorf("bootstrap %s: %w", bootstrap, err)
	}
	if len(b.XDSServers) == 0 || b.Node == nil {
		return fmt.Errorf("bootstrap %s: no xds_servers or node", bootstrap)
	}
	uri := b.XDSServers[0].ServerURI
	path, ok := strings.CutPrefix(uri, "unix://")
	if !ok {
		return fmt.Errorf("bootstrap %s: server %q is not the agent's unix socket", bootstrap, uri)
	}
	// The agent writes the socket's path as seen from the VM's /; --root is where that / is.
	socket := filepath.Join(root, path)
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connect %s: %w", socket, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", socket, err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: b.Node, TypeUrl: listenerType, ResourceNames: []string{target}}); err != nil {
		return fmt.Errorf("send to %s: %w", socket, err)
	}
	type recv struct {
		resp *discovery.DiscoveryResponse
		err  error
	}
	got := make(chan recv, 1)
	go func() {
		for {
			r, err := stream.Recv()
			got <- recv{r, err}
			if err != nil {
				return
			}
		}
	}()
	ack := func(r *discovery.DiscoveryResponse) error {
		return stream.Send(&discovery.DiscoveryRequest{
			TypeUrl: r.TypeUrl, ResourceNames: []string{target},
			VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce,
		})
	}
	var first *discovery.DiscoveryResponse
	select {
	case r := <-got:
		if r.err != nil {
			return fmt.Errorf("receive from %s: %w", socket, r.err)
		}
		first = r.resp
	case <-time.After(timeout):
		return fmt.Errorf("no response through %s within %s", socket, timeout)
	}
	if err := ack(first); err != nil {
		return err
	}
	out := appOut{Node: b.Node.Id, Server: uri, Listeners: []string{}}
	for _, res := range first.Resources {
		l := &listener.Listener{}
		if err := proto.Unmarshal(res.GetValue(), l); err != nil {
			return fmt.Errorf("listener from %s: %w", socket, err)
		}
		out.Listeners = append(out.Listeners, l.Name)
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
	if !hold {
		return nil
	}
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	for {
		select {
		case <-eof:
			return nil
		case r := <-got:
			if r.err != nil {
				return fmt.Errorf("stream through %s ended: %w", socket, r.err)
			}
			if err := ack(r.resp); err != nil {
				return err
			}
		}
	}
}
