//go:build integration

// Package integration runs the platform for real — apps, daprd sidecars, placement and
// scheduler as processes, against Redis and RabbitMQ from tests/testinfra — and checks
// behaviour through the public API and directly in the stores. Build tag: integration.
// Tests named TestSmoke* form the smoke subset CI also runs in testcontainers mode.
package integration

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/tests/harness"
	"github.com/groupbuy/groupbuy/tests/testinfra"
)

var (
	infra *testinfra.Infra
	stack *harness.Stack
	otlp  *harness.OTLPReceiver
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	start := time.Now()
	infra, err = testinfra.Provision(ctx, testinfra.Options{Logf: func(f string, a ...any) { fmt.Printf("testinfra: "+f+"\n", a...) }})
	if err != nil {
		fmt.Fprintln(os.Stderr, "provision infra:", err)
		return 1
	}
	defer func() {
		if err := infra.Close(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "close infra:", err)
		}
	}()
	fmt.Printf("infra: mode=%s redis=%s db=%d (%.1fs)\n", infra.Mode, infra.RedisAddr, infra.RedisDB, time.Since(start).Seconds())

	otlp, err = harness.StartOTLPReceiver()
	if err != nil {
		fmt.Fprintln(os.Stderr, "otlp receiver:", err)
		return 1
	}
	defer otlp.Close()

	start = time.Now()
	stack, err = harness.Start(ctx, infra, harness.Options{Name: "main", OTLPEndpoint: otlp.URL})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start stack:", err)
		return 1
	}
	fmt.Printf("stack: up in %.1fs, gateway %s, logs %s\n", time.Since(start).Seconds(), stack.GatewayURL(), stack.LogDir)
	code := m.Run()
	if err := stack.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop stack:", err)
	}
	if code != 0 {
		fmt.Println("process logs:", stack.LogDir)
	}
	return code
}
