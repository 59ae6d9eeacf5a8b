// Command sandlot-kube is every server of the local cluster in one binary:
// it runs the component named by the name it was invoked under (a symlink)
// or by its first argument, so the Kubernetes code is compiled and linked once.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zones, as the upstream apiserver binary has

	"github.com/fsnotify/fsnotify"
	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var components = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kube-proxy":              proxy.NewProxyCommand,
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
}

func main() {
	name := filepath.Base(os.Args[0])
	if name == "sandlot-kube" && len(os.Args) > 1 {
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	switch name {
	case "etcd":
		etcdmain.Main(os.Args)
		return
	case "kubectl":
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
		return
	}
	if name == "kube-controller-manager" {
		if err := openHostPathVolumes(); err != nil {
			fmt.Fprintf(os.Stderr, "sandlot-kube: watching %s: %v\n", hostPathVolumeRoot, err)
			os.Exit(1)
		}
	}
	newCommand, ok := components[name]
	if !ok {
		names := []string{"etcd", "kubectl"}
		for n := range components {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "sandlot-kube: unknown component %q; one of %v\n", name, names)
		os.Exit(2)
	}
	os.Exit(cli.Run(newCommand()))
}

// hostPathVolumeRoot is where the controller-manager's host-path provisioner
// makes one directory per volume, root-owned with mode 0750.
const hostPathVolumeRoot = "/tmp/hostpath_pv"

// openHostPathVolumes makes each volume directory the provisioner creates
// writable by every uid, as a cloud disk given an fsGroup would be, so that
// sandboxes running as non-root can write to their volumes. The change lands
// when the directory appears, long before a pod can mount it.
func openHostPathVolumes() error {
	if err := os.MkdirAll(hostPathVolumeRoot, 0o755); err != nil {
		return err
	}
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := watcher.Add(hostPathVolumeRoot); err != nil {
		return err
	}
	open := func(path string) {
		if info, err := os.Stat(path); err == nil && info.IsDir() {
			if err := os.Chmod(path, 0o777); err != nil {
				fmt.Fprintf(os.Stderr, "sandlot-kube: chmod %s: %v\n", path, err)
			}
		}
	}
	entries, err := os.ReadDir(hostPathVolumeRoot)
	if err != nil {
		return err
	}
	for _, entry := range entries {
		open(filepath.Join(hostPathVolumeRoot, entry.Name()))
	}
	go func() {
		for {
			select {
			case event := <-watcher.Events:
				if event.Has(fsnotify.Create) {
					open(event.Name)
				}
			case err := <-watcher.Errors:
				fmt.Fprintf(os.Stderr, "sandlot-kube: watching %s: %v\n", hostPathVolumeRoot, err)
			}
		}
	}()
	return nil
}
