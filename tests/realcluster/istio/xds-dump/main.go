// Command xds-dump connects to istiod as a sidecar would, waits for the first full set of
// clusters, endpoints, listeners and routes, and prints what Envoy would receive as one JSON
// document that kubectl-mesh's real-tier tests assert on. With --bootstrap it is instead the
// proxyless gRPC application beside a pilot-agent (app.go).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	pstruct "google.golang.org/protobuf/types/known/structpb"

	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/adsc"
	"istio.io/istio/pkg/log"
)

type dump struct {
	Clusters []clusterOut `json:"clusters"`
	Routes   []routeOut   `json:"routes"`
}

type clusterOut struct {
	Name      string        `json:"name"`
	Type      string        `json:"type"`
	Endpoints []endpointOut `json:"endpoints"`
}

type endpointOut struct {
	Address  string `json:"address"`
	Port     uint32 `json:"port"`
	Weight   uint32 `json:"weight"`
	Locality string `json:"locality,omitempty"`
	// Cluster is the cluster ID istiod gives the endpoint: its workload's cluster, or for an
	// east-west gateway standing in for a remote network's workloads, the gateway's cluster.
	Cluster string `json:"cluster,omitempty"`
	// TLSMode is "istio" when the sidecar would send Istio mTLS to the endpoint.
	TLSMode string `json:"tlsMode,omitempty"`
}

type routeOut struct {
	Config      string        `json:"config"`
	VirtualHost string        `json:"virtualHost"`
	Domains     []string      `json:"domains"`
	Name        string        `json:"name,omitempty"`
	Cluster     string        `json:"cluster,omitempty"`
	Weighted    []weightedOut `json:"weightedClusters,omitempty"`
}

type weightedOut struct {
	Name   string `json:"name"`
	Weight uint32 `json:"weight"`
}

func main() {
	addr := flag.String("istiod", "", "istiod plaintext xDS address (host:port)")
	ns := flag.String("namespace", "default", "the sidecar's namespace")
	ip := flag.String("ip", "10.10.0.1", "the sidecar's IP")
	labels := flag.String("labels", "", "the sidecar's labels, k=v,...")
	network := flag.String("network", "", "the sidecar's network")
	clusterID := flag.String("cluster-id", "", "the sidecar's cluster ID")
	nodeType := flag.String("type", "sidecar", "the proxy's type: sidecar, or router for a gateway (an east-west gateway gets the AUTO_PASSTHROUGH clusters of its Gateway)")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for xDS")
	bootstrap := flag.String("bootstrap", "", "connect as the proxyless gRPC app of the pilot-agent that wrote this gRPC xDS bootstrap")
	root := flag.String("root", "/", "with --bootstrap: the directory the VM's / is laid out in")
	target := flag.String("target", "", "with --bootstrap: the service the app calls, host:port (its listener is asked for)")
	hold := flag.Bool("hold", false, "with --bootstrap: keep the stream open until stdin closes")
	flag.Parse()
	// stdout is the JSON document; Istio's own logging goes to stderr, warnings and worse only.
	lo := log.DefaultOptions()
	lo.OutputPaths = []string{"stderr"}
	lo.SetDefaultOutputLevel(log.OverrideScopeName, log.WarnLevel)
	_ = log.Configure(lo)
	if *bootstrap != "" {
		if *target == "" {
			fmt.Fprintln(os.Stderr, "xds-dump: --bootstrap needs --target HOST:PORT")
			os.Exit(2)
		}
		if err := runApp(*bootstrap, *root, *target, *timeout, *hold); err != nil {
			fmt.Fprintln(os.Stderr, "xds-dump:", err)
			os.Exit(1)
		}
		return
	}
	if *addr == "" {
		fmt.Fprintln(os.Stderr, "xds-dump: --istiod ADDR (or --bootstrap FILE) is required")
		os.Exit(2)
	}
	if *nodeType != string(model.SidecarProxy) && *nodeType != string(model.Router) {
		fmt.Fprintf(os.Stderr, "xds-dump: --type %q: want sidecar or router\n", *nodeType)
		os.Exit(2)
	}
	d, err := run(*addr, *ns, *ip, *labels, *network, *clusterID, model.NodeType(*nodeType), *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xds-dump:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(d)
}

func meta(ns, ip, labels, network, clusterID string) (*pstruct.Struct, error) {
	lbl := map[string]any{}
	for _, kv := range strings.Split(labels, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--labels: %q is not k=v", kv)
		}
		lbl[k] = v
	}
	m := map[string]any{
		"NAMESPACE":    ns,
		"LABELS":       lbl,
		"INSTANCE_IPS": ip,
		"GENERATOR":    "",
	}
	if network != "" {
		m["NETWORK"] = network
	}
	if clusterID != "" {
		m["CLUSTER_ID"] = clusterID
	}
	return pstruct.NewStruct(m)
}

