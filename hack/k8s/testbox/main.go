// Command testbox is the workload of the node smoke test (smoke.sh): one static binary, so its
// image is FROM scratch and needs no base image from a registry.
//
//	testbox serve [-addr :8080] [-data DIR]   HTTP: / answers the hostname, /boots the lines of
//	                                          DIR/boots (one line appended per start), /healthz ok
//	testbox get [-timeout 60s] [-cacert F] URL
//	                                          GET until 200 (DNS and Service checks), print body
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testbox serve|get ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "get":
		err = get(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbox:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "listen address")
	data := fs.String("data", "", "directory for the boots file (a volume)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	bootsPath := ""
	if *data != "" {
		bootsPath = filepath.Join(*data, "boots")
		f, err := os.OpenFile(bootsPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("open %s: %w", bootsPath, err)
		}
		_, werr := fmt.Fprintf(f, "%s %s\n", host, time.Now().UTC().Format(time.RFC3339Nano))
		cerr := f.Close()
		if werr != nil || cerr != nil {
			return fmt.Errorf("write %s: %w", bootsPath, errors.Join(werr, cerr))
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, host)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/boots", func(w http.ResponseWriter, _ *http.Request) {
		if bootsPath == "" {
			http.Error(w, "no -data directory", http.StatusNotFound)
			return
		}
		b, err := os.ReadFile(bootsPath)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(b)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	fmt.Printf("serving %s on %s\n", host, *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func get(args []string) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 60*time.Second, "give up after")
	cacert := fs.String("cacert", "", "PEM file of the CA that signs the server (https)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("get needs one URL")
	}
	url := fs.Arg(0)
	client := &http.Client{Timeout: 3 * time.Second}
	if *cacert != "" {
		pem, err := os.ReadFile(*cacert)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("no certificate in %s", *cacert)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	deadline := time.Now().Add(*timeout)
	var last error
	for attempt := 1; ; attempt++ {
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				fmt.Printf("GET %s -> 200 after %d attempt(s): %s", url, attempt, body)
				return nil
			}
			err = fmt.Errorf("status %d, read error %v", resp.StatusCode, rerr)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s failed after %d attempts: %w", url, attempt, last)
		}
		time.Sleep(time.Second)
	}
}
