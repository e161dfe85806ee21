package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/ecp/app"
)

// Example embeds ecp: an embedded etcd in a temporary directory, a free
// loopback port, and a clean stop.
func Example() {
	dir, err := os.MkdirTemp("", "ecp-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	opts := app.DefaultOptions()
	opts.ListenAddress = "127.0.0.1:0"
	opts.DataDir = dir
	opts.AdminPassword = "example-password"
	a, err := app.New(opts, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	resp, err := http.Get(a.URL() + "/-/healthy")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Print(string(body))
	}

	cancel() // Run stops the app when its context ends.
	fmt.Println("stopped:", <-done)
	// Output:
	// ecp is healthy.
	// stopped: <nil>
}