func run(addr, ns, ip, labels, network, clusterID string, nodeType model.NodeType, timeout time.Duration) (*dump, error) {
	md, err := meta(ns, ip, labels, network, clusterID)
	if err != nil {
		return nil, err
	}
	delete(md.Fields, "GENERATOR")
	c, err := adsc.New(addr, &adsc.ADSConfig{
		Config: adsc.Config{Namespace: ns, IP: ip, Workload: "xds-dump", Meta: md, NodeType: nodeType},
		InitialDiscoveryRequests: []*discovery.DiscoveryRequest{
			{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"},
			{TypeUrl: "type.googleapis.com/envoy.config.listener.v3.Listener"},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	defer c.Close()
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("stream %s: %w", addr, err)
	}
	deadline := time.Now().Add(timeout)
	want := []string{
		"type.googleapis.com/envoy.config.cluster.v3.Cluster",
		"type.googleapis.com/envoy.config.listener.v3.Listener",
	}
	if _, err := c.Wait(time.Until(deadline), want...); err != nil {
		return nil, err
	}
	// EDS follows CDS and RDS follows LDS; each comes only when something asks for it.
	var more []string
	if len(c.GetEdsClusters()) > 0 {
		more = append(more, "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment")
	}
	if len(c.GetHTTPListeners()) > 0 {
		more = append(more, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration")
	}
	if len(more) > 0 {
		if _, err := c.Wait(time.Until(deadline), more...); err != nil {
			return nil, err
		}
	}
	// Let the first push settle: EDS may arrive in more than one response.
	time.Sleep(300 * time.Millisecond)
	return render(c.GetClusters(), c.GetEdsClusters(), c.GetEndpoints(), c.GetRoutes()), nil
}

func render(clusters, eds map[string]*cluster.Cluster, cla map[string]*endpoint.ClusterLoadAssignment, routes map[string]*route.RouteConfiguration) *dump {
	d := &dump{Clusters: []clusterOut{}, Routes: []routeOut{}}
	add := func(name, typ string, la *endpoint.ClusterLoadAssignment) {
		co := clusterOut{Name: name, Type: typ, Endpoints: []endpointOut{}}
		if la != nil {
			for _, lle := range la.Endpoints {
				loc := ""
				if l := lle.GetLocality(); l != nil && (l.Region != "" || l.Zone != "" || l.SubZone != "") {
					loc = l.Region + "/" + l.Zone + "/" + l.SubZone
				}
				for _, lb := range lle.LbEndpoints {
					sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
					if sa == nil {
						continue
					}
					w := lb.GetLoadBalancingWeight().GetValue()
					if w == 0 {
						w = lle.GetLoadBalancingWeight().GetValue()
					}
					co.Endpoints = append(co.Endpoints, endpointOut{
						Address: sa.GetAddress(), Port: sa.GetPortValue(), Weight: w,
						Locality: loc, Cluster: clusterOf(lb.GetMetadata()), TLSMode: tlsModeOf(lb.GetMetadata()),
					})
				}
			}
		}
		sort.Slice(co.Endpoints, func(i, j int) bool {
			a, b := co.Endpoints[i], co.Endpoints[j]
			return a.Address < b.Address || a.Address == b.Address && a.Port < b.Port
		})
		d.Clusters = append(d.Clusters, co)
	}
	for name := range eds {
		add(name, "EDS", cla[name])
	}
	for name, c := range clusters {
		add(name, c.GetType().String(), c.GetLoadAssignment())
	}
	sort.Slice(d.Clusters, func(i, j int) bool { return d.Clusters[i].Name < d.Clusters[j].Name })
	for cfgName, rc := range routes {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				ro := routeOut{Config: cfgName, VirtualHost: vh.Name, Domains: vh.Domains, Name: r.Name}
				ra := r.GetRoute()
				if ra == nil {
					continue
				}
				if wc := ra.GetWeightedClusters(); wc != nil {
					for _, c := range wc.Clusters {
						ro.Weighted = append(ro.Weighted, weightedOut{Name: c.Name, Weight: c.GetWeight().GetValue()})
					}
				} else {
					ro.Cluster = ra.GetCluster()
				}
				d.Routes = append(d.Routes, ro)
			}
		}
	}
	sort.Slice(d.Routes, func(i, j int) bool {
		a, b := d.Routes[i], d.Routes[j]
		if a.Config != b.Config {
			return a.Config < b.Config
		}
		if a.VirtualHost != b.VirtualHost {
			return a.VirtualHost < b.VirtualHost
		}
		return a.Name < b.Name
	})
	return d
}

// clusterOf reads the cluster ID from the telemetry metadata istiod puts on every endpoint,
// istio.workload = "NAME;NAMESPACE;CANONICAL_SERVICE;REVISION;CLUSTER_ID". (Istio no longer tags
// endpoints with their network: a remote network's endpoints show as its gateway's address.)
func clusterOf(m *core.Metadata) string {
	w := m.GetFilterMetadata()["istio"].GetFields()["workload"].GetStringValue()
	if i := strings.LastIndex(w, ";"); i >= 0 {
		return w[i+1:]
	}
	return ""
}

// tlsModeOf reads the tlsMode istiod sets where the sidecar would originate Istio mTLS.
func tlsModeOf(m *core.Metadata) string {
	return m.GetFilterMetadata()["envoy.transport_socket_match"].GetFields()["tlsMode"].GetStringValue()
}
