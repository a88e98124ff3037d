// Command pause is the sandbox ("infra") container of every pod on the test node: it holds
// the pod's namespaces open, reaps zombies (it is PID 1 when the pod shares its PID namespace)
// and exits cleanly on SIGTERM or SIGINT. It replaces registry.k8s.io/pause, which cannot be
// pulled here.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("ferrum-pause 1.0")
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "pause: %v, exiting\n", sig)
			os.Exit(0)
		}
	}
}

// reap collects every exited child so none stays a zombie; SIGCHLD signals coalesce, so one
// signal may stand for several exits.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
