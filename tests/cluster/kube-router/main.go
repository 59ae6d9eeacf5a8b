// Command sandlot-kube-router is kube-router's network policy controller and
// nothing else: the local cluster's NetworkPolicy engine. It enforces policies
// with iptables and ipsets on the node it runs on; routing, the service proxy,
// the load-balancer allocator and CNI configuration stay off (the bridge CNI and
// kube-proxy do that work here), so the flags that would turn them on are refused.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cloudnativelabs/kube-router/v2/pkg/cmd"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// policyOnly are the defaults that make kube-router a policy controller only.
// A caller may repeat them, not change them.
var policyOnly = map[string]string{
	"run-firewall":      "true",
	"run-router":        "false",
	"run-service-proxy": "false",
	"run-loadbalancer":  "false",
	"enable-cni":        "false",
	"health-port":       "0",
	"metrics-port":      "0",
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "sandlot-kube-router: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	config := options.NewKubeRouterConfig()
	flags := pflag.NewFlagSet("sandlot-kube-router", pflag.ContinueOnError)
	config.AddFlags(flags)
	for name, value := range policyOnly {
		if err := flags.Set(name, value); err != nil {
			return fmt.Errorf("setting default --%s=%s: %w", name, value, err)
		}
	}
	if err := flags.Parse(args); err != nil {
		return err
	}
	if config.HelpRequested {
		flags.PrintDefaults()
		return nil
	}
	for name, want := range policyOnly {
		if got := flags.Lookup(name).Value.String(); got != want {
			return fmt.Errorf("--%s=%s: this build runs the network policy controller only (--%s=%s)",
				name, got, name, want)
		}
	}
	if config.CleanupConfig {
		// Upstream's cleanup builds empty controllers and removes nothing of the
		// policy controller's; the local cluster's teardown removes its chains and sets.
		return fmt.Errorf("--cleanup-config is not supported here")
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root to run iptables and ipset")
	}

	// kube-router logs through klog; its verbosity flag is kube-router's --v.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	if err := klogFlags.Set("logtostderr", "true"); err != nil {
		return err
	}
	if err := klogFlags.Set("v", config.VLevel); err != nil {
		return fmt.Errorf("--v=%s: %w", config.VLevel, err)
	}

	router, err := cmd.NewKubeRouterDefault(config)
	if err != nil {
		return err
	}
	// Runs until SIGINT or SIGTERM.
	return router.Run()
}
